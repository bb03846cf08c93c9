//! Splits an `xl.cfg(5)` source into tokens, each with its line and column.
//!
//! The token set follows xl's own scanner: keys, numbers, single- or
//! double-quoted strings (no raw newlines inside), `[`, `]`, `,`, `=`, `+=`,
//! `;` and newlines. A `#` starts a comment that runs to the end of the
//! line. Blanks are spaces, tabs and carriage returns (so CRLF files work).

use std::sync::Arc;

use super::error::{ConfigError, ErrorKind, Location};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A key such as `memory` (letters, digits and `_`, starting with a letter).
    Ident(String),
    /// A number exactly as written (`512`, `0x200`, `0755`); checked to be
    /// well formed, converted when a key asks for a number.
    Number(String),
    /// A quoted string, escapes decoded. `verbatim` is true when the source
    /// had no escapes, so that column `c` of the text is column `start + 1 + c`.
    Str {
        text: String,
        verbatim: bool,
    },
    LBracket,
    RBracket,
    Comma,
    Equals,
    PlusEquals,
    Semicolon,
    Newline,
    Eof,
}

impl Tok {
    /// How the token reads in an error message ("found ...").
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(w) => format!("bare word `{w}`"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Str { text, .. } => format!("string {text:?}"),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Equals => "`=`".into(),
            Tok::PlusEquals => "`+=`".into(),
            Tok::Semicolon => "`;`".into(),
            Tok::Newline => "end of line".into(),
            Tok::Eof => "end of file".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub loc: Location,
}

/// Tokenizes a whole source. The last token is always `Eof`.
pub(crate) fn tokenize(source: &Arc<str>, text: &str) -> Result<Vec<Token>, ConfigError> {
    let mut lx = Lexer {
        source,
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        let t = lx.next()?;
        let done = t.tok == Tok::Eof;
        out.push(t);
        if done {
            return Ok(out);
        }
    }
}

struct Lexer<'a> {
    source: &'a Arc<str>,
    chars: Vec<char>,
    pos: usize,
    line: u32,
    col: u32,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn here(&self) -> Location {
        Location::new(self.source, self.line, self.col)
    }

    fn err(&self, loc: Location, kind: ErrorKind) -> ConfigError {
        ConfigError::at(loc, kind)
    }

