//! Path rules: canonical form, relative paths, allowed characters, lengths.
//!
//! Paths are `/`-separated and absolute. A path not starting with `/` (or
//! `@`) is relative to the caller's home, `/local/domain/<domid>`. Only ASCII
//! alphanumerics and `-/_@` are allowed; doubled and trailing slashes (except
//! the root itself) and the empty path are invalid. Paths starting with `@`
//! name special watch events (`@introduceDomain`, `@releaseDomain`) and are
//! accepted only where the operation allows them.

use crate::error::{XsError, XsResult};
use crate::perms::DomId;
use crate::wire::{ABS_PATH_MAX, REL_PATH_MAX};

/// Special watch path fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// Special watch path fired when a domain is released.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// The home of a domain: `/local/domain/<domid>`.
pub fn domain_path(domid: DomId) -> String {
    format!("/local/domain/{domid}")
}

/// Whether `path` names a special (`@...`) node.
pub fn is_special(path: &str) -> bool {
    path.starts_with('@')
}

fn valid_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@')
}

/// A validated, absolute (or special) path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// The absolute path, e.g. `/local/domain/3/device`.
    pub path: String,
    /// Whether the caller spelled it relative to its home.
    pub relative: bool,
}

/// Validates `raw` as sent by domain `caller` and makes it absolute.
///
/// `allow_special` admits `@...` names; `privileged` lifts the per-domain
/// relative length limit (the absolute limit applies to everyone).
pub fn canonicalize(
    raw: &[u8],
    caller: DomId,
    privileged: bool,
    allow_special: bool,
) -> XsResult<Canonical> {
    if raw.is_empty() || !raw.iter().copied().all(valid_char) {
        return Err(XsError::Inval);
    }
    // Only valid characters, so this is ASCII.
    let raw = std::str::from_utf8(raw).map_err(|_| XsError::Inval)?;
    if is_special(raw) {
        if !allow_special {
            return Err(XsError::Inval);
        }
        if raw.len() > ABS_PATH_MAX {
            return Err(XsError::Inval);
        }
        return Ok(Canonical {
            path: raw.to_string(),
            relative: false,
        });
    }
    let relative = !raw.starts_with('/');
    let path = if relative {
        format!("{}/{raw}", domain_path(caller))
    } else {
        raw.to_string()
    };
    if (path.ends_with('/') && path != "/") || path.contains("//") {
        return Err(XsError::Inval);
    }
    if path.len() > ABS_PATH_MAX {
        return Err(XsError::Inval);
    }
    if !privileged && below_home(&path).len() > REL_PATH_MAX {
        return Err(XsError::Inval);
    }
    Ok(Canonical { path, relative })
}

/// The part of `path` below `/local/domain/<n>/`, or all of it.
fn below_home(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/local/domain/") else {
        return path;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=5).contains(&digits) && rest.as_bytes().get(digits) == Some(&b'/') {
        &rest[digits + 1..]
    } else {
        path
    }
}

/// The parent of an absolute path (`/` for top-level and special nodes).
pub fn parent(path: &str) -> &str {
    match path[1.min(path.len())..].rfind('/') {
        Some(i) => &path[..i + 1],
        None => "/",
    }
}

/// The last component of a non-root path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `parent/name`, taking care of the root.
pub fn child(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether `path` is `ancestor` or below it (everything is below `/`).
pub fn is_child(path: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return true;
    }
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Parses a decimal domid as sent in payloads (0..=65535).
pub fn parse_domid(raw: &[u8]) -> XsResult<DomId> {
    let s = std::str::from_utf8(raw).map_err(|_| XsError::Inval)?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(XsError::Inval);
    }
    s.parse().map_err(|_| XsError::Inval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let c = canonicalize(b"device/vbd", 3, false, false).unwrap();
        assert_eq!(c.path, "/local/domain/3/device/vbd");
        assert!(c.relative);
        assert_eq!(canonicalize(b"/", 3, false, false).unwrap().path, "/");
        for bad in [
            &b""[..],
            b"/a/",
            b"/a//b",
            b"/a b",
            b"/a\0",
            b"/\xff",
            b"/a.b",
        ] {
            assert_eq!(
                canonicalize(bad, 0, true, false),
                Err(XsError::Inval),
                "{bad:?}"
            );
        }
        assert_eq!(
            canonicalize(b"@releaseDomain", 0, true, false),
            Err(XsError::Inval)
        );
        assert_eq!(
            canonicalize(b"@releaseDomain", 0, true, true).unwrap().path,
            "@releaseDomain"
        );
    }

    #[test]
    fn lengths() {
        let long = format!("/{}", "a".repeat(ABS_PATH_MAX));
        assert_eq!(
            canonicalize(long.as_bytes(), 0, true, false),
            Err(XsError::Inval)
        );
        let rel = "a".repeat(REL_PATH_MAX + 1);
        assert_eq!(
            canonicalize(rel.as_bytes(), 5, false, false),
            Err(XsError::Inval)
        );
        let ok = "a".repeat(REL_PATH_MAX);
        assert!(canonicalize(ok.as_bytes(), 5, false, false).is_ok());
        assert!(canonicalize(rel.as_bytes(), 0, true, false).is_ok());
    }

    #[test]
    fn parents_and_children() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("@releaseDomain"), "/");
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(child("/", "a"), "/a");
        assert!(is_child("/a/b", "/a"));
        assert!(is_child("/a", "/a"));
        assert!(!is_child("/ab", "/a"));
        assert!(is_child("/x", "/"));
        assert_eq!(parse_domid(b"65535"), Ok(65535));
        assert_eq!(parse_domid(b"65536"), Err(XsError::Inval));
        assert_eq!(parse_domid(b"-1"), Err(XsError::Inval));
    }
}
