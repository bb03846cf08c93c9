//! Where a domain's files live: one directory per domain under the state
//! directory (`$RXEN_STATE_DIR` if set, else `/run/rxen` for root, else
//! `$XDG_RUNTIME_DIR/rxen`, else `/tmp/rxen-UID`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The state directory (not created here).
pub fn state_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    state_dir_from(
        std::env::var_os("RXEN_STATE_DIR"),
        std::env::var_os("XDG_RUNTIME_DIR"),
        uid,
    )
}

fn state_dir_from(explicit: Option<OsString>, xdg: Option<OsString>, uid: u32) -> PathBuf {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(explicit) {
        return dir;
    }
    if uid == 0 {
        return PathBuf::from("/run/rxen");
    }
    match set(xdg) {
        Some(dir) => dir.join("rxen"),
        None => std::env::temp_dir().join(format!("rxen-{uid}")),
    }
}

/// The files of domain `name` under `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFiles {
    pub dir: PathBuf,
    /// Everything the guest printed.
    pub console_log: PathBuf,
    /// The monitor's `tracing` log.
    pub domain_log: PathBuf,
}

impl DomainFiles {
    pub fn new(state: &Path, name: &str) -> DomainFiles {
        let dir = state.join(name);
        DomainFiles {
            console_log: dir.join("console.log"),
            domain_log: dir.join("domain.log"),
            dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_follows_the_environment() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            state_dir_from(s("/x"), s("/run/user/5"), 5),
            PathBuf::from("/x")
        );
        assert_eq!(
            state_dir_from(None, s("/run/user/5"), 0),
            PathBuf::from("/run/rxen")
        );
        assert_eq!(
            state_dir_from(s(""), s("/run/user/5"), 5),
            PathBuf::from("/run/user/5/rxen")
        );
        assert!(state_dir_from(None, None, 5).ends_with("rxen-5"));
    }

    #[test]
    fn files_are_per_domain() {
        let f = DomainFiles::new(Path::new("/run/rxen"), "web");
        assert_eq!(f.console_log, PathBuf::from("/run/rxen/web/console.log"));
        assert_eq!(f.domain_log, PathBuf::from("/run/rxen/web/domain.log"));
    }
}
