//! Debian's real xenstore clients (`xenstore-utils`) against `unix::serve`.
//!
//! Debian's libxenstore (Xen 4.17) takes the socket from `XENSTORED_PATH`
//! (it must be a socket; without it the default is
//! `/var/run/xenstored/socket`, then `/proc/xen/xenbus`), so the test points
//! that variable at a temporary socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use xenstore::unix;

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or(None);
    found.unwrap_or_else(|| panic!("{name} not found: apt-get install xenstore-utils"))
}

fn wait(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

fn spawn(sock: &Path, args: &[&str]) -> Child {
    Command::new(tool(args[0]))
        .args(&args[1..])
        .env("XENSTORED_PATH", sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]))
}

fn run(sock: &Path, args: &[&str]) -> Output {
    wait(spawn(sock, args), args[0])
}

fn ok(sock: &Path, args: &[&str]) -> String {
    let out = run(sock, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn debian_xenstore_utils_against_our_socket() {
    let dir = std::env::temp_dir().join(format!(
        "rxen-xenstore-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let sock = dir.join("socket");
    let server = unix::serve(&sock).expect("serve");

    ok(&sock, &["xenstore-write", "/a", "b"]);
    assert_eq!(ok(&sock, &["xenstore-read", "/a"]), "b\n");
    ok(&sock, &["xenstore-write", "/c/d", "e", "/c/f", "g"]);
    assert_eq!(ok(&sock, &["xenstore-list", "/c"]), "d\nf\n");

    let ls = ok(&sock, &["xenstore-ls", "/"]);
    assert!(ls.contains("a = \"b\""), "{ls}");
    assert!(ls.contains(" d = \"e\""), "{ls}");
    assert!(ls.contains("tool = \"\""), "{ls}");

    ok(&sock, &["xenstore-chmod", "/a", "n0", "r5"]);
    let lsp = ok(&sock, &["xenstore-ls", "-p", "/"]);
    assert!(lsp.contains("(n0,r5)"), "{lsp}");

    assert!(run(&sock, &["xenstore-exists", "/a"]).status.success());
    ok(&sock, &["xenstore-rm", "/a"]);
    assert!(!run(&sock, &["xenstore-exists", "/a"]).status.success());
    let missing = run(&sock, &["xenstore-read", "/a"]);
    assert!(!missing.status.success());

    // A watch: fires once on registration, then on our write.
    let watcher = spawn(&sock, &["xenstore-watch", "-n", "2", "/c"]);
    let shared = server.store();
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.lock().total_watches() == 0 {
        assert!(Instant::now() < deadline, "xenstore-watch never registered");
        std::thread::sleep(Duration::from_millis(10));
    }
    ok(&sock, &["xenstore-write", "/c/x", "1"]);
    let out = wait(watcher, "xenstore-watch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "/c\n/c/x\n");

    // What the clients wrote is in the shared store.
    assert_eq!(shared.lock().read(0, "/c/d").unwrap(), b"e");
    drop(server);
    assert!(!sock.exists(), "socket removed on shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
