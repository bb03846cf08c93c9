//! The domain registry: which domains exist on this host, kept as files in
//! the state directory so that every `rxen` command and every monitor sees
//! the same truth.
//!
//! ```text
//! STATE/                       $RXEN_STATE_DIR, /run/rxen (root), $XDG_RUNTIME_DIR/rxen
//!   registry.lock              flock(2)ed while ids and names change
//!   1/                         one directory per domain, named by its id
//!     entry.json               id, name, monitor pid, config (JSON)
//!     lock                     flock(2)ed by the live monitor all its life
//!     control.sock             the monitor's control socket (domain::control)
//!     console.sock             its console viewers' socket
//!     console.log              everything the guest printed
//!     domain.log               the monitor's own log (stdout, stderr, tracing)
//!     vif-script-N.json        a script vif's offline call, made by whoever
//!                              removes the entry if the monitor could not
//!   logs/NAME.console.log      the logs of domains that are gone (the last
//!   logs/NAME.domain.log       domain of each name)
//! ```
//!
//! Rules that make it robust:
//! - Every change of the set of ids or names (create, rename, removal) holds
//!   `registry.lock`, so two `create`s racing for one name cannot both win.
//! - A domain is alive while someone holds its `lock`: the creating command
//!   locks it before the entry exists and hands the locked descriptor to the
//!   monitor it starts; the kernel drops the lock when the monitor dies, even
//!   by `kill -9`. An entry whose lock can be taken is stale and is removed
//!   (under `registry.lock`) by whoever sees it first, freeing id and name.
//! - Ids are the lowest free number from 1, so an id is reused only once its
//!   domain is gone.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::DomainConfig;

/// Highest domain id handed out (Xen's ids below DOMID_FIRST_RESERVED).
pub const MAX_DOMID: u16 = 0x7fef;

/// Version of `entry.json`.
pub const ENTRY_VERSION: u32 = 1;

/// One domain's registry entry (`entry.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub version: u32,
    pub id: u16,
    pub name: String,
    /// The monitor's pid (0 while it is being started).
    pub pid: u32,
    /// When `create` made the entry (Unix time, seconds).
    pub created_unix: f64,
    pub config: DomainConfig,
}

/// Where one domain's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPaths {
    pub dir: PathBuf,
    pub entry: PathBuf,
    pub lock: PathBuf,
    pub control_socket: PathBuf,
    pub console_socket: PathBuf,
    pub console_log: PathBuf,
    pub domain_log: PathBuf,
}

