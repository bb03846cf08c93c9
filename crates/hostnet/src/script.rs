//! Hotplug scripts: what xl runs when a vif comes and goes (`script=`).
//!
//! The call is libxl's: `SCRIPT online type_if=vif` once the backend's
//! interface exists, `SCRIPT offline type_if=vif` when it goes, with the
//! caller's environment plus
//!
//! | variable | value |
//! |---|---|
//! | `script` | the script's path |
//! | `XENBUS_TYPE` | `vif` |
//! | `XENBUS_PATH` | `backend/vif/DOMID/DEVID` |
//! | `XENBUS_BASE_PATH` | `backend` |
//! | `netdev` | the vif's `gatewaydev=` (empty if none) |
//! | `vif` | the host interface (`vifDOMID.DEVID` or `vifname=`) |
//!
//! Xen's own scripts read the rest (`bridge`, `mac`, `ip`, `mtu`) from the
//! backend's xenstore directory; rxen also passes them as `bridge`, `mac`,
//! `ip` and `mtu` in the environment (empty when unset) so a script works
//! without a xenstore client. A relative script name is looked up in
//! `/etc/xen/scripts`, as xl does (`XEN_SCRIPT_DIR`).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where xl looks for scripts given by name.
pub const SCRIPT_DIR: &str = "/etc/xen/scripts";

/// How long a script may run before it counts as failed and is killed.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The script's first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Online,
    Offline,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Online => "online",
            Action::Offline => "offline",
        }
    }
}

/// What a script learns about the vif.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptEnv {
    pub domid: u32,
    pub devid: u32,
    /// The host interface.
    pub vif: String,
    pub gatewaydev: Option<String>,
    pub bridge: Option<String>,
    pub mac: Option<String>,
    pub ip: Option<String>,
    pub mtu: Option<u32>,
}

impl ScriptEnv {
    /// The variables set for the script, in a fixed order.
    pub fn vars(&self, script: &Path) -> Vec<(&'static str, String)> {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            ("script", script.display().to_string()),
            ("XENBUS_TYPE", "vif".into()),
            (
                "XENBUS_PATH",
                format!("backend/vif/{}/{}", self.domid, self.devid),
            ),
            ("XENBUS_BASE_PATH", "backend".into()),
            ("netdev", o(&self.gatewaydev)),
            ("vif", self.vif.clone()),
            ("bridge", o(&self.bridge)),
            ("mac", o(&self.mac)),
            ("ip", o(&self.ip)),
            ("mtu", self.mtu.map(|m| m.to_string()).unwrap_or_default()),
        ]
    }
}

/// Why a script failed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("vif script {path}: cannot run it: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vif script `{path} {action}` failed ({status}){}", tail(.output))]
    Failed {
        path: PathBuf,
        action: &'static str,
        status: String,
        output: String,
    },
    #[error("vif script `{path} {action}` did not finish within {}s and was killed", .timeout.as_secs())]
    Timeout {
        path: PathBuf,
        action: &'static str,
        timeout: Duration,
    },
}

fn tail(output: &str) -> String {
    let t = output.trim();
    if t.is_empty() {
        return String::new();
    }
    let start = t.len().saturating_sub(400);
    let start = (start..=t.len())
        .find(|&i| t.is_char_boundary(i))
        .unwrap_or(0);
    format!(": {}", &t[start..])
}

/// The script's path: as given if it contains a `/`, else in `dir`.
pub fn resolve(script: &str, dir: &Path) -> PathBuf {
    if script.contains('/') {
        PathBuf::from(script)
    } else {
        dir.join(script)
    }
}

/// Whether `script` is xl's default, `vif-bridge`, which rxen does itself
/// (TAP up and on its bridge) rather than run.
pub fn is_builtin_bridge(script: &str) -> bool {
    Path::new(script).file_name().and_then(|n| n.to_str()) == Some("vif-bridge")
}

