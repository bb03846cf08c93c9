//! The toolstack's side of a monitor's control socket (protocol:
//! `domain::control`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use domain::control::{ProtocolError, RequestMsg, ResponseMsg, MAX_LINE};
pub use domain::control::{Request, RunState, ShutdownKind, Status};

/// How long a monitor may take to answer one request.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the monitor at {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the monitor at {} did not answer: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the monitor at {} closed the connection", path.display())]
    Closed { path: PathBuf },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("unexpected answer: {0}")]
    Unexpected(serde_json::Error),
}

/// One connection to a monitor.
pub struct Client {
    path: PathBuf,
    out: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        let err = |source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        };
        let s = UnixStream::connect(socket).map_err(err)?;
        s.set_read_timeout(Some(TIMEOUT)).map_err(err)?;
        s.set_write_timeout(Some(TIMEOUT)).map_err(err)?;
        Ok(Client {
            path: socket.to_path_buf(),
            out: s.try_clone().map_err(err)?,
            reader: BufReader::new(s),
        })
    }

    /// Sends `req` and returns the monitor's result.
    pub fn call(&mut self, req: Request) -> Result<serde_json::Value, ClientError> {
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        self.out
            .write_all(RequestMsg::new(req).to_line().as_bytes())
            .map_err(io)?;
        let mut line = String::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ClientError::Closed {
                path: self.path.clone(),
            });
        }
        Ok(ResponseMsg::parse(line.trim_end())?)
    }

    pub fn status(&mut self) -> Result<Status, ClientError> {
        serde_json::from_value(self.call(Request::Status)?).map_err(ClientError::Unexpected)
    }
}

/// One request on a fresh connection.
pub fn call(socket: &Path, req: Request) -> Result<serde_json::Value, ClientError> {
    Client::connect(socket)?.call(req)
}

/// The status of the monitor at `socket`.
pub fn status(socket: &Path) -> Result<Status, ClientError> {
    Client::connect(socket)?.status()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake monitor that answers each request line with `answer`.
    fn fake(answer: &'static str) -> (PathBuf, std::thread::JoinHandle<Vec<String>>) {
        let dir = std::env::temp_dir().join(format!(
            "rxen-client-{}-{}",
            std::process::id(),
            answer.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut out = s.try_clone().unwrap();
            let mut got = Vec::new();
            for line in BufReader::new(s).lines() {
                let line = line.unwrap();
                got.push(line);
                out.write_all(answer.as_bytes()).unwrap();
            }
            got
        });
        (path, t)
    }

    #[test]
    fn requests_go_out_as_lines_and_errors_come_back() {
        let (path, t) = fake("{\"version\":1,\"error\":\"domain 'x' is not running\"}\n");
        let mut c = Client::connect(&path).unwrap();
        let e = c.call(Request::Pause).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the monitor answered: domain 'x' is not running"
        );
        c.call(Request::Destroy).unwrap_err();
        drop(c);
        assert_eq!(
            t.join().unwrap(),
            [
                "{\"version\":1,\"request\":{\"op\":\"pause\"}}",
                "{\"version\":1,\"request\":{\"op\":\"destroy\"}}"
            ]
        );
    }

    #[test]
    fn a_status_answer_is_decoded() {
        let (path, t) = fake(concat!(
            "{\"version\":1,\"ok\":{\"name\":\"w\",\"domid\":2,\"state\":\"blocked\",",
            "\"memory_mib\":128,\"vcpus\":1,\"cpu_time_ns\":2500000000,\"started_unix\":1.0,",
            "\"boots\":1,\"last_end\":null,\"crash_detail\":null,\"monitor_pid\":7}}\n"
        ));
        let s = status(&path).unwrap();
        assert_eq!(
            (s.name.as_str(), s.domid, s.state),
            ("w", 2, RunState::Blocked)
        );
        t.join().unwrap();
    }

    #[test]
    fn a_dead_socket_is_a_connect_error() {
        let e = call(Path::new("/nonexistent/rxen.sock"), Request::Status).unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    }
}
