//! A vif's host side, plugged and unplugged as xl does it: the TAP named
//! `vifDOMID.DEVID` (or `vifname=`), with the host-side MAC, its MTU, up
//! and a port of its bridge (xl's default `vif-bridge` script, done here
//! natively over netlink), or handed to the vif's own `script=`.
//!
//! Everything made here goes with the TAP's descriptors: closing them
//! (unplug, drop, or the process dying in any way) deletes the device and
//! its bridge port. Only what a custom script did on `online` needs its
//! `offline` call, which unplug and drop make; with a `record_dir` the call
//! is also kept on file while the vif is online, for whoever cleans up
//! after a process that died without making it
//! ([`script::run_recorded_offline`]).

use std::path::{Path, PathBuf};

use crate::mac::{Mac, HOST_SIDE_MAC};
use crate::netlink::{Netlink, NetlinkError};
use crate::script::{self, Action, ScriptEnv, ScriptError, SCRIPT_DIR, SCRIPT_TIMEOUT};
use crate::tap::{Offload, Tap, TapError};

/// The bridge a vif joins when it names none (xl's default).
pub const DEFAULT_BRIDGE: &str = "xenbr0";

/// The MTU a vif gets when neither it nor its bridge says otherwise.
pub const DEFAULT_MTU: u32 = 1500;

/// xl's name for the host side of vif `devid` of domain `domid`.
pub fn default_name(domid: u32, devid: u32) -> String {
    format!("vif{domid}.{devid}")
}

/// One vif to plug (the toolstack's `vif=` entry, with the domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVifConfig {
    pub domid: u32,
    pub devid: u32,
    /// `vifname=`; default `vifDOMID.DEVID`.
    pub vifname: Option<String>,
    /// `bridge=`; default [`DEFAULT_BRIDGE`].
    pub bridge: Option<String>,
    /// `mtu=`; default the bridge's MTU ([`DEFAULT_MTU`] with a script).
    pub mtu: Option<u32>,
    /// `script=`; `None` or `vif-bridge` is done natively.
    pub script: Option<String>,
    /// Where scripts named without a `/` live; default [`SCRIPT_DIR`].
    pub script_dir: Option<PathBuf>,
    /// `gatewaydev=`, for the script.
    pub gatewaydev: Option<String>,
    /// The guest's MAC and `ip=`, for the script.
    pub mac: Option<Mac>,
    pub ip: Option<String>,
    /// TAP queues (netback's, at least 1).
    pub queues: usize,
    pub offload: Offload,
    /// Where a script vif's `offline` call is kept while it is online
    /// ([`script::write_record`]); `None`: not kept.
    pub record_dir: Option<PathBuf>,
}

impl HostVifConfig {
    pub fn new(domid: u32, devid: u32) -> HostVifConfig {
        HostVifConfig {
            domid,
            devid,
            vifname: None,
            bridge: None,
            mtu: None,
            script: None,
            script_dir: None,
            gatewaydev: None,
            mac: None,
            ip: None,
            queues: 1,
            offload: Offload::ALL,
            record_dir: None,
        }
    }

    pub fn name(&self) -> String {
        self.vifname
            .clone()
            .unwrap_or_else(|| default_name(self.domid, self.devid))
    }

    pub fn bridge(&self) -> &str {
        self.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE)
    }

    /// The script to run, or `None` when the bridge work is done natively.
    pub fn script_path(&self) -> Option<PathBuf> {
        let s = self.script.as_deref()?;
        if script::is_builtin_bridge(s) {
            return None;
        }
        let dir = self.script_dir.as_deref().unwrap_or(Path::new(SCRIPT_DIR));
        Some(script::resolve(s, dir))
    }
}

/// Why a vif's host side could not be set up or taken down.
#[derive(Debug, thiserror::Error)]
pub enum HostNetError {
    #[error("vif {vif}: {source}")]
    Tap {
        vif: String,
        #[source]
        source: TapError,
    },
    #[error("vif {vif}: {source}")]
    Netlink {
        vif: String,
        #[source]
        source: NetlinkError,
    },
    #[error("vif {vif}: {source}")]
    Script {
        vif: String,
        #[source]
        source: ScriptError,
    },
}

