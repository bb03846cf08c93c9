//! The control protocol between the toolstack and a domain's monitor.
//!
//! Every monitor listens on a Unix stream socket (`STATE/ID/control.sock`).
//! A client connects, writes one request, reads one response, and may send
//! further requests on the same connection. Each message is one JSON object
//! on one line (UTF-8, ended by `\n`, at most [`MAX_LINE`] bytes).
//!
//! Request: `{"version": 1, "request": {"op": OP, ...arguments}}`
//!
//! | `op`       | arguments                        | does                                        |
//! |------------|----------------------------------|---------------------------------------------|
//! | `status`   |                                  | answers with a [`Status`]                   |
//! | `shutdown` | `"kind": "poweroff" \| "reboot"` | writes the kind to the guest's xenstore `control/shutdown` node (the guest shuts itself down) |
//! | `destroy`  |                                  | stops the domain at once; the monitor exits |
//! | `pause`    |                                  | parks the vCPU (guest time keeps going)     |
//! | `unpause`  |                                  | lets it run again                           |
//! | `rename`   | `"name": NEW`                    | renames the domain (xenstore `name` nodes); the registry entry is the client's job |
//! | `block_attach` | `"disk": {BlockSpec}`        | hot-plugs a disk (opens and locks the image, writes the vbd's nodes) |
//! | `block_detach` | `"vdev": NAME`               | starts unplugging a disk; it goes once the guest has closed it |
//! | `block_list`   |                              | answers with the disks ([`crate::blk::BlockInfo`] list) |
//! | `network_attach` | `"vif": {NicAttach}`       | hot-plugs a vif (TAP on its bridge, the vif's nodes) |
//! | `network_detach` | `"dev": DEVID \| MAC`      | unplugs a vif (its TAP and bridge port go) |
//! | `network_list`   |                            | answers with the vifs ([`crate::net::NetInfo`] list) |
//!
//! Response: `{"version": 1, "ok": RESULT}` or `{"version": 1, "error":
//! "MESSAGE"}`. `RESULT` is a [`Status`] for `status` and `null` otherwise.
//!
//! Versioning: a monitor answers a request whose `version` differs from
//! [`VERSION`] with an error naming both versions, and so does a client
//! reading such a response; a new version may add `op`s and fields, and
//! readers ignore fields they do not know.
//!
//! Example session:
//! ```text
//! > {"version":1,"request":{"op":"pause"}}
//! < {"version":1,"ok":null}
//! > {"version":1,"request":{"op":"status"}}
//! < {"version":1,"ok":{"name":"web","domid":3,"state":"paused",...}}
//! ```

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// Longest message line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    Shutdown { kind: ShutdownKind },
    Destroy,
    Pause,
    Unpause,
    Rename { name: String },
    BlockAttach { disk: BlockSpec },
    BlockDetach { vdev: String },
    BlockList,
    NetworkAttach { vif: crate::net::NicAttach },
    NetworkDetach { dev: String },
    NetworkList,
}

/// A disk to hot-plug, as the client parsed it from an xl disk spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSpec {
    pub path: std::path::PathBuf,
    /// `raw` or `qcow2`.
    pub format: String,
    pub vdev: String,
    pub devid: u32,
    pub read_only: bool,
    pub cdrom: bool,
    pub direct: bool,
    pub discard: bool,
}

impl BlockSpec {
    pub fn from_attach(d: &crate::blk::DiskAttach) -> BlockSpec {
        BlockSpec {
            path: d.path.clone(),
            format: d.format.to_string(),
            vdev: d.vdev.clone(),
            devid: d.devid,
            read_only: d.read_only,
            cdrom: d.cdrom,
            direct: d.direct,
            discard: d.discard,
        }
    }

    pub fn to_attach(&self) -> Result<crate::blk::DiskAttach, String> {
        Ok(crate::blk::DiskAttach {
            path: self.path.clone(),
            format: self.format.parse()?,
            vdev: self.vdev.clone(),
            devid: self.devid,
            read_only: self.read_only,
            cdrom: self.cdrom,
            direct: self.direct,
            discard: self.discard,
        })
    }
}

/// What `shutdown` asks the guest to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownKind {
    Poweroff,
    Reboot,
}

