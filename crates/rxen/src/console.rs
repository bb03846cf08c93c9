//! `rxen console`: one viewer of a detached domain's console socket
//! (protocol: `domain::console_server`). The terminal goes raw; the escape
//! character detaches (the domain keeps running); so does the end of stdin.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context, Result};
use domain::console_server::{Hello, HISTORY};
use domain::control::{ResponseMsg, VERSION};
use domain::terminal::RawMode;

/// Parses xl's escape spec: `^]`, `^a` (control characters) or one
/// character.
pub fn parse_escape(spec: &str) -> Result<u8> {
    let b = spec.as_bytes();
    match b {
        [b'^', c] if (0x40..0x80).contains(c) => Ok(c & 0x1f),
        [c] if c.is_ascii() => Ok(*c),
        _ => bail!(
            "invalid escape character {spec:?}: give ^X (e.g. ^] or ^a) or one ASCII character"
        ),
    }
}

/// How a console session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Detach {
    /// The user typed the escape character.
    Escape,
    /// Our input ended.
    InputEnded,
    /// The monitor closed the console: the domain is gone.
    DomainGone,
}

/// Attaches to the console at `socket`, replaying recent output when
/// `replay` is set (as `create -c` does, to show the boot).
pub fn attach(socket: &Path, escape: u8, replay: bool) -> Result<Detach> {
    let s = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the console at {}", socket.display()))?;
    let hello = Hello {
        version: VERSION,
        replay: if replay { HISTORY } else { 0 },
    };
    let mut out = s.try_clone()?;
    out.write_all(format!("{}\n", serde_json::to_string(&hello)?).as_bytes())?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.is_empty() {
        bail!("the console closed at once");
    }
    ResponseMsg::parse(line.trim_end()).context("the console refused us")?;

    let raw = RawMode::enter(libc::STDIN_FILENO).context("cannot put the terminal in raw mode")?;
    // Guest output to stdout on its own thread; it ends with the socket.
    let printer = std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        let buffered = reader.buffer().to_vec();
        let _ = stdout.write_all(&buffered);
        let _ = stdout.flush();
        let mut sock = reader.into_inner();
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stdout
                        .write_all(&buf[..n])
                        .and_then(|_| stdout.flush())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let how = pump_input(&mut out, escape, &printer);
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = printer.join();
    drop(raw);
    Ok(how)
}

fn pump_input(out: &mut UnixStream, escape: u8, printer: &std::thread::JoinHandle<()>) -> Detach {
    let mut buf = [0u8; 1024];
    loop {
        if printer.is_finished() {
            return Detach::DomainGone;
        }
        let mut pfd = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 200) };
        if r <= 0 {
            continue;
        }
        // SAFETY: reads into `buf`, at most its length.
        let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) {
                continue;
            }
            return Detach::InputEnded;
        }
        if n == 0 {
            return Detach::InputEnded;
        }
        let bytes = &buf[..n as usize];
        if let Some(i) = bytes.iter().position(|&b| b == escape) {
            let _ = out.write_all(&bytes[..i]);
            return Detach::Escape;
        }
        if out.write_all(bytes).is_err() {
            return Detach::DomainGone;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_parse_like_xl() {
        assert_eq!(parse_escape("^]").unwrap(), 0x1d);
        assert_eq!(parse_escape("^a").unwrap(), 0x01);
        assert_eq!(parse_escape("^A").unwrap(), 0x01);
        assert_eq!(parse_escape("~").unwrap(), b'~');
        assert!(parse_escape("").is_err());
        assert!(parse_escape("ab").is_err());
    }
}