impl EntryPaths {
    fn new(state: &Path, id: u16) -> EntryPaths {
        let dir = state.join(id.to_string());
        EntryPaths {
            entry: dir.join("entry.json"),
            lock: dir.join("lock"),
            control_socket: dir.join("control.sock"),
            console_socket: dir.join("console.sock"),
            console_log: dir.join("console.log"),
            domain_log: dir.join("domain.log"),
            dir,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a domain named '{0}' already exists")]
    NameTaken(String),
    #[error("no domain ids are free (all of 1..={MAX_DOMID} are in use)")]
    NoFreeId,
    #[error("domain '{0}' does not exist")]
    NoSuchDomain(String),
    #[error("registry entry {}: {source}", path.display())]
    BadEntry {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Refused(String),
}

type Result<T> = std::result::Result<T, RegistryError>;

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RegistryError + 'a {
    move |source| RegistryError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// `flock(fd, op)`; `Ok(false)` if `LOCK_NB` was given and it is held.
fn flock(f: &File, op: libc::c_int) -> std::io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Held `registry.lock`; released when dropped.
pub struct RegistryLock(#[allow(dead_code)] File);

/// The state directory's registry.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

/// A new domain's entry, made and locked but not yet handed to a monitor.
/// Holds `registry.lock` until [`Reservation::commit`] or drop.
pub struct Reservation {
    pub entry: Entry,
    pub paths: EntryPaths,
    /// The domain's `lock`, held: pass it to the monitor.
    pub domain_lock: File,
    registry: Registry,
    guard: Option<RegistryLock>,
    committed: bool,
}

impl Reservation {
    /// Records the monitor's pid and releases `registry.lock`.
    pub fn commit(mut self, pid: u32) -> Result<Entry> {
        self.entry.pid = pid;
        self.registry.write_entry(&self.paths, &self.entry)?;
        self.committed = true;
        self.guard = None;
        Ok(self.entry.clone())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed {
            // No monitor: take the entry back while still holding the lock.
            let _ = std::fs::remove_dir_all(&self.paths.dir);
        }
    }
}

impl Registry {
    /// The registry in `dir`, created (mode 0700) if missing.
    pub fn open(dir: &Path) -> Result<Registry> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(
                "cannot create the state directory (set RXEN_STATE_DIR to use another)",
                dir,
            ))?;
        Ok(Registry {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn paths(&self, id: u16) -> EntryPaths {
        EntryPaths::new(&self.dir, id)
    }

    /// Where the logs of domain `name` go once it is gone.
    pub fn kept_logs(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.join("logs");
        (
            d.join(format!("{name}.console.log")),
            d.join(format!("{name}.domain.log")),
        )
    }

    /// Takes `registry.lock` (blocking).
    pub fn lock(&self) -> Result<RegistryLock> {
        let path = self.dir.join("registry.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("cannot open", &path))?;
        flock(&f, libc::LOCK_EX).map_err(io("cannot lock", &path))?;
        Ok(RegistryLock(f))
    }

    /// Ids with a directory, ascending.
    fn ids(&self) -> Result<Vec<u16>> {
        let mut ids: Vec<u16> = std::fs::read_dir(&self.dir)
            .map_err(io("cannot read the state directory", &self.dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u16>().ok())
            .filter(|id| *id >= 1)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Whether a monitor holds domain `id`'s lock. A missing lock file
    /// means a half-made entry (its maker died before locking): dead.
    pub fn is_alive(&self, id: u16) -> bool {
        let p = self.paths(id);
        let Ok(f) = OpenOptions::new().read(true).open(&p.lock) else {
            return false;
        };
        match flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(true) => false,
            Ok(false) => true,
            // Cannot tell: do not throw a possibly live domain away.
            Err(_) => true,
        }
    }

    /// Reads domain `id`'s entry without locking or checking liveness.
    pub fn entry(&self, id: u16) -> Result<Entry> {
        self.read_entry(id)
    }

    fn read_entry(&self, id: u16) -> Result<Entry> {
        let p = self.paths(id);
        let text = std::fs::read_to_string(&p.entry).map_err(io("cannot read", &p.entry))?;
        serde_json::from_str(&text).map_err(|source| RegistryError::BadEntry {
            path: p.entry.clone(),
            source,
        })
    }

    fn write_entry(&self, p: &EntryPaths, e: &Entry) -> Result<()> {
        // Write-then-rename, so readers never see half an entry.
        let tmp = p.dir.join("entry.json.tmp");
        let mut text = serde_json::to_string_pretty(e).expect("entries serialize");
        text.push('\n');
        std::fs::write(&tmp, text).map_err(io("cannot write", &tmp))?;
        std::fs::rename(&tmp, &p.entry).map_err(io("cannot write", &p.entry))
    }

    /// Removes domain `id`'s directory, keeping its logs under `logs/`.
    /// First the vif scripts' `offline` calls its monitor left on file (it
    /// died without making them, e.g. by `kill -9`) are made, as libxl
    /// makes them when a vif goes. The caller holds `registry.lock`, so
    /// each call is made once.
    fn remove_locked(&self, id: u16, name: Option<&str>) {
        let p = self.paths(id);
        let (ran, errors) = hostnet::script::run_recorded_offline(&p.dir);
        if ran > 0 {
            tracing::info!(id, ?name, ran, "made a dead monitor's vif offline calls");
        }
        for e in errors {
            tracing::warn!(id, ?name, "{e}");
        }
        if let Some(name) = name {
            let (console, domain) = self.kept_logs(name);
            if let Some(d) = console.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            let _ = std::fs::rename(&p.console_log, console);
            let _ = std::fs::rename(&p.domain_log, domain);
        }
        if let Err(e) = std::fs::remove_dir_all(&p.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {e}", p.dir.display());
            }
        }
    }

    /// Removes the entries of dead monitors; returns the live ones by id.
    /// The caller holds `registry.lock`.
    fn sweep_locked(&self) -> Result<Vec<Entry>> {
        let mut live = Vec::new();
        for id in self.ids()? {
            if !self.is_alive(id) {
                let name = self.read_entry(id).ok().map(|e| e.name);
                tracing::info!(id, ?name, "removing the stale entry of a dead monitor");
                self.remove_locked(id, name.as_deref());
                continue;
            }
            match self.read_entry(id) {
                Ok(e) => live.push(e),
                // Locked but without an entry yet: being created.
                Err(_) => continue,
            }
        }
        Ok(live)
    }

    /// The live domains, by id; stale entries are cleaned on the way.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let _g = self.lock()?;
        self.sweep_locked()
    }

    /// Finds a live domain by name, or by id when `dom` is all digits (as
    /// `xl` does).
    pub fn find(&self, dom: &str) -> Result<Entry> {
        let all = self.entries()?;
        let by_id = dom.parse::<u16>().ok();
        all.into_iter()
            .find(|e| Some(e.id) == by_id || (by_id.is_none() && e.name == dom))
            .ok_or_else(|| RegistryError::NoSuchDomain(dom.to_string()))
    }

    /// Makes a locked entry for a new domain named `config.name` with the
    /// lowest free id. Fails if the name is taken by a live domain.
    pub fn reserve(&self, config: &DomainConfig) -> Result<Reservation> {
        let guard = self.lock()?;
        let live = self.sweep_locked()?;
        if live.iter().any(|e| e.name == config.name) {
            return Err(RegistryError::NameTaken(config.name.clone()));
        }
        // Also skip ids whose directory exists without an entry (being made).
        let used = self.ids()?;
        let id = (1..=MAX_DOMID)
            .find(|id| used.binary_search(id).is_err())
            .ok_or(RegistryError::NoFreeId)?;
        let paths = self.paths(id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&paths.dir)
            .map_err(io("cannot create", &paths.dir))?;
        let make = || -> Result<File> {
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&paths.lock)
                .map_err(io("cannot create", &paths.lock))?;
            if !flock(&lock, libc::LOCK_EX | libc::LOCK_NB)
                .map_err(io("cannot lock", &paths.lock))?
            {
                return Err(RegistryError::Refused(format!(
                    "{} is locked by another process",
                    paths.lock.display()
                )));
            }
            Ok(lock)
        };
        let domain_lock = match make() {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&paths.dir);
                return Err(e);
            }
        };
        let entry = Entry {
            version: ENTRY_VERSION,
            id,
            name: config.name.clone(),
            pid: 0,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            config: config.clone(),
        };
        let res = Reservation {
            entry,
            paths,
            domain_lock,
            registry: self.clone(),
            guard: Some(guard),
            committed: false,
        };
        self.write_entry(&res.paths, &res.entry)?;
        Ok(res)
    }

    /// Renames live domain `id` to `new` if no other domain has that name.
    /// `apply` runs under `registry.lock` before the entry changes (it tells
    /// the monitor); if it fails nothing changes.
    pub fn rename(
        &self,
        id: u16,
        new: &str,
        apply: impl FnOnce() -> std::result::Result<(), String>,
    ) -> Result<Entry> {
        crate::config::validate_domain_name(new)
            .map_err(|e| RegistryError::Refused(format!("invalid domain name '{new}': {e}")))?;
        let _g = self.lock()?;
        let live = self.sweep_locked()?;
        if live.iter().any(|e| e.name == new && e.id != id) {
            return Err(RegistryError::NameTaken(new.to_string()));
        }
        let mut e = live
            .into_iter()
            .find(|e| e.id == id)
            .ok_or_else(|| RegistryError::NoSuchDomain(id.to_string()))?;
        apply().map_err(RegistryError::Refused)?;
        e.name = new.to_string();
        e.config.name = new.to_string();
        self.write_entry(&self.paths(id), &e)?;
        Ok(e)
    }

    /// Removes domain `id` (its monitor calls this as it ends, still holding
    /// the domain lock; a client calls it for a monitor that died).
    pub fn remove(&self, id: u16) -> Result<()> {
        let _g = self.lock()?;
        let name = self.read_entry(id).ok().map(|e| e.name);
        self.remove_locked(id, name.as_deref());
        Ok(())
    }

    /// A free name for the renamed old domain of `rename-restart`:
    /// `NAME-1`, `NAME-2`, ... (the caller holds no lock; `rename` checks
    /// again).
    pub fn free_name(&self, base: &str) -> Result<String> {
        let live = self.entries()?;
        (1..)
            .map(|n| {
                let suffix = format!("-{n}");
                let keep = crate::config::domain::MAX_NAME_LEN - suffix.len();
                let stem: String = base.chars().take(keep).collect();
                format!("{stem}{suffix}")
            })
            .find(|n| !live.iter().any(|e| &e.name == n))
            .ok_or(RegistryError::NoFreeId)
    }
}

/// Appends to a file, for the monitor's stdio (`domain.log`).
pub fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Writes one line to `f`, ignoring errors (logs must not fail a command).
pub fn log_line(mut f: &File, line: &str) {
    let _ = writeln!(f, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "rxen-registry-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    fn config(name: &str) -> DomainConfig {
        let text = format!("name = \"{name}\"\nkernel = \"/k\"\n");
        crate::config::parse_config::<&str>(&text, "t.cfg", &[])
            .unwrap()
            .0
    }

    #[test]
    fn ids_are_lowest_free_and_names_unique() {
        let dir = tmp("ids");
        let r = Registry::open(&dir).unwrap();
        let a = r.reserve(&config("a")).unwrap();
        // A clone of the lock stands for the live monitor.
        let a_lock = a.domain_lock.try_clone().unwrap();
        let a = a.commit(1).unwrap();
        let b = r.reserve(&config("b")).unwrap();
        assert_eq!((a.id, b.entry.id), (1, 2));
        let b_lock = b.domain_lock.try_clone().unwrap();
        let b = b.commit(2).unwrap();
        assert!(matches!(
            r.reserve(&config("a")),
            Err(RegistryError::NameTaken(n)) if n == "a"
        ));
        // `a`'s monitor dies: its entry is stale, its id and name free.
        drop(a_lock);
        let names: Vec<_> = r.entries().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["b"]);
        let a2 = r.reserve(&config("a")).unwrap();
        assert_eq!(a2.entry.id, 1);
        // An uncommitted reservation holds the registry lock.
        drop(a2);
        assert_eq!(r.find("2").unwrap().name, "b");
        assert_eq!(r.find("b").unwrap().id, b.id);
        assert!(matches!(r.find("zz"), Err(RegistryError::NoSuchDomain(_))));
        drop(b_lock);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reservation_without_a_monitor_is_taken_back() {
        let dir = tmp("drop");
        let r = Registry::open(&dir).unwrap();
        let res = r.reserve(&config("x")).unwrap();
        let d = res.paths.dir.clone();
        assert!(d.join("entry.json").exists());
        drop(res);
        assert!(!d.exists());
        assert!(r.entries().unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_entries_keep_their_logs() {
        let dir = tmp("logs");
        let r = Registry::open(&dir).unwrap();
        let res = r.reserve(&config("gone")).unwrap();
        std::fs::write(&res.paths.console_log, b"last words").unwrap();
        let e = res.commit(99).unwrap();
        // The committing process dropped the lock: the "monitor" is dead.
        assert!(!r.is_alive(e.id));
        assert!(r.entries().unwrap().is_empty());
        let (console, _) = r.kept_logs("gone");
        assert_eq!(std::fs::read(console).unwrap(), b"last words");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_entries_make_their_vif_offline_calls_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmp("offline");
        let r = Registry::open(&dir).unwrap();
        let calls = dir.join("calls");
        let script = dir.join("vif-rec");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$1 $vif\" >> '{}'\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let res = r.reserve(&config("netdom")).unwrap();
        let env = hostnet::script::ScriptEnv {
            domid: u32::from(res.entry.id),
            vif: "vif1.0".into(),
            ..Default::default()
        };
        hostnet::script::write_record(&res.paths.dir, &script, &env).unwrap();
        res.commit(99).unwrap();
        // The monitor is dead: the next look at the registry makes the call.
        assert!(r.entries().unwrap().is_empty());
        assert_eq!(std::fs::read_to_string(&calls).unwrap(), "offline vif1.0\n");
        assert!(r.entries().unwrap().is_empty());
        assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rename_checks_names_and_asks_first() {
        let dir = tmp("rename");
        let r = Registry::open(&dir).unwrap();
        let a = r.reserve(&config("a")).unwrap();
        let a_lock = a.domain_lock.try_clone().unwrap();
        let a = a.commit(1).unwrap();
        let b = r.reserve(&config("b")).unwrap();
        let b_lock = b.domain_lock.try_clone().unwrap();
        b.commit(2).unwrap();
        assert!(matches!(
            r.rename(a.id, "b", || Ok(())),
            Err(RegistryError::NameTaken(_))
        ));
        assert!(r.rename(a.id, "12", || Ok(())).is_err(), "all digits");
        assert!(r
            .rename(a.id, "c", || Err("monitor said no".into()))
            .is_err());
        assert_eq!(r.find("1").unwrap().name, "a");
        let e = r.rename(a.id, "c", || Ok(())).unwrap();
        assert_eq!((e.name.as_str(), e.config.name.as_str()), ("c", "c"));
        assert_eq!(r.find("c").unwrap().id, 1);
        assert_eq!(r.free_name("b").unwrap(), "b-1");
        drop((a_lock, b_lock));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn racing_reservations_for_one_name_have_one_winner() {
        let dir = tmp("race");
        let r = Registry::open(&dir).unwrap();
        let results: Vec<_> = (0..8)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    r.reserve(&config("same")).map(|res| {
                        let l = res.domain_lock.try_clone().unwrap();
                        (res.commit(1).unwrap(), l)
                    })
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            wins,
            1,
            "{:?}",
            results
                .iter()
                .map(|r| r.as_ref().err().map(|e| e.to_string()))
                .collect::<Vec<_>>()
        );
        drop(results);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
