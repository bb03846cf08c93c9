//! A virtual network interface on xenbus: the xenstore nodes of the
//! backend and frontend directories, and the backend's half of the xenbus
//! handshake with Linux's xen-netfront.
//!
//! Handshake (`xen/io/netif.h`, `xen-netfront.c`):
//! 1. We write both directories (the frontend's `mac`, `handle`; the
//!    backend's features: `feature-sg`, `feature-gso-tcpv4/6`,
//!    `feature-ipv6-csum-offload`, `feature-rx-copy`,
//!    `multi-queue-max-queues`, ...) and `state` = InitWait.
//! 2. netfront picks a queue count, writes per queue `tx-ring-ref`,
//!    `rx-ring-ref`, `event-channel` (under `queue-N/` with more than one
//!    queue), its own features (`request-rx-copy`, `feature-rx-notify`,
//!    `feature-sg`, ...), and goes to Connected.
//! 3. We map the rings, bind the event channels and go to Connected; the
//!    data path ([`crate::netback`]) runs from then on.
//! 4. Frontend `Closing`/`Closed`: we disconnect and follow it.
//!
//! Everything the frontend writes is untrusted: a missing or bad node
//! gets a message in the backend's `error` node and the device stays
//! disconnected (Closing), as with a corrupt ring later.

use xen_abi::io::xenbus::XenbusState;
use xen_abi::GrantRef;
use xenstore::ring::SharedPage;
use xenstore::{DomId, StoreOps, XsResult};

use crate::netback::{Features, NetQueue, NetStats};
use crate::vbd::FrontendLink;
use crate::xenbus::{self, DevicePaths};

/// What the toolstack says about one vif.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifConfig {
    /// The guest.
    pub domid: DomId,
    /// xenbus device id (the index in `vif=[...]` or `devid=`).
    pub devid: u32,
    /// The guest's MAC, `00:16:3e:..` form.
    pub mac: String,
    /// The host interface (`vifname`, default `vifDOMID.DEVID`).
    pub vifname: String,
    /// The bridge it is on (for the `bridge` node), if any.
    pub bridge: Option<String>,
    /// `ip=` as written, for the `ip` node (as xl writes it).
    pub ip: Option<String>,
    /// The link MTU (`mtu` node).
    pub mtu: u32,
    /// Queues offered (`multi-queue-max-queues`), at least 1.
    pub max_queues: u32,
    /// The hook script, for the `script` node.
    pub script: Option<String>,
    /// `rate=` as xl writes it (`BYTES,USECS`), for the `rate` node.
    pub rate: Option<String>,
}

/// One connected queue: its rings' engine and event channel.
pub struct Queue<P> {
    pub engine: NetQueue<P>,
    pub port: u32,
    tx_gref: GrantRef,
    rx_gref: GrantRef,
}

/// One vif: its xenstore paths and the queues when connected.
pub struct Vif<P> {
    cfg: VifConfig,
    backend: String,
    frontend: String,
    state: XenbusState,
    /// Token of our watch on the frontend's `state`.
    token: String,
    queues: Vec<Queue<P>>,
    /// Counts connects and disconnects, so the data path notices either.
    generation: u64,
    broken: bool,
    removing: bool,
    removed: bool,
    /// Why the rings were dropped, to be told in the store.
    failed: Option<String>,
    /// The counters of queues gone, so `network-list` keeps totals.
    past: NetStats,
}

