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
//!
//! While a script vif is online its `offline` call can be kept in a record
//! file ([`write_record`]); if the process that plugged it dies without
//! making the call (`kill -9`), whoever cleans up after it runs
//! [`run_recorded_offline`], with the environment `online` had.

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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// A script vif's pending `offline` call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OfflineRecord {
    pub script: PathBuf,
    pub env: ScriptEnv,
}

const RECORD_PREFIX: &str = "vif-script-";
const RECORD_SUFFIX: &str = ".json";

/// The record file of vif `devid` in `dir` (devids are unique per domain).
pub fn record_path(dir: &Path, devid: u32) -> PathBuf {
    dir.join(format!("{RECORD_PREFIX}{devid}{RECORD_SUFFIX}"))
}

/// Keeps `script`'s `offline` call for the vif of `env` in `dir`; returns
/// the file, which the caller removes once it made the call itself.
pub fn write_record(dir: &Path, script: &Path, env: &ScriptEnv) -> std::io::Result<PathBuf> {
    let path = record_path(dir, env.devid);
    let rec = OfflineRecord {
        script: script.to_path_buf(),
        env: env.clone(),
    };
    let text = serde_json::to_vec(&rec).map_err(std::io::Error::other)?;
    // Write-then-rename: a reader never sees half a record.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Why a recorded `offline` call could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("vif script record {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vif script record {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// Makes every `offline` call recorded in `dir` (their vifs' process died
/// before making them), each once: a record is removed before its script
/// runs. Returns how many ran, and what failed.
pub fn run_recorded_offline(dir: &Path) -> (usize, Vec<RecordError>) {
    let mut errors = Vec::new();
    let mut ran = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, errors);
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(RECORD_PREFIX) && n.ends_with(RECORD_SUFFIX))
        })
        .collect();
    paths.sort();
    for path in paths {
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(source) => {
                errors.push(RecordError::Read { path, source });
                continue;
            }
        };
        let _ = std::fs::remove_file(&path);
        let rec: OfflineRecord = match serde_json::from_slice(&text) {
            Ok(r) => r,
            Err(source) => {
                errors.push(RecordError::Parse { path, source });
                continue;
            }
        };
        tracing::info!(script = %rec.script.display(), vif = rec.env.vif, "running a dead monitor's vif offline");
        ran += 1;
        if let Err(e) = run(&rec.script, Action::Offline, &rec.env, SCRIPT_TIMEOUT) {
            errors.push(e.into());
        }
    }
    (ran, errors)
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
    fn recorded_offline_calls_run_once_with_the_online_environment() {
        let d = tmpdir("record");
        let calls = d.join("calls");
        let p = script(
            &d,
            "vif-rec",
            &format!(
                "echo \"$1 vif=$vif path=$XENBUS_PATH mac=$mac mtu=$mtu\" >> {}",
                calls.display()
            ),
        );
        let env = ScriptEnv {
            domid: 4,
            devid: 2,
            vif: "vif4.2".into(),
            mac: Some("00:16:3e:0a:0b:0c".into()),
            mtu: Some(1500),
            ..Default::default()
        };
        let rec = write_record(&d, &p, &env).unwrap();
        assert_eq!(rec, record_path(&d, 2));
        // A record that cannot be read as one is reported and dropped.
        std::fs::write(record_path(&d, 9), "not json").unwrap();
        let (ran, errors) = run_recorded_offline(&d);
        assert_eq!(ran, 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(matches!(errors[0], RecordError::Parse { .. }), "{errors:?}");
        assert_eq!(
            std::fs::read_to_string(&calls).unwrap(),
            "offline vif=vif4.2 path=backend/vif/4/2 mac=00:16:3e:0a:0b:0c mtu=1500\n"
        );
        // Each call is made once.
        assert_eq!(run_recorded_offline(&d).0, 0);
        assert!(!rec.exists() && !record_path(&d, 9).exists());
        assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 1);
        // No directory: nothing to do.
        assert_eq!(run_recorded_offline(&d.join("gone")).0, 0);
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
