//! Helpers shared by the tests that run the `rxen` binary: a KVM check, a
//! scratch directory, running rxen under a deadline, and reading its output.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fails (not skips) the test without /dev/kvm: a green run means guests ran.
pub fn require_kvm() {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    assert!(
        f.is_ok(),
        "guest tests need /dev/kvm (read-write, usually root): {:?}",
        f.err()
    );
}

pub fn rxen() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rxen"))
}

/// Writes the xl config of a test guest to `path` and returns `path`:
/// `name`, a PV `kernel` and `ramdisk`, `memory_mib`, one vCPU, the console
/// on hvc0, then `more` (further `KEY = VALUE` lines, each ending in a
/// newline).
pub fn write_config(
    path: &Path,
    name: &str,
    kernel: &Path,
    ramdisk: &Path,
    memory_mib: u32,
    more: &str,
) -> PathBuf {
    let text = format!(
        "name = \"{name}\"\ntype = \"pv\"\nkernel = \"{}\"\nramdisk = \"{}\"\n\
         memory = {memory_mib}\nvcpus = 1\nextra = \"console=hvc0 quiet\"\n{more}",
        kernel.display(),
        ramdisk.display()
    );
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

/// A scratch directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "rxen-test-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// What a run under a deadline gave.
pub struct Run {
    pub output: Output,
    /// The deadline passed and the process was killed.
    pub timed_out: bool,
    pub took: Duration,
}

impl Run {
    /// stdout, then stderr, for assertion messages.
    pub fn text(&self) -> String {
        text(&self.output)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
}

/// Runs `cmd` (stdin empty), killing it with SIGKILL after `limit`.
pub fn run_with_deadline(cmd: &mut Command, limit: Duration) -> Run {
    let t = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rxen");
    let pid = child.id() as i32;
    let done = Arc::new(Mutex::new(false));
    let timed_out = Arc::new(Mutex::new(false));
    let (d, to) = (done.clone(), timed_out.clone());
    std::thread::spawn(move || {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if *d.lock().unwrap() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The lock orders this against `done` being set after the wait, so
        // a reused pid is never killed.
        let d = d.lock().unwrap();
        if !*d {
            *to.lock().unwrap() = true;
            // SAFETY: kill(2) on the child we spawned, not yet reaped.
            unsafe { libc_kill(pid, 9) };
        }
    });
    let output = child.wait_with_output().expect("wait for rxen");
    *done.lock().unwrap() = true;
    let timed_out = *timed_out.lock().unwrap();
    Run {
        output,
        timed_out,
        took: t.elapsed(),
    }
}

/// Appends everything `pipe` yields to `into` on a thread of its own,
/// until end of file or an error.
pub fn collect_into(
    mut pipe: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// Runs `cmd` with its stdin a pipe: each `(wait_for, send)` pair waits until
/// stdout contains `wait_for` (after what the earlier pairs saw), then writes
/// `send`. Kills the process after `limit`.
pub fn run_interactive(cmd: &mut Command, script: &[(&str, &str)], limit: Duration) -> Run {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rxen");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let reader = collect_into(stdout, seen.clone());
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let script: Vec<(String, String)> = script
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let s = seen.clone();
    std::thread::spawn(move || {
        let mut from = 0;
        for (wait_for, send) in script {
            loop {
                let found = {
                    let v = s.lock().unwrap();
                    let hay = String::from_utf8_lossy(&v[from.min(v.len())..]).into_owned();
                    hay.find(&wait_for).map(|i| from + i + wait_for.len())
                };
                if let Some(end) = found {
                    from = end;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if stdin.write_all(send.as_bytes()).is_err() {
                return;
            }
        }
        // Keep stdin open: EOF on the console is not part of the script.
        std::thread::sleep(Duration::from_secs(3600));
        drop(stdin);
    });
    let mut timed_out = false;
    let status: ExitStatus = loop {
        if let Some(st) = child.try_wait().expect("wait for rxen") {
            break st;
        }
        if t.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait for rxen");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    let stdout = seen.lock().unwrap().clone();
    Run {
        output: Output {
            status,
            stdout,
            stderr,
        },
        timed_out,
        took: t.elapsed(),
    }
}

/// Asserts that `rxen ARGS`, which gave `o`, succeeded; returns its stdout.
pub fn expect_success(args: &[&str], o: &Output) -> String {
    assert!(
        o.status.success(),
        "rxen {args:?} failed ({:?}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The rest of the first line holding `key`, trimmed.
pub fn line_after<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|l| {
        l.trim_end_matches('\r')
            .split_once(key)
            .map(|(_, v)| v.trim())
    })
}