impl<P: SharedPage> Vif<P> {
    /// Writes the device's nodes into the store and starts watching the
    /// frontend's state.
    pub fn create(xs: &mut dyn StoreOps, cfg: VifConfig) -> XsResult<Vif<P>> {
        let (dom, dev) = (cfg.domid, cfg.devid);
        let paths = DevicePaths::new("vif", dom, dev);
        let mtu = cfg.mtu.to_string();
        let frontend_nodes: Vec<(&str, String)> = vec![
            ("backend", paths.backend.clone()),
            ("backend-id", "0".into()),
            ("handle", dev.to_string()),
            ("mac", cfg.mac.clone()),
            ("mtu", mtu.clone()),
            ("state", XenbusState::Initialising.to_string()),
        ];
        let mut backend_nodes: Vec<(&str, String)> = vec![
            ("frontend", paths.frontend.clone()),
            ("frontend-id", dom.to_string()),
            ("online", "1".into()),
            ("handle", dev.to_string()),
            ("mac", cfg.mac.clone()),
            ("type", "vif".into()),
            ("vifname", cfg.vifname.clone()),
            ("mtu", mtu),
            ("feature-sg", "1".into()),
            ("feature-gso-tcpv4", "1".into()),
            ("feature-gso-tcpv6", "1".into()),
            ("feature-ipv6-csum-offload", "1".into()),
            ("feature-rx-copy", "1".into()),
            ("feature-rx-flip", "0".into()),
            ("multi-queue-max-queues", cfg.max_queues.max(1).to_string()),
        ];
        for (k, v) in [
            ("bridge", &cfg.bridge),
            ("ip", &cfg.ip),
            ("script", &cfg.script),
            ("rate", &cfg.rate),
        ] {
            if let Some(v) = v {
                backend_nodes.push((k, v.clone()));
            }
        }
        backend_nodes.push(("state", XenbusState::InitWait.to_string()));
        xenbus::publish(xs, "vif", dom, &paths, &frontend_nodes, &backend_nodes)?;
        let DevicePaths { backend, frontend } = paths;

        let token = format!("vif-{dom}-{dev}");
        xs.watch(&format!("{frontend}/state"), &token)?;
        Ok(Vif {
            cfg,
            backend,
            frontend,
            state: XenbusState::InitWait,
            token,
            queues: Vec::new(),
            generation: 0,
            broken: false,
            removing: false,
            removed: false,
            failed: None,
            past: NetStats::default(),
        })
    }

    pub fn config(&self) -> &VifConfig {
        &self.cfg
    }

    pub fn backend_path(&self) -> &str {
        &self.backend
    }

    pub fn frontend_path(&self) -> &str {
        &self.frontend
    }

    /// The backend's xenbus state.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// Whether the rings are connected.
    pub fn connected(&self) -> bool {
        !self.queues.is_empty()
    }

    /// Changes on every connect and disconnect.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The connected queues.
    pub fn queues_mut(&mut self) -> &mut [Queue<P>] {
        &mut self.queues
    }

    /// The event channels of the connected queues, in queue order.
    pub fn ports(&self) -> Vec<u32> {
        self.queues.iter().map(|q| q.port).collect()
    }

    /// The first queue's tx and rx ring grant references, while connected
    /// (what `network-list` shows).
    pub fn ring_refs(&self) -> Option<(GrantRef, GrantRef)> {
        self.queues.first().map(|q| (q.tx_gref, q.rx_gref))
    }

    /// What the frontend can take, while connected.
    pub fn features(&self) -> Option<Features> {
        self.queues.first().map(|q| q.engine.features())
    }

    /// Counters summed over all queues, past connections included.
    pub fn stats(&self) -> NetStats {
        let mut s = self.past;
        for q in &self.queues {
            add_stats(&mut s, &q.engine.stats());
        }
        s
    }

    /// Handles the frontend's state changes reported by our watch. Returns
    /// whether anything happened.
    pub fn poll_store(
        &mut self,
        xs: &mut dyn StoreOps,
        link: &impl FrontendLink<Page = P>,
    ) -> bool {
        if let Some(why) = self.failed.take() {
            let _ = xs.write(&format!("{}/error", self.backend), why.as_bytes());
            self.switch(xs, XenbusState::Closing);
            return true;
        }
        if xs.take_watch_events(&self.token).is_empty() {
            return false;
        }
        let fe_state = self.frontend_state(xs);
        tracing::debug!(vif = %self.backend, ?fe_state, be_state = ?self.state, "frontend state");
        match fe_state {
            _ if self.removed => {}
            XenbusState::Initialising | XenbusState::Closed | XenbusState::Unknown
                if self.removing =>
            {
                self.disconnect(link);
                self.switch(xs, XenbusState::Closed);
                self.removed = true;
            }
            XenbusState::Initialising => {
                if self.state == XenbusState::Closed {
                    self.broken = false;
                    self.switch(xs, XenbusState::InitWait);
                }
            }
            XenbusState::Connected => {
                if self.queues.is_empty()
                    && !self.broken
                    && !self.removing
                    && self.state == XenbusState::InitWait
                {
                    match self.connect(xs, link) {
                        Ok(()) => self.switch(xs, XenbusState::Connected),
                        Err(e) => {
                            tracing::warn!("{}: cannot connect: {e}", self.backend);
                            let _ = xs.write(&format!("{}/error", self.backend), e.as_bytes());
                            self.broken = true;
                            self.switch(xs, XenbusState::Closing);
                        }
                    }
                }
            }
            XenbusState::Closing => {
                self.disconnect(link);
                self.switch(xs, XenbusState::Closing);
            }
            XenbusState::Closed | XenbusState::Unknown => {
                self.disconnect(link);
                if self.state != XenbusState::InitWait {
                    self.switch(xs, XenbusState::Closed);
                }
            }
            XenbusState::InitWait
            | XenbusState::Initialised
            | XenbusState::Reconfiguring
            | XenbusState::Reconfigured => {}
        }
        true
    }

