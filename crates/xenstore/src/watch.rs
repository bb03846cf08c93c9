//! Watches: a connection's (path, token) pairs and which changes fire them.
//!
//! A watch fires once when set up, then for every change at or below its
//! path (special `@...` watches fire only on their special event). Changes
//! flagged `exact` — nodes removed below the root of an RM — fire only
//! watches on exactly that path. A watch given as a relative path reports
//! event paths relative to the same home.

use crate::error::{XsError, XsResult};
use crate::path::is_child;
use crate::store::Change;

/// One watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Absolute (or special) watched path.
    pub path: String,
    /// Opaque client token, echoed in events.
    pub token: String,
    /// Bytes to strip from event paths (`/local/domain/<id>/`) for a watch
    /// registered with a relative path; 0 otherwise.
    pub prefix_len: usize,
}

impl Watch {
    /// The path as the client spelled it (relative watches stay relative).
    pub fn client_path(&self) -> &str {
        &self.path[self.prefix_len..]
    }

    /// The event path for a change at `path`, if this watch fires for it.
    pub fn fires_for<'c>(&self, change: &'c Change) -> Option<&'c str> {
        let hit = if change.exact {
            change.path == self.path
        } else {
            is_child(&change.path, &self.path)
        };
        hit.then(|| change.path.get(self.prefix_len..).unwrap_or(&change.path))
    }
}

/// A pending WATCH_EVENT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Path as reported to the client.
    pub path: String,
    /// The watch's token.
    pub token: String,
}

/// The watches of one connection.
#[derive(Debug, Default)]
pub struct WatchList {
    watches: Vec<Watch>,
}

impl WatchList {
    /// Adds a watch; EEXIST if the same path and token are already watched.
    pub fn add(&mut self, watch: Watch) -> XsResult<&Watch> {
        if self
            .watches
            .iter()
            .any(|w| w.path == watch.path && w.token == watch.token)
        {
            return Err(XsError::Exist);
        }
        self.watches.push(watch);
        Ok(self.watches.last().expect("just pushed"))
    }

    /// Removes a watch; ENOENT if there is none.
    pub fn remove(&mut self, path: &str, token: &str) -> XsResult<()> {
        let i = self
            .watches
            .iter()
            .position(|w| w.path == path && w.token == token)
            .ok_or(XsError::NoEnt)?;
        self.watches.remove(i);
        Ok(())
    }

    /// Drops every watch.
    pub fn clear(&mut self) {
        self.watches.clear();
    }

    /// Number of watches.
    pub fn len(&self) -> usize {
        self.watches.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// The watches.
    pub fn iter(&self) -> impl Iterator<Item = &Watch> {
        self.watches.iter()
    }

    /// Events this change causes on this connection (permission filtering
    /// is the caller's business).
    pub fn events_for<'a>(&'a self, change: &'a Change) -> impl Iterator<Item = WatchEvent> + 'a {
        self.watches.iter().filter_map(move |w| {
            w.fires_for(change).map(|p| WatchEvent {
                path: p.to_string(),
                token: w.token.clone(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, exact: bool) -> Change {
        Change {
            path: path.into(),
            exact,
            perms: Vec::new(),
        }
    }

    #[test]
    fn matching() {
        let w = Watch {
            path: "/local/domain/3/device".into(),
            token: "t".into(),
            prefix_len: "/local/domain/3/".len(),
        };
        assert_eq!(w.client_path(), "device");
        assert_eq!(
            w.fires_for(&change("/local/domain/3/device/vbd/1", false)),
            Some("device/vbd/1")
        );
        assert_eq!(w.fires_for(&change("/local/domain/3/devices", false)), None);
        assert_eq!(w.fires_for(&change("/local/domain/3", false)), None);
        assert_eq!(w.fires_for(&change("/local/domain/3/device/x", true)), None);
        assert_eq!(
            w.fires_for(&change("/local/domain/3/device", true)),
            Some("device")
        );
        let root = Watch {
            path: "/".into(),
            token: "r".into(),
            prefix_len: 0,
        };
        assert!(root.fires_for(&change("/a", false)).is_some());
        assert!(root.fires_for(&change("@releaseDomain", false)).is_some());
        let special = Watch {
            path: "@releaseDomain".into(),
            token: "s".into(),
            prefix_len: 0,
        };
        assert!(special
            .fires_for(&change("@releaseDomain", false))
            .is_some());
        assert!(special
            .fires_for(&change("@introduceDomain", false))
            .is_none());
    }

    #[test]
    fn add_remove() {
        let mut l = WatchList::default();
        let w = Watch {
            path: "/a".into(),
            token: "t".into(),
            prefix_len: 0,
        };
        l.add(w.clone()).unwrap();
        assert_eq!(l.add(w).unwrap_err(), XsError::Exist);
        assert_eq!(l.remove("/a", "u"), Err(XsError::NoEnt));
        l.remove("/a", "t").unwrap();
        assert!(l.is_empty());
    }
}
