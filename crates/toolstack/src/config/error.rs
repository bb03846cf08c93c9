//! Where things are in a config source, what went wrong there, and the
//! warnings a config can produce while still being accepted.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::disk::DiskError;
use super::vif::VifError;

/// A place in a config source: the file name (or `<override N>` for the
/// N-th `KEY=VALUE` given on the command line), a 1-based line and a 1-based
/// column counted in characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub source: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl Location {
    pub(crate) fn new(source: &Arc<str>, line: u32, column: u32) -> Self {
        Location {
            source: source.clone(),
            line,
            column,
        }
    }

    /// The same line, `chars` characters further right.
    pub(crate) fn shifted(&self, chars: usize) -> Self {
        Location {
            column: self.column + chars as u32,
            ..self.clone()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.column)
    }
}

/// Why a config was refused. Displays as `file:line:column: message`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// cannot read {path}: {source}
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// {location}: {kind}
    #[error("{location}: {kind}")]
    At { location: Location, kind: ErrorKind },
}

impl ConfigError {
    pub(crate) fn at(location: Location, kind: ErrorKind) -> Self {
        ConfigError::At { location, kind }
    }

    /// The position of the error, if it has one (all but `Read` do).
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::At { location, .. } => Some(location),
        }
    }

    /// What went wrong, without the position.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::At { kind, .. } => Some(kind),
        }
    }
}

/// What went wrong at a [`Location`]. The first group are syntax errors
/// (the file is not in `xl.cfg(5)` form); the rest are about the meaning of a
/// well-formed file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// expected {expected}, found {found}
    #[error("expected {expected}, found {found}")]
    Expected { expected: String, found: String },
    /// unterminated string: no closing {quote} before the end of the line
    #[error("unterminated string: no closing {quote} before the end of the line")]
    UnterminatedString { quote: char },
    /// invalid escape `\{escape}` in quoted string ({hint})
    #[error("invalid escape `\\{escape}` in quoted string ({hint})")]
    BadEscape { escape: String, hint: &'static str },
    /// malformed number `{text}`: expected decimal, octal (leading 0) or hexadecimal (leading 0x) digits
    #[error("malformed number `{text}`: expected decimal, octal (leading 0) or hexadecimal (leading 0x) digits")]
    BadNumber { text: String },
    /// `{key} +=` needs the same kind of value as before: cannot add {added} to {existing}
    #[error("`{key} +=` needs the same kind of value as before: cannot add {added} to {existing}")]
    AppendMismatch {
        key: String,
        existing: &'static str,
        added: &'static str,
    },
    /// `{key} +=` cannot be used with numbers
    #[error("`{key} +=` cannot be used with numbers")]
    AppendNumber { key: String },

    /// `{key}` must be {expected}, found {found}
    #[error("`{key}` must be {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    /// `{key}` must be between {min} and {max}, found {value}
    #[error("`{key}` must be between {min} and {max}, found {value}")]
    OutOfRange {
        key: String,
        value: i128,
        min: u64,
        max: u64,
    },
    /// invalid value {value:?} for `{key}`: expected {expected}
    #[error("invalid value {value:?} for `{key}`: expected {expected}")]
    InvalidValue {
        key: String,
        value: String,
        expected: String,
    },
    /// missing required key `{key}` (expected {expected})
    #[error("missing required key `{key}` (expected {expected})")]
    MissingKey {
        key: &'static str,
        expected: &'static str,
    },
    /// {what} is not supported yet{why}
    #[error("{what} is not supported yet{why}")]
    Unsupported { what: String, why: String },
    /// {0}
    #[error("{0}")]
    Conflict(String),
    /// invalid domain name {name:?}: {reason}
    #[error("invalid domain name {name:?}: {reason}")]
    InvalidName { name: String, reason: NameError },
    /// disk {index} ({spec:?}): {error}
    #[error("disk {index} ({spec:?}): {error}")]
    Disk {
        index: usize,
        spec: String,
        error: DiskError,
    },
    /// vif {index} ({spec:?}): {error}
    #[error("vif {index} ({spec:?}): {error}")]
    Vif {
        index: usize,
        spec: String,
        error: VifError,
    },
}

/// Why a domain name is refused (see [`super::validate_domain_name`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// the name is empty
    #[error("the name is empty")]
    Empty,
    /// the name is longer than {max} bytes
    #[error("the name is longer than {max} bytes")]
    TooLong { max: usize },
    /// all digits: it would read as a domain id
    #[error("all digits: it would read as a domain id")]
    AllDigits,
    /// it must not start with {0:?}
    #[error("it must not start with {0:?}")]
    BadStart(char),
    /// character {0:?} is not allowed (use letters, digits and `-_.+:@`)
    #[error("character {0:?} is not allowed (use letters, digits and `-_.+:@`)")]
    BadChar(char),
}

/// Something worth telling the user about a config that is still accepted.
/// Displays as `file:line:column: warning: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.location, self.message)
    }
}
