//! Node permissions, Xen's rules.
//!
//! A node's permission list is written `<owner-entry> <acl-entry>*`, each
//! `n|r|w|b<domid>`. The first entry names the owner and gives the default
//! access for every domain not listed; later entries grant listed domains
//! exactly what they say. The owner and privileged callers (dom0) get full
//! access, including the right to change permissions. A domain acting for
//! another (SET_TARGET) is treated as that domain.

use crate::error::{XsError, XsResult};

/// A Xen domain id.
pub type DomId = u16;

/// The privileged domain (the toolstack; Unix-socket clients act as it).
pub const DOM0: DomId = 0;

/// What an entry grants: none, read, write or both (`n`, `r`, `w`, `b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    /// `n`: no access.
    None,
    /// `r`: read only.
    Read,
    /// `w`: write only.
    Write,
    /// `b`: read and write.
    Both,
}

impl Perm {
    fn letter(self) -> char {
        match self {
            Perm::None => 'n',
            Perm::Read => 'r',
            Perm::Write => 'w',
            Perm::Both => 'b',
        }
    }

    fn access(self) -> Access {
        match self {
            Perm::None => Access::NONE,
            Perm::Read => Access::READ,
            Perm::Write => Access::WRITE,
            Perm::Both => Access::READ.union(Access::WRITE),
        }
    }
}

/// A set of access rights: read, write, owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u8);

impl Access {
    /// Nothing.
    pub const NONE: Access = Access(0);
    /// May read the value, list children, read permissions, see watch events.
    pub const READ: Access = Access(1);
    /// May write, create children, remove.
    pub const WRITE: Access = Access(2);
    /// May change permissions.
    pub const OWNER: Access = Access(4);
    /// Everything.
    pub const ALL: Access = Access(7);

    /// Both sets.
    pub const fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    /// Whether every right in `need` is present.
    pub fn contains(self, need: Access) -> bool {
        self.0 & need.0 == need.0
    }

    /// Whether any right in `other` is present.
    pub fn intersects(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }
}

/// One permission entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PermEntry {
    /// The domain the entry is about.
    pub domid: DomId,
    /// What it grants.
    pub perm: Perm,
}

/// Who is asking: the caller's domid and, if set by SET_TARGET, the domain it
/// acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The caller's domain.
    pub domid: DomId,
    /// The domain it may act as.
    pub target: Option<DomId>,
}

impl Caller {
    /// A caller without a target.
    pub fn new(domid: DomId) -> Caller {
        Caller {
            domid,
            target: None,
        }
    }

    /// Whether the caller is privileged (dom0).
    pub fn privileged(&self) -> bool {
        self.domid == DOM0
    }

    fn is(&self, domid: DomId) -> bool {
        self.domid == domid || self.target == Some(domid)
    }
}

/// A node's permissions: owner, default access, per-domain entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Perms {
    /// Owner entry: the owning domain and the default for unlisted domains.
    pub owner: PermEntry,
    /// Further entries, first match wins.
    pub acl: Vec<PermEntry>,
}

impl Perms {
    /// Owned by `owner`, default `perm`, no further entries.
    pub fn new(owner: DomId, default: Perm) -> Perms {
        Perms {
            owner: PermEntry {
                domid: owner,
                perm: default,
            },
            acl: Vec::new(),
        }
    }

    /// Adds an entry (builder style).
    pub fn with(mut self, domid: DomId, perm: Perm) -> Perms {
        self.acl.push(PermEntry { domid, perm });
        self
    }

    /// The owning domain.
    pub fn owner(&self) -> DomId {
        self.owner.domid
    }

    /// Number of entries, owner included.
    pub fn len(&self) -> usize {
        1 + self.acl.len()
    }

    /// Never true: there is always an owner entry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// What `caller` may do on a node with these permissions.
    pub fn access_for(&self, caller: Caller) -> Access {
        if caller.privileged() || caller.is(self.owner.domid) {
            return Access::ALL;
        }
        match self.acl.iter().find(|e| caller.is(e.domid)) {
            Some(e) => e.perm.access(),
            None => self.owner.perm.access(),
        }
    }

    /// The wire strings, e.g. `["n0", "r5"]`.
    pub fn to_strings(&self) -> Vec<String> {
        std::iter::once(&self.owner)
            .chain(&self.acl)
            .map(|e| format!("{}{}", e.perm.letter(), e.domid))
            .collect()
    }

    /// Parses wire strings; at least one (the owner entry) is required.
    pub fn parse<'a>(strings: impl IntoIterator<Item = &'a [u8]>) -> XsResult<Perms> {
        let mut entries = strings.into_iter().map(parse_entry);
        let owner = entries.next().ok_or(XsError::Inval)??;
        let acl = entries.collect::<XsResult<Vec<_>>>()?;
        Ok(Perms { owner, acl })
    }
}

fn parse_entry(s: &[u8]) -> XsResult<PermEntry> {
    let (&letter, digits) = s.split_first().ok_or(XsError::Inval)?;
    let perm = match letter {
        b'n' => Perm::None,
        b'r' => Perm::Read,
        b'w' => Perm::Write,
        b'b' => Perm::Both,
        _ => return Err(XsError::Inval),
    };
    let domid = crate::path::parse_domid(digits)?;
    Ok(PermEntry { domid, perm })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_rules() {
        let p = Perms::new(5, Perm::None)
            .with(7, Perm::Read)
            .with(8, Perm::Both);
        assert_eq!(p.access_for(Caller::new(0)), Access::ALL);
        assert_eq!(p.access_for(Caller::new(5)), Access::ALL);
        assert_eq!(p.access_for(Caller::new(6)), Access::NONE);
        assert_eq!(p.access_for(Caller::new(7)), Access::READ);
        assert!(p
            .access_for(Caller::new(8))
            .contains(Access::READ.union(Access::WRITE)));
        assert!(!p.access_for(Caller::new(8)).contains(Access::OWNER));
        let stub = Caller {
            domid: 9,
            target: Some(5),
        };
        assert_eq!(p.access_for(stub), Access::ALL);
    }

    #[test]
    fn strings_round_trip() {
        let p = Perms::new(5, Perm::Read).with(7, Perm::Write);
        let s = p.to_strings();
        assert_eq!(s, ["r5", "w7"]);
        let parsed = Perms::parse(s.iter().map(|s| s.as_bytes())).unwrap();
        assert_eq!(parsed, p);
        assert_eq!(Perms::parse([&b"x5"[..]]), Err(XsError::Inval));
        assert_eq!(Perms::parse([&b"r"[..]]), Err(XsError::Inval));
        assert_eq!(Perms::parse(std::iter::empty()), Err(XsError::Inval));
    }
}
