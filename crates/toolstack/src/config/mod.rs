//! Domain configuration files in `xl.cfg(5)` syntax.
//!
//! Reading a config is three steps, each in its own file:
//!
//! 1. [`lexer`] and [`syntax`]: text → [`RawConfig`], the ordered
//!    `KEY=VALUE` settings with untyped values and exact positions;
//!    command-line `KEY=VALUE` overrides are appended ([`apply_overrides`]).
//! 2. [`domain`]: [`RawConfig`] → [`DomainConfig`], plain typed data with
//!    xl's defaults and rules applied, plus [`Warning`]s (unknown keys, ...).
//! 3. Spec strings inside lists are parsed there too: [`disk`] for
//!    `disk=[...]` (`xl-disk-configuration(5)`), [`vif`] for `vif=[...]`
//!    (`xl-network-configuration(5)`), [`cpus`] for `cpus=`.
//!
//! Every error is a [`ConfigError`] that prints as `file:line:column:
//! message`; nothing else in rxen needs to look at config text again.

pub mod cpus;
pub mod disk;
pub mod domain;
pub mod error;
mod lexer;
pub mod libxl_json;
pub mod syntax;
pub mod vif;

use std::path::Path;

pub use cpus::{CpuAffinity, CpuItem, CpuList, CpuUnit};
pub use disk::{
    Access, BackendType, DevType, DiskError, DiskFormat, DiskSpec, Specification, Vdev, VdevKind,
};
pub use domain::{validate_domain_name, DomainConfig, DomainType, ShutdownAction, Uuid};
pub use error::{ConfigError, ErrorKind, Location, NameError, Warning};
pub use syntax::{apply_overrides, parse_raw, Origin, RawConfig, Setting, Spanned, Value};
pub use vif::{MacAddr, NicType, VifError, VifRate, VifSpec};

/// Reads the config file at `path`, applies `overrides` (`KEY=VALUE`, as
/// given after the file on the command line) and builds the domain config.
/// Positions name the file as `path` was given.
pub fn load_config(
    path: &Path,
    overrides: &[String],
) -> Result<(DomainConfig, Vec<Warning>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_config(&text, &path.display().to_string(), overrides)
}

/// Parses config `text` (named `file_name` in positions), applies
/// `overrides` and builds the domain config.
pub fn parse_config<S: AsRef<str>>(
    text: &str,
    file_name: &str,
    overrides: &[S],
) -> Result<(DomainConfig, Vec<Warning>), ConfigError> {
    let mut raw = parse_raw(text, file_name)?;
    apply_overrides(&mut raw, overrides)?;
    domain::build(&raw)
}
