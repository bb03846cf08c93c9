//! Parses tokens into a [`RawConfig`]: the ordered `KEY=VALUE` settings of a
//! file, each value still untyped, each piece with its position. Command-line
//! overrides are parsed the same way and appended ([`apply_overrides`]).
//!
//! Grammar (xl's, plus `+=` as in recent xl):
//!
//! ```text
//! file    := { NEWLINE | ';' | setting (NEWLINE | ';' | EOF) }
//! setting := KEY ('=' | '+=') value
//! value   := STRING | NUMBER | '[' nl* [ value nl* { ',' nl* value nl* } [ ',' nl* ] ] ']'
//! ```

use std::sync::Arc;

use super::error::{ConfigError, ErrorKind, Location};
use super::lexer::{tokenize, Tok, Token};

/// An untyped value as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A quoted string (escapes decoded). `verbatim`: written without escapes,
    /// so positions inside the text map straight onto source columns.
    Str { text: String, verbatim: bool },
    /// A number as written (`512`, `0x200`, `0755`).
    Number(String),
    /// A `[ ... ]` list; items may themselves be lists.
    List(Vec<Spanned>),
}

impl Value {
    /// "a string", "a number", "a list" — for type errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Str { .. } => "a string",
            Value::Number(_) => "a number",
            Value::List(_) => "a list",
        }
    }

    /// How the value reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Value::Str { text, .. } => format!("string {text:?}"),
            Value::Number(n) => format!("number {n}"),
            Value::List(items) => format!("a list of {} item(s)", items.len()),
        }
    }
}

/// A value and where it starts (the opening quote, first digit or `[`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned {
    pub loc: Location,
    pub value: Value,
}

/// Whether a setting came from the file or from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    File,
    /// The N-th (1-based) `KEY=VALUE` given after the file.
    Override(usize),
}

/// One `KEY=VALUE` (or `KEY+=VALUE`, already folded into its value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub key_loc: Location,
    pub value: Spanned,
    pub origin: Origin,
}

/// A parsed but untyped config: every setting in order. When a key is set
/// more than once the last setting wins, as in xl.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawConfig {
    pub settings: Vec<Setting>,
    /// Where the file ends (for errors about keys that are missing).
    pub end: Option<Location>,
}

impl RawConfig {
    /// The setting that counts for `key`: the last one.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().rev().find(|s| s.key == key)
    }
}

/// Parses the text of a config file. `source` names it in positions.
pub fn parse_raw(text: &str, source: &str) -> Result<RawConfig, ConfigError> {
    let mut raw = RawConfig::default();
    let src: Arc<str> = Arc::from(source);
    let tokens = tokenize(&src, text)?;
    raw.end = tokens.last().map(|t| t.loc.clone());
    Parser {
        tokens,
        pos: 0,
        origin: Origin::File,
    }
    .file(&mut raw)?;
    Ok(raw)
}

/// Applies `KEY=VALUE` overrides given after the file name, in order, as if
/// they were appended to the file (so they win over it; `KEY+=VALUE` adds to
/// the file's value). Each is parsed with the file syntax and named
/// `<override N>` in positions. A value that is not valid syntax and does not
/// start with a quote or `[` is taken as a plain string, so that
/// `name=web1` and `kernel=/boot/vmlinuz` work without shell-quoted quotes.
pub fn apply_overrides<S: AsRef<str>>(
    raw: &mut RawConfig,
    overrides: &[S],
) -> Result<(), ConfigError> {
    for (i, text) in overrides.iter().enumerate() {
        let text = text.as_ref();
        let src: Arc<str> = Arc::from(format!("<override {}>", i + 1));
        let origin = Origin::Override(i + 1);
        let parsed = tokenize(&src, text).and_then(|tokens| {
            let mut p = Parser {
                tokens,
                pos: 0,
                origin,
            };
            p.file(raw)
        });
        if let Err(err) = parsed {
            match bare_override(&src, text, origin) {
                Some(setting) => store(raw, setting, Tok::Equals)?,
                None => return Err(err),
            }
        }
    }
    Ok(())
}