impl ShutdownKind {
    /// The value written to `control/shutdown`.
    pub fn node_value(self) -> &'static str {
        match self {
            ShutdownKind::Poweroff => "poweroff",
            ShutdownKind::Reboot => "reboot",
        }
    }
}

/// The life of a domain as `xl list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Being built (before the first guest instruction, or between a
    /// reboot and the next boot).
    Starting,
    /// The vCPU is running guest code (`r-----`).
    Running,
    /// The vCPU waits for an event (`-b----`).
    Blocked,
    /// Paused from the host (`--p---`).
    Paused,
    /// The guest shut down and the domain is kept (`---s--`).
    Shutdown,
    /// The guest crashed and the domain is kept (`----c-`).
    Crashed,
    /// Being destroyed (`-----d`).
    Dying,
}

impl RunState {
    /// xl's six-position state column.
    pub fn xl_column(self) -> &'static str {
        match self {
            RunState::Starting | RunState::Blocked => "-b----",
            RunState::Running => "r-----",
            RunState::Paused => "--p---",
            RunState::Shutdown => "---s--",
            RunState::Crashed => "----c-",
            RunState::Dying => "-----d",
        }
    }
}

/// A domain as its monitor sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub name: String,
    pub domid: u16,
    pub state: RunState,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// CPU time of the vCPU thread(s) over all boots of this domain, in ns.
    pub cpu_time_ns: u64,
    /// When the current boot started (Unix time, seconds); 0 before.
    pub started_unix: f64,
    /// Boots so far (1 after create; +1 on each restart).
    pub boots: u32,
    /// How the last boot ended (`poweroff`, `reboot`, `crash`, ...).
    pub last_end: Option<String>,
    /// For a crash: what happened.
    pub crash_detail: Option<String>,
    pub monitor_pid: u32,
    /// The domain's uuid (the config's, or the one the monitor made).
    #[serde(default)]
    pub uuid: Option<String>,
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMsg {
    pub version: u32,
    pub request: Request,
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseMsg {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Errors reading or checking a message.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("protocol version {got} is not spoken here (this side speaks {VERSION})")]
    Version { got: u32 },
    #[error("the monitor answered: {0}")]
    Remote(String),
    #[error("message longer than {MAX_LINE} bytes")]
    TooLong,
}

impl RequestMsg {
    pub fn new(request: Request) -> RequestMsg {
        RequestMsg {
            version: VERSION,
            request,
        }
    }

    /// The line to send (with its `\n`).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("requests always serialize");
        s.push('\n');
        s
    }

    /// Parses a request line and checks its version.
    pub fn parse(line: &str) -> Result<Request, ProtocolError> {
        if line.len() > MAX_LINE {
            return Err(ProtocolError::TooLong);
        }
        // The version first, so a newer client with an unknown op gets a
        // version error rather than a parse error.
        #[derive(Deserialize)]
        struct V {
            version: u32,
        }
        let v: V = serde_json::from_str(line)?;
        if v.version != VERSION {
            return Err(ProtocolError::Version { got: v.version });
        }
        let m: RequestMsg = serde_json::from_str(line)?;
        Ok(m.request)
    }
}

impl ResponseMsg {
    pub fn ok(value: serde_json::Value) -> ResponseMsg {
        ResponseMsg {
            version: VERSION,
            ok: Some(value),
            error: None,
        }
    }