/// A plugged vif's host side.
#[derive(Debug)]
pub struct HostVif {
    tap: Tap,
    bridge: Option<String>,
    mtu: u32,
    script: Option<PathBuf>,
    env: ScriptEnv,
    /// The kept `offline` call, removed once made.
    record: Option<PathBuf>,
    unplugged: bool,
}

impl HostVif {
    /// Creates the TAP and puts it on its bridge (or runs the vif's script
    /// with `online`), in the calling thread's network namespace. A missing
    /// bridge fails before anything is created.
    pub fn plug(cfg: &HostVifConfig) -> Result<HostVif, HostNetError> {
        let name = cfg.name();
        let nl_err = |source| HostNetError::Netlink {
            vif: name.clone(),
            source,
        };
        let script = cfg.script_path();
        let mut nl = Netlink::open().map_err(nl_err)?;
        let bridge_mtu = match script {
            None => {
                let b = cfg.bridge();
                nl.bridge_index(b).map_err(nl_err)?;
                nl.link(b).map_err(nl_err)?.and_then(|l| l.mtu)
            }
            Some(_) => None,
        };
        let tap =
            Tap::create(&name, cfg.queues, cfg.offload).map_err(|source| HostNetError::Tap {
                vif: name.clone(),
                source,
            })?;
        let mtu = cfg.mtu.or(bridge_mtu).unwrap_or(DEFAULT_MTU);
        nl.set_mac(&name, HOST_SIDE_MAC).map_err(nl_err)?;
        nl.set_mtu(&name, mtu).map_err(nl_err)?;
        let env = ScriptEnv {
            domid: cfg.domid,
            devid: cfg.devid,
            vif: name.clone(),
            gatewaydev: cfg.gatewaydev.clone(),
            bridge: cfg.bridge.clone(),
            mac: cfg.mac.map(|m| m.to_string()),
            ip: cfg.ip.clone(),
            mtu: Some(mtu),
        };
        let mut vif = HostVif {
            tap,
            bridge: None,
            mtu,
            script: script.clone(),
            env,
            record: None,
            unplugged: false,
        };
        match &script {
            None => {
                let b = cfg.bridge();
                nl.attach_to_bridge(&name, b).map_err(nl_err)?;
                nl.set_up(&name, true).map_err(nl_err)?;
                vif.bridge = Some(b.to_string());
                tracing::info!(vif = name, bridge = b, mtu, "vif plugged into its bridge");
            }
            Some(path) => {
                if let Err(source) = script::run(path, Action::Online, &vif.env, SCRIPT_TIMEOUT) {
                    // Nothing to take down: the script failed its online.
                    vif.script = None;
                    return Err(HostNetError::Script { vif: name, source });
                }
                if let Some(dir) = &cfg.record_dir {
                    match script::write_record(dir, path, &vif.env) {
                        Ok(p) => vif.record = Some(p),
                        Err(e) => tracing::warn!(
                            vif = name,
                            "cannot keep the script's offline call in {}: {e}; it is \
                             lost if this process dies without making it",
                            dir.display()
                        ),
                    }
                }
            }
        }
        Ok(vif)
    }

    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    pub fn name(&self) -> &str {
        self.tap.name()
    }

    /// The bridge it is a port of (when rxen did the bridging).
    pub fn bridge(&self) -> Option<&str> {
        self.bridge.as_deref()
    }

    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Takes the vif down: the script's `offline`, then the TAP goes (and
    /// with it the bridge port).
    pub fn unplug(mut self) -> Result<(), HostNetError> {
        self.unplug_inner()
    }

    fn unplug_inner(&mut self) -> Result<(), HostNetError> {
        if self.unplugged {
            return Ok(());
        }
        self.unplugged = true;
        if let Some(path) = &self.script {
            let ran = script::run(path, Action::Offline, &self.env, SCRIPT_TIMEOUT);
            // Made (or tried) once: nobody else is to make it again.
            if let Some(rec) = self.record.take() {
                let _ = std::fs::remove_file(rec);
            }
            ran.map_err(|source| HostNetError::Script {
                vif: self.env.vif.clone(),
                source,
            })?;
        }
        tracing::info!(vif = self.env.vif, "vif unplugged");
        Ok(())
    }
}

impl Drop for HostVif {
    fn drop(&mut self) {
        if let Err(e) = self.unplug_inner() {
            tracing::warn!("{e}");
        }
    }
}