/// Runs `path ACTION type_if=vif` with `env`; its output (stdout and
/// stderr) is returned, and logged.
pub fn run(
    path: &Path,
    action: Action,
    env: &ScriptEnv,
    timeout: Duration,
) -> Result<String, ScriptError> {
    let mut cmd = Command::new(path);
    // Its own process group, so a timeout kills what it started too.
    cmd.process_group(0);
    cmd.arg(action.as_str())
        .arg("type_if=vif")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env.vars(path) {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|source| ScriptError::Spawn {
        path: path.to_path_buf(),
        source,
    })?;
    // Drain both pipes on threads so a chatty script cannot block on a
    // full pipe while we wait for it.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(r) = r {
                let _ = r.take(64 * 1024).read_to_end(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                // SAFETY: signals the script's own process group only.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                return Err(ScriptError::Timeout {
                    path: path.to_path_buf(),
                    action: action.as_str(),
                    timeout,
                });
            }
            Err(source) => {
                return Err(ScriptError::Spawn {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    };
    let mut output = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    tracing::info!(script = %path.display(), action = action.as_str(), vif = env.vif, %status, output = output.trim(), "vif script ran");
    if !status.success() {
        return Err(ScriptError::Failed {
            path: path.to_path_buf(),
            action: action.as_str(),
            status: status.to_string(),
            output,
        });
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hostnet-script-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn scripts_get_xls_arguments_and_environment() {
        let d = tmpdir("env");
        let p = script(
            &d,
            "vif-test",
            "echo \"$1 $2 script=$script type=$XENBUS_TYPE path=$XENBUS_PATH base=$XENBUS_BASE_PATH netdev=$netdev vif=$vif bridge=$bridge mac=$mac ip=$ip mtu=$mtu\"",
        );
        let env = ScriptEnv {
            domid: 7,
            devid: 1,
            vif: "vif7.1".into(),
            gatewaydev: Some("eth9".into()),
            bridge: Some("br-test".into()),
            mac: Some("00:16:3e:01:02:03".into()),
            ip: Some("10.0.0.2".into()),
            mtu: Some(1400),
        };
        assert_eq!(resolve("vif-test", &d), p);
        assert_eq!(resolve("/x/y", &d), PathBuf::from("/x/y"));
        let out = run(&p, Action::Online, &env, SCRIPT_TIMEOUT).unwrap();
        assert_eq!(
            out.trim(),
            format!(
                "online type_if=vif script={} type=vif path=backend/vif/7/1 base=backend netdev=eth9 vif=vif7.1 bridge=br-test mac=00:16:3e:01:02:03 ip=10.0.0.2 mtu=1400",
                p.display()
            )
        );
        let out = run(&p, Action::Offline, &ScriptEnv::default(), SCRIPT_TIMEOUT).unwrap();
        assert!(out.starts_with("offline type_if=vif"), "{out}");
        assert!(out.contains("netdev= vif= bridge="), "{out}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn failures_missing_scripts_and_hangs_are_errors() {
        let d = tmpdir("fail");
        let p = script(&d, "vif-bad", "echo 'no bridge here' >&2; exit 3");
        let e = run(&p, Action::Online, &ScriptEnv::default(), SCRIPT_TIMEOUT).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("exit status: 3") && msg.contains("no bridge here"),
            "{msg}"
        );
        let e = run(
            &d.join("nope"),
            Action::Online,
            &ScriptEnv::default(),
            SCRIPT_TIMEOUT,
        )
        .unwrap_err();
        assert!(matches!(e, ScriptError::Spawn { .. }), "{e}");
        let p = script(&d, "vif-hang", "sleep 30");
        let t = Instant::now();
        let e = run(
            &p,
            Action::Online,
            &ScriptEnv::default(),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(e, ScriptError::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(is_builtin_bridge("vif-bridge"));
        assert!(is_builtin_bridge("/etc/xen/scripts/vif-bridge"));
        assert!(!is_builtin_bridge("vif-route"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