    pub fn error(message: impl Into<String>) -> ResponseMsg {
        ResponseMsg {
            version: VERSION,
            ok: None,
            error: Some(message.into()),
        }
    }

    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("responses always serialize");
        s.push('\n');
        s
    }

    /// Parses a response line: the result (`null` when the request has
    /// none), or the monitor's error.
    pub fn parse(line: &str) -> Result<serde_json::Value, ProtocolError> {
        if line.len() > MAX_LINE {
            return Err(ProtocolError::TooLong);
        }
        let m: ResponseMsg = serde_json::from_str(line)?;
        if m.version != VERSION {
            return Err(ProtocolError::Version { got: m.version });
        }
        match (m.ok, m.error) {
            (_, Some(e)) => Err(ProtocolError::Remote(e)),
            (Some(v), None) => Ok(v),
            (None, None) => Ok(serde_json::Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line_each() {
        let line = RequestMsg::new(Request::Shutdown {
            kind: ShutdownKind::Reboot,
        })
        .to_line();
        assert_eq!(
            line,
            "{\"version\":1,\"request\":{\"op\":\"shutdown\",\"kind\":\"reboot\"}}\n"
        );
        assert_eq!(
            RequestMsg::parse(line.trim_end()).unwrap(),
            Request::Shutdown {
                kind: ShutdownKind::Reboot
            }
        );
        for r in [
            Request::Status,
            Request::Destroy,
            Request::Pause,
            Request::Unpause,
            Request::Rename { name: "x".into() },
            Request::BlockDetach {
                vdev: "xvdb".into(),
            },
            Request::BlockList,
            Request::NetworkAttach {
                vif: crate::net::NicAttach {
                    devid: 1,
                    mac: [0, 0x16, 0x3e, 0, 0, 1],
                    bridge: Some("xenbr1".into()),
                    vifname: None,
                    mtu: Some(9000),
                    ip: None,
                    script: None,
                    gatewaydev: None,
                    rate: Some((1_250_000, 20_000)),
                },
            },
            Request::NetworkDetach { dev: "1".into() },
            Request::NetworkList,
        ] {
            let l = RequestMsg::new(r.clone()).to_line();
            assert_eq!(l.matches('\n').count(), 1);
            assert_eq!(RequestMsg::parse(&l).unwrap(), r);
        }
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let e = RequestMsg::parse("{\"version\":2,\"request\":{\"op\":\"fly\"}}").unwrap_err();
        assert!(matches!(e, ProtocolError::Version { got: 2 }), "{e}");
        assert!(e.to_string().contains("speaks 1"));
        assert!(matches!(
            RequestMsg::parse("{\"version\":1,\"request\":{\"op\":\"fly\"}}"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            RequestMsg::parse("not json"),
            Err(ProtocolError::Malformed(_))
        ));
        let long = format!("{{\"version\":1,\"x\":\"{}\"}}", "a".repeat(MAX_LINE));
        assert!(matches!(
            RequestMsg::parse(&long),
            Err(ProtocolError::TooLong)
        ));
        assert!(matches!(
            ResponseMsg::parse("{\"version\":7,\"ok\":null}"),
            Err(ProtocolError::Version { got: 7 })
        ));
    }

    #[test]
    fn responses_carry_a_result_or_an_error() {
        let l = ResponseMsg::ok(serde_json::json!({"a": 1})).to_line();
        assert_eq!(ResponseMsg::parse(&l).unwrap(), serde_json::json!({"a": 1}));
        let l = ResponseMsg::ok(serde_json::Value::Null).to_line();
        assert_eq!(ResponseMsg::parse(&l).unwrap(), serde_json::Value::Null);
        let l = ResponseMsg::error("no such thing").to_line();
        assert_eq!(l, "{\"version\":1,\"error\":\"no such thing\"}\n");
        let e = ResponseMsg::parse(&l).unwrap_err();
        assert_eq!(e.to_string(), "the monitor answered: no such thing");
        // Unknown fields from a newer monitor are ignored.
        assert!(ResponseMsg::parse("{\"version\":1,\"ok\":null,\"extra\":3}").is_ok());
    }

    #[test]
    fn status_round_trips_and_maps_to_xl_columns() {
        let s = Status {
            name: "web".into(),
            domid: 3,
            state: RunState::Paused,
            memory_mib: 256,
            vcpus: 1,
            cpu_time_ns: 1_500_000_000,
            started_unix: 1.5e9,
            boots: 1,
            last_end: None,
            crash_detail: None,
            monitor_pid: 42,
            uuid: Some("00000000-0000-4000-8000-000000000001".into()),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "paused");
        assert_eq!(serde_json::from_value::<Status>(v).unwrap(), s);
        let cols: Vec<_> = [
            RunState::Running,
            RunState::Blocked,
            RunState::Paused,
            RunState::Shutdown,
            RunState::Crashed,
            RunState::Dying,
        ]
        .iter()
        .map(|s| s.xl_column())
        .collect();
        assert_eq!(
            cols,
            ["r-----", "-b----", "--p---", "---s--", "----c-", "-----d"]
        );
    }
}