/// `key=anything` read as a string setting, if `anything` does not look
/// like an attempt at a quoted string or a list.
fn bare_override(src: &Arc<str>, text: &str, origin: Origin) -> Option<Setting> {
    let (key, value) = text.split_once('=')?;
    let key_trimmed = key.trim();
    let valid_key = key_trimmed
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && key_trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    let value_trimmed = value.trim_start();
    if !valid_key || value_trimmed.starts_with(['\'', '"', '[']) || key.ends_with('+') {
        return None;
    }
    let key_col = 1 + key.chars().take_while(|c| c.is_whitespace()).count();
    let value_col =
        key.chars().count() + 2 + (value.chars().count() - value_trimmed.chars().count());
    Some(Setting {
        key: key_trimmed.to_string(),
        key_loc: Location::new(src, 1, key_col as u32),
        value: Spanned {
            loc: Location::new(src, 1, value_col as u32),
            value: Value::Str {
                text: value_trimmed.trim_end().to_string(),
                verbatim: false,
            },
        },
        origin,
    })
}

/// Adds a setting; for `+=`, first folds in the value it adds to.
fn store(raw: &mut RawConfig, mut setting: Setting, op: Tok) -> Result<(), ConfigError> {
    if op == Tok::PlusEquals {
        if let Some(prev) = raw.get(&setting.key) {
            let added = std::mem::replace(&mut setting.value.value, Value::Number(String::new()));
            let folded = match (&prev.value.value, added) {
                (Value::Str { text: a, .. }, Value::Str { text: b, .. }) => Value::Str {
                    text: format!("{a}{b}"),
                    verbatim: false,
                },
                (Value::List(a), Value::List(b)) => {
                    Value::List(a.iter().cloned().chain(b).collect())
                }
                (Value::Number(_), _) | (_, Value::Number(_)) => {
                    return Err(ConfigError::at(
                        setting.key_loc.clone(),
                        ErrorKind::AppendNumber { key: setting.key },
                    ))
                }
                (existing, added) => {
                    return Err(ConfigError::at(
                        setting.value.loc.clone(),
                        ErrorKind::AppendMismatch {
                            key: setting.key,
                            existing: existing.kind_name(),
                            added: added.kind_name(),
                        },
                    ))
                }
            };
            setting.value.value = folded;
        } else if let Value::Number(_) = setting.value.value {
            return Err(ConfigError::at(
                setting.key_loc.clone(),
                ErrorKind::AppendNumber { key: setting.key },
            ));
        }
    }
    raw.settings.push(setting);
    Ok(())
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    origin: Origin,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn expected(&self, expected: impl Into<String>) -> ConfigError {
        let t = self.peek();
        ConfigError::at(
            t.loc.clone(),
            ErrorKind::Expected {
                expected: expected.into(),
                found: t.tok.describe(),
            },
        )
    }

    fn skip_newlines(&mut self) {
        while self.peek().tok == Tok::Newline {
            self.bump();
        }
    }

    fn file(&mut self, raw: &mut RawConfig) -> Result<(), ConfigError> {
        loop {
            match self.peek().tok.clone() {
                Tok::Eof => return Ok(()),
                Tok::Newline | Tok::Semicolon => {
                    self.bump();
                }
                Tok::Ident(key) => {
                    let key_loc = self.bump().loc;
                    let op = self.bump();
                    if op.tok != Tok::Equals && op.tok != Tok::PlusEquals {
                        self.pos -= 1;
                        return Err(self.expected(format!("`=` after `{key}`")));
                    }
                    let value = self.value(&key)?;
                    match self.peek().tok {
                        Tok::Newline | Tok::Semicolon | Tok::Eof => {}
                        _ => {
                            return Err(self.expected(format!(
                                "end of line or `;` after the value of `{key}`"
                            )))
                        }
                    }
                    let setting = Setting {
                        key,
                        key_loc,
                        value,
                        origin: self.origin,
                    };
                    store(raw, setting, op.tok)?;
                }
                _ => return Err(self.expected("a setting (KEY=VALUE)")),
            }
        }
    }

    fn value(&mut self, key: &str) -> Result<Spanned, ConfigError> {
        let t = self.peek().clone();
        let value = match t.tok {
            Tok::Str { text, verbatim } => {
                self.bump();
                Value::Str { text, verbatim }
            }
            Tok::Number(n) => {
                self.bump();
                Value::Number(n)
            }
            Tok::LBracket => {
                self.bump();
                self.list_items(key, &t.loc)?
            }
            Tok::Ident(w) => {
                return Err(self.expected(format!(
                    "a value after `=` (a quoted string such as \"{w}\", a number or a [list])"
                )))
            }
            _ => return Err(self.expected("a value after `=`")),
        };
        Ok(Spanned { loc: t.loc, value })
    }

    fn list_items(&mut self, key: &str, open: &Location) -> Result<Value, ConfigError> {
        let mut items = Vec::new();
        self.skip_newlines();
        loop {
            if self.peek().tok == Tok::RBracket {
                self.bump();
                return Ok(Value::List(items));
            }
            if self.peek().tok == Tok::Eof {
                return Err(self.expected(format!(
                    "`]` to close the list of `{key}` opened at {}:{}",
                    open.line, open.column
                )));
            }
            items.push(self.value(key)?);
            self.skip_newlines();
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                    self.skip_newlines();
                }
                Tok::RBracket => {}
                _ => {
                    return Err(self.expected(format!(
                        "`,` or `]` in the list of `{key}` opened at {}:{}",
                        open.line, open.column
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_setting_wins_and_lists_span_lines() {
        let raw = parse_raw(
            "memory = 128\nmemory=256; vcpus=2\ndisk = [ 'a',\n  'b', # c\n ]\n",
            "t.cfg",
        )
        .unwrap();
        assert_eq!(
            raw.get("memory").unwrap().value.value,
            Value::Number("256".into())
        );
        let Value::List(items) = &raw.get("disk").unwrap().value.value else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert_eq!((items[1].loc.line, items[1].loc.column), (4, 3));
    }

    #[test]
    fn trailing_commas_empty_lists_crlf_and_no_final_newline() {
        let raw = parse_raw("a = [ 'x', ]\r\nb = []\r\nc = [\n]\nd = 'e' # end", "t.cfg").unwrap();
        let len = |k: &str| match &raw.get(k).unwrap().value.value {
            Value::List(items) => items.len(),
            _ => panic!(),
        };
        assert_eq!((len("a"), len("b"), len("c")), (1, 0, 0));
        assert!(raw.get("d").is_some());
        let raw = parse_raw("v = [ [ 'a', 'b' ], 'c' ]", "t.cfg").unwrap();
        assert!(matches!(&raw.get("v").unwrap().value.value, Value::List(i) if i.len() == 2));
    }

    #[test]
    fn append_folds_into_previous_value() {
        let mut raw = parse_raw("extra = 'a'\nextra += ' b'\nvif=['x']\n", "t.cfg").unwrap();
        apply_overrides(&mut raw, &["vif += ['y']", "extra+=' c'"]).unwrap();
        assert_eq!(
            raw.get("extra").unwrap().value.value,
            Value::Str {
                text: "a b c".into(),
                verbatim: false
            }
        );
        let Value::List(items) = &raw.get("vif").unwrap().value.value else {
            panic!()
        };
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn bare_override_values_are_strings() {
        let mut raw = RawConfig::default();
        apply_overrides(
            &mut raw,
            &["name=web1", "kernel=/boot/vmlinuz", "memory=512"],
        )
        .unwrap();
        assert_eq!(
            raw.get("name").unwrap().value.value,
            Value::Str {
                text: "web1".into(),
                verbatim: false
            }
        );
        assert_eq!(
            raw.get("memory").unwrap().value.value,
            Value::Number("512".into())
        );
        assert_eq!(
            raw.get("kernel").unwrap().value.loc.to_string(),
            "<override 2>:1:8"
        );
    }
}