    fn next(&mut self) -> Result<Token, ConfigError> {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.bump();
        }
        if self.peek() == Some('#') {
            while !matches!(self.peek(), None | Some('\n')) {
                self.bump();
            }
        }
        let loc = self.here();
        let Some(c) = self.peek() else {
            return Ok(Token { tok: Tok::Eof, loc });
        };
        let tok = match c {
            '\n' => self.single(Tok::Newline),
            '[' => self.single(Tok::LBracket),
            ']' => self.single(Tok::RBracket),
            ',' => self.single(Tok::Comma),
            '=' => self.single(Tok::Equals),
            ';' => self.single(Tok::Semicolon),
            '+' if self.peek2() == Some('=') => {
                self.bump();
                self.single(Tok::PlusEquals)
            }
            '\'' | '"' => self.string(c, &loc)?,
            c if c.is_ascii_alphabetic() => {
                Tok::Ident(self.take_while(|c| c.is_ascii_alphanumeric() || c == '_'))
            }
            c if c.is_ascii_digit() => {
                let text = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                if parse_c_integer(&text).is_none() {
                    return Err(self.err(loc, ErrorKind::BadNumber { text }));
                }
                Tok::Number(text)
            }
            other => {
                let hint = if "+-.():{}".contains(other) {
                    " (xl config files are not Python: write KEY=VALUE lines)"
                } else {
                    ""
                };
                return Err(self.err(
                    loc,
                    ErrorKind::Expected {
                        expected: format!("a key, a value or a separator{hint}"),
                        found: format!("character {other:?}"),
                    },
                ));
            }
        };
        Ok(Token { tok, loc })
    }

    fn single(&mut self, tok: Tok) -> Tok {
        self.bump();
        tok
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|&c| f(c)) {
            s.push(c);
            self.bump();
        }
        s
    }

    /// A quoted string with xl's escapes: `\" \' \\ \a \b \f \n \r \t \v`,
    /// `\xHH` (two hex digits) and `\NNN` (one to three octal digits).
    fn string(&mut self, quote: char, start: &Location) -> Result<Tok, ConfigError> {
        self.bump();
        let mut text = String::new();
        let mut verbatim = true;
        loop {
            let c = match self.peek() {
                None | Some('\n') => {
                    return Err(self.err(start.clone(), ErrorKind::UnterminatedString { quote }))
                }
                Some(c) => c,
            };
            let at = self.here();
            self.bump();
            if c == quote {
                return Ok(Tok::Str { text, verbatim });
            }
            if c != '\\' {
                text.push(c);
                continue;
            }
            verbatim = false;
            let e = match self.peek() {
                None | Some('\n') => {
                    return Err(self.err(start.clone(), ErrorKind::UnterminatedString { quote }))
                }
                Some(e) => e,
            };
            self.bump();
            let simple = match e {
                '"' | '\'' | '\\' => Some(e),
                'a' => Some('\x07'),
                'b' => Some('\x08'),
                'f' => Some('\x0c'),
                'n' => Some('\n'),
                'r' => Some('\r'),
                't' => Some('\t'),
                'v' => Some('\x0b'),
                _ => None,
            };
            if let Some(s) = simple {
                text.push(s);
            } else if e == 'x' {
                let digits = self.take_at_most(2, |c| c.is_ascii_hexdigit());
                if digits.len() != 2 {
                    return Err(self.err(
                        at,
                        ErrorKind::BadEscape {
                            escape: format!("x{digits}"),
                            hint: "`\\x` takes two hexadecimal digits",
                        },
                    ));
                }
                text.push(u8::from_str_radix(&digits, 16).unwrap_or(0) as char);
            } else if ('0'..='7').contains(&e) {
                let more = self.take_at_most(2, |c| ('0'..='7').contains(&c));
                let v = u32::from_str_radix(&format!("{e}{more}"), 8).unwrap_or(0);
                text.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            } else {
                return Err(self.err(
                    at,
                    ErrorKind::BadEscape {
                        escape: e.to_string(),
                        hint:
                            "known escapes: \\\\ \\' \\\" \\a \\b \\f \\n \\r \\t \\v \\xHH \\NNN",
                    },
                ));
            }
        }
    }

    fn take_at_most(&mut self, n: usize, f: impl Fn(char) -> bool) -> String {
        let mut s = String::new();
        while s.len() < n {
            match self.peek() {
                Some(c) if f(c) => {
                    s.push(c);
                    self.bump();
                }
                _ => break,
            }
        }
        s
    }
}

/// Reads an integer the way C's `strtol(s, _, 0)` does for a whole string:
/// `0x` prefix hexadecimal, leading `0` octal, otherwise decimal. An
/// optional leading `-` is accepted (strings such as `"-1"`); no blanks.
pub(crate) fn parse_c_integer(s: &str) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let v = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        i128::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        if !digits.chars().all(|c| ('0'..='7').contains(&c)) {
            return None;
        }
        i128::from_str_radix(digits, 8).ok()?
    } else {
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i128>().ok()?
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        let src: Arc<str> = Arc::from("t.cfg");
        tokenize(&src, text)
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn numbers_in_three_bases() {
        assert_eq!(parse_c_integer("512"), Some(512));
        assert_eq!(parse_c_integer("0x200"), Some(512));
        assert_eq!(parse_c_integer("01000"), Some(512));
        assert_eq!(parse_c_integer("0"), Some(0));
        assert_eq!(parse_c_integer("08"), None);
        assert_eq!(parse_c_integer("0x"), None);
        assert_eq!(parse_c_integer("12abc"), None);
    }

    #[test]
    fn escapes_are_decoded() {
        let t = toks(r#"a = "q\"\\\t\x41\101\n" "#);
        assert_eq!(
            t[2],
            Tok::Str {
                text: "q\"\\\tAA\n".into(),
                verbatim: false
            }
        );
        let t = toks(r"b = 'it\'s'");
        assert_eq!(
            t[2],
            Tok::Str {
                text: "it's".into(),
                verbatim: false
            }
        );
    }

    #[test]
    fn comments_and_positions() {
        let src: Arc<str> = Arc::from("t.cfg");
        let t = tokenize(&src, "# c\n  name = 'x' # trailing\n").unwrap();
        assert_eq!(t[0].tok, Tok::Newline);
        assert_eq!((t[1].loc.line, t[1].loc.column), (2, 3));
        assert_eq!((t[3].loc.line, t[3].loc.column), (2, 10));
        assert_eq!(t[4].tok, Tok::Newline);
        assert_eq!(t[5].tok, Tok::Eof);
    }
}