    /// Starts a hot-unplug (`network-detach`): offline and Closing; once
    /// the frontend has closed (or never connected), [`Vif::removed`].
    pub fn request_remove(&mut self, xs: &mut dyn StoreOps) {
        if self.removing {
            return;
        }
        self.removing = true;
        let _ = xs.write(&format!("{}/online", self.backend), b"0");
        let fe_state = self.frontend_state(xs);
        if self.queues.is_empty()
            && matches!(
                fe_state,
                XenbusState::Initialising | XenbusState::Closed | XenbusState::Unknown
            )
        {
            self.switch(xs, XenbusState::Closed);
            self.removed = true;
        } else {
            self.switch(xs, XenbusState::Closing);
        }
    }

    /// Whether a hot-unplug has completed.
    pub fn removed(&self) -> bool {
        self.removed
    }

    /// Whether the device has news for the store no frontend change will
    /// prompt (a queue was stopped): call [`Vif::poll_store`].
    pub fn wants_store(&self) -> bool {
        self.failed.is_some()
    }

    /// The data path found a queue's rings unusable: disconnect all
    /// queues and tell the frontend (at the next [`Vif::poll_store`]).
    pub fn fail(&mut self, why: String, link: &impl FrontendLink<Page = P>) {
        tracing::warn!("{}: {why}; device disconnected", self.backend);
        self.broken = true;
        self.failed = Some(why);
        self.disconnect(link);
    }

    /// Ends the device: removes both directories and stops watching.
    pub fn remove(&mut self, xs: &mut dyn StoreOps, link: &impl FrontendLink<Page = P>) {
        self.disconnect(link);
        for p in [&self.frontend, &self.backend] {
            if let Err(e) = xs.rm(p) {
                tracing::warn!("{p}: cannot remove: {e}");
            }
        }
        if let Err(e) = xs.unwatch(&format!("{}/state", self.frontend), &self.token) {
            tracing::warn!("{}: cannot unwatch: {e}", self.backend);
        }
        tracing::info!("{}: removed", self.backend);
    }

