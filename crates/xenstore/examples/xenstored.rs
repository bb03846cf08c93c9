//! Serves a fresh store on a Unix socket: `cargo run -p xenstore --example
//! xenstored -- <socket path>` (default: Xen's `/var/run/xenstored/socket`).

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| xenstore::unix::DEFAULT_SOCKET.to_string());
    let _server = xenstore::unix::serve(&path)?;
    eprintln!("xenstored listening on {path}");
    loop {
        std::thread::park();
    }
}
