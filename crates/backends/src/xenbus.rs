//! Publishing a PV device on xenbus: its frontend and backend directories.
//!
//! A guest watches its `device` directory and probes a device as soon as
//! the device's directory appears; Linux reads `backend` and `backend-id`
//! once, and a device probed before they exist stays unbound for good
//! ("unable to read other end ... missing or inaccessible"). A device
//! hot-plugged into a running guest must therefore appear whole, so the
//! nodes are written in one transaction, as libxl does.

use xenstore::{in_transaction, Batch, DomId, Perm, Perms, StoreOps, XsResult, DOM0};

/// Where a published device lives in the store.
pub struct DevicePaths {
    /// `/local/domain/0/backend/KIND/DOM/DEV`.
    pub backend: String,
    /// `/local/domain/DOM/device/KIND/DEV`.
    pub frontend: String,
}

impl DevicePaths {
    /// The paths of device `dev` of kind `kind` (`vbd`, `vif`) of `dom`.
    pub fn new(kind: &str, dom: DomId, dev: u32) -> DevicePaths {
        DevicePaths {
            backend: format!("/local/domain/0/backend/{kind}/{dom}/{dev}"),
            frontend: format!("/local/domain/{dom}/device/{kind}/{dev}"),
        }
    }
}

/// Writes the device's frontend nodes (the guest's, readable by dom0) and
/// backend nodes (dom0's, readable by the guest), as libxl sets their
/// permissions, all in one transaction. Node names are relative to the
/// device's directories.
pub fn publish(
    xs: &mut dyn StoreOps,
    kind: &str,
    dom: DomId,
    paths: &DevicePaths,
    frontend_nodes: &[(&str, String)],
    backend_nodes: &[(&str, String)],
) -> XsResult<()> {
    let be_perms = Perms::new(DOM0, Perm::None).with(dom, Perm::Read);
    let fe_perms = Perms::new(dom, Perm::None).with(DOM0, Perm::Read);
    let kind_dir = format!("/local/domain/{dom}/device/{kind}");
    in_transaction(xs, |xs, tx| {
        let kind_dir_exists = xs.read_tx(tx, &kind_dir).is_ok();
        // Sent together: one round trip to the daemon, not ~50.
        let mut b = Batch::in_transaction(tx);
        if !kind_dir_exists {
            b.mkdir(&kind_dir).set_perms(&kind_dir, &be_perms);
        }
        for (dir, nodes, perms) in [
            (&paths.frontend, frontend_nodes, &fe_perms),
            (&paths.backend, backend_nodes, &be_perms),
        ] {
            b.mkdir(dir).set_perms(dir, perms);
            for (k, v) in nodes {
                let path = format!("{dir}/{k}");
                b.write(&path, v.as_bytes()).set_perms(&path, perms);
            }
        }
        b.send(xs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore::{FiredWatch, MsgType, TxId, Xenstore};

    const GUEST: DomId = 5;

    /// Dom0's store access, after each request of which the guest looks at
    /// its device directory the way Linux's xenbus does on a watch event.
    struct GuestLooks {
        xs: Xenstore,
        paths: DevicePaths,
        /// Watch events after which the guest found the device incomplete.
        incomplete: usize,
        events: usize,
    }

    impl StoreOps for GuestLooks {
        fn request(&mut self, ty: MsgType, tx: TxId, payload: &[u8]) -> XsResult<Vec<u8>> {
            let r = StoreOps::request(&mut self.xs, ty, tx, payload);
            let mut guest = self.xs.acting_as(GUEST);
            let fired = guest.take_watch_events("dev").len();
            if fired > 0 {
                self.events += fired;
                let fe = &self.paths.frontend;
                let seen = guest.read_string(&format!("{fe}/backend"));
                let be_state = guest.read_string(&format!("{}/state", self.paths.backend));
                if guest.read(fe).is_ok() && (seen.is_none() || be_state.is_none()) {
                    self.incomplete += 1;
                }
            }
            r
        }

        fn take_watch_events(&mut self, token: &str) -> Vec<FiredWatch> {
            StoreOps::take_watch_events(&mut self.xs, token)
        }
    }

    #[test]
    fn a_guest_watching_its_devices_never_sees_half_a_device() {
        let mut xs = Xenstore::default();
        StoreOps::mkdir(&mut xs, "/local/domain/5").unwrap();
        StoreOps::set_perms(&mut xs, "/local/domain/5", &Perms::new(GUEST, Perm::None)).unwrap();
        let mut guest = xs.acting_as(GUEST);
        guest.watch("/local/domain/5/device", "dev").unwrap();
        guest.take_watch_events("dev");
        let paths = DevicePaths::new("vbd", GUEST, 51728);
        let fe = [("backend", paths.backend.clone()), ("state", "1".into())];
        let be = [("frontend", paths.frontend.clone()), ("state", "2".into())];
        let mut dom0 = GuestLooks {
            xs,
            paths: DevicePaths::new("vbd", GUEST, 51728),
            incomplete: 0,
            events: 0,
        };

        publish(&mut dom0, "vbd", GUEST, &paths, &fe, &be).unwrap();
        assert!(dom0.events > 0, "the guest's watch fired");
        assert_eq!(dom0.incomplete, 0, "the guest saw the device half-written");

        // Permissions as libxl sets them: the guest owns its frontend and
        // may only read the backend.
        let mut guest = dom0.xs.acting_as(GUEST);
        assert!(guest
            .write(&format!("{}/state", paths.backend), b"9")
            .is_err());
        guest
            .write(&format!("{}/state", paths.frontend), b"3")
            .unwrap();
        assert_eq!(
            StoreOps::get_perms(&mut dom0.xs, &paths.frontend).unwrap(),
            Perms::new(GUEST, Perm::None).with(DOM0, Perm::Read)
        );
    }
}