    fn frontend_state(&self, xs: &mut dyn StoreOps) -> XenbusState {
        xs.read(&format!("{}/state", self.frontend))
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse::<XenbusState>().ok())
            .unwrap_or(XenbusState::Unknown)
    }

    fn switch(&mut self, xs: &mut dyn StoreOps, s: XenbusState) {
        if self.state == s {
            return;
        }
        self.state = s;
        if let Err(e) = xs.write(&format!("{}/state", self.backend), s.to_string().as_bytes()) {
            tracing::warn!("{}: cannot write state: {e}", self.backend);
        }
    }

    /// A frontend node as a number; `Ok(None)` if missing.
    fn read_u32(&self, xs: &mut dyn StoreOps, key: &str) -> Result<Option<u32>, String> {
        match xs.read(&format!("{}/{key}", self.frontend)) {
            Err(_) => Ok(None),
            Ok(v) => {
                let s = String::from_utf8_lossy(&v);
                s.trim_end_matches('\0')
                    .trim()
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| format!("frontend {key} {s:?} is not a number"))
            }
        }
    }

    fn flag(&self, xs: &mut dyn StoreOps, key: &str) -> Result<bool, String> {
        Ok(self.read_u32(xs, key)?.unwrap_or(0) != 0)
    }

    fn connect(
        &mut self,
        xs: &mut dyn StoreOps,
        link: &impl FrontendLink<Page = P>,
    ) -> Result<(), String> {
        if !self.flag(xs, "request-rx-copy")? {
            return Err("the frontend does not use rx-copy (request-rx-copy), the only receive mode offered".into());
        }
        if !self.flag(xs, "feature-rx-notify")? {
            return Err("the frontend does not offer feature-rx-notify".into());
        }
        let max = self.cfg.max_queues.max(1);
        let n = self.read_u32(xs, "multi-queue-num-queues")?.unwrap_or(1);
        if n == 0 || n > max {
            return Err(format!(
                "multi-queue-num-queues {n}: 1 to {max} queues are offered"
            ));
        }
        let features = Features {
            sg: self.flag(xs, "feature-sg")?,
            gso_tcpv4: self.flag(xs, "feature-gso-tcpv4")?,
            gso_tcpv6: self.flag(xs, "feature-gso-tcpv6")?,
            ip_csum: !self.flag(xs, "feature-no-csum-offload")?,
            ipv6_csum: self.flag(xs, "feature-ipv6-csum-offload")?,
        };
        let mut queues = Vec::new();
        for i in 0..n {
            let dir = if n == 1 {
                String::new()
            } else {
                format!("queue-{i}/")
            };
            match self.connect_queue(xs, link, &dir, i, features) {
                Ok(q) => queues.push(q),
                Err(e) => {
                    for q in queues {
                        release(link, q);
                    }
                    return Err(e);
                }
            }
        }
        tracing::info!(
            "{}: connected, {n} queue(s), ports {:?}, {features:?}",
            self.backend,
            queues.iter().map(|q| q.port).collect::<Vec<_>>()
        );
        self.queues = queues;
        self.generation += 1;
        Ok(())
    }

    fn connect_queue(
        &self,
        xs: &mut dyn StoreOps,
        link: &impl FrontendLink<Page = P>,
        dir: &str,
        i: u32,
        features: Features,
    ) -> Result<Queue<P>, String> {
        let need = |v: Option<u32>, key: &str| v.ok_or(format!("frontend wrote no {dir}{key}"));
        if self
            .read_u32(xs, &format!("{dir}event-channel-tx"))?
            .is_some()
        {
            return Err("split event channels are not offered".into());
        }
        let tx_gref = need(
            self.read_u32(xs, &format!("{dir}tx-ring-ref"))?,
            "tx-ring-ref",
        )?;
        let rx_gref = need(
            self.read_u32(xs, &format!("{dir}rx-ring-ref"))?,
            "rx-ring-ref",
        )?;
        let port = need(
            self.read_u32(xs, &format!("{dir}event-channel"))?,
            "event-channel",
        )?;
        let tx = link
            .map_ring(tx_gref)
            .map_err(|e| format!("{dir}tx-ring-ref {tx_gref}: {e}"))?;
        let rx = match link.map_ring(rx_gref) {
            Ok(p) => p,
            Err(e) => {
                link.unmap_ring(tx_gref);
                return Err(format!("{dir}rx-ring-ref {rx_gref}: {e}"));
            }
        };
        if let Err(e) = link.bind_event(port) {
            link.unmap_ring(tx_gref);
            link.unmap_ring(rx_gref);
            return Err(format!("{dir}event-channel {port}: {e}"));
        }
        let name = format!("vif{}.{} queue {i}", self.cfg.domid, self.cfg.devid);
        Ok(Queue {
            engine: NetQueue::new(tx, rx, features, name),
            port,
            tx_gref,
            rx_gref,
        })
    }

    fn disconnect(&mut self, link: &impl FrontendLink<Page = P>) {
        if self.queues.is_empty() {
            return;
        }
        for q in std::mem::take(&mut self.queues) {
            add_stats(&mut self.past, &q.engine.stats());
            release(link, q);
        }
        self.generation += 1;
        tracing::info!("{}: disconnected; {:?}", self.backend, self.past);
    }
}

fn release<P>(link: &impl FrontendLink<Page = P>, q: Queue<P>) {
    link.unbind_event(q.port);
    link.unmap_ring(q.tx_gref);
    link.unmap_ring(q.rx_gref);
}

fn add_stats(a: &mut NetStats, b: &NetStats) {
    a.tx_packets += b.tx_packets;
    a.tx_bytes += b.tx_bytes;
    a.tx_errors += b.tx_errors;
    a.tx_dropped += b.tx_dropped;
    a.tx_gso += b.tx_gso;
    a.rx_packets += b.rx_packets;
    a.rx_bytes += b.rx_bytes;
    a.rx_errors += b.rx_errors;
    a.rx_dropped += b.rx_dropped;
    a.rx_gso += b.rx_gso;
}
