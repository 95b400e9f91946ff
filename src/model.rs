//! The pure data model: sides, entries, snapshots and state records.
//!
//! Nothing here does I/O. Paths are relative to a side's root, '/'-separated, never empty,
//! never starting or ending with '/', and never containing `.` or `..` components.

use std::collections::BTreeMap;
use std::fmt;

/// One of the two ends of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Source,
    Destination,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Source => Side::Destination,
            Side::Destination => Side::Source,
        }
    }

    pub const BOTH: [Side; 2] = [Side::Source, Side::Destination];

    /// 0 for the source, 1 for the destination: for arrays holding one thing per side.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
}

/// A BLAKE3 content hash.
pub type Hash = [u8; 32];

/// Modification time in nanoseconds since the Unix epoch.
pub type Mtime = i64;

/// What a scan saw at one path of one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Bytes; 0 for folders.
    pub size: u64,
    /// 0 for folders: a folder's mtime is not synced and never compared.
    pub mtime: Mtime,
    /// Filled in only when the planner asked for it (see [`crate::plan::hash_requests`]).
    pub hash: Option<Hash>,
    /// Unix permission bits, where the endpoint has them; given to the copy, never compared.
    pub mode: Option<u32>,
}

impl Entry {
    pub fn file(size: u64, mtime: Mtime) -> Entry {
        Entry { kind: Kind::File, size, mtime, hash: None, mode: None }
    }

    pub fn dir() -> Entry {
        Entry { kind: Kind::Dir, size: 0, mtime: 0, hash: None, mode: None }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    pub fn observed(&self) -> Observed {
        Observed { size: self.size, mtime: self.mtime }
    }

    /// Same kind, size and mtime: what "still what the plan saw" means before a mutation.
    pub fn same_metadata(&self, other: &Entry) -> bool {
        self.kind == other.kind && self.size == other.size && self.mtime == other.mtime
    }
}

/// What a scan of one side found: relative path -> entry, sorted so that a folder comes right
/// before everything inside it.
pub type Snapshot = BTreeMap<String, Entry>;

/// One side's (size, mtime) as observed right after the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    pub size: u64,
    pub mtime: Mtime,
}

/// For one path, what both sides looked like right after it was last synced.
///
/// Each side is compared only with its own previous observation, so clock skew between the
/// sides, coarse timestamps and servers that cannot set mtimes never look like changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateRecord {
    pub kind: Kind,
    pub source: Observed,
    pub destination: Observed,
    /// Content hash, when one was computed (always after a copy; not after a first-run match by
    /// size and mtime, which would mean reading every file).
    pub hash: Option<Hash>,
}

impl StateRecord {
    pub fn dir() -> StateRecord {
        StateRecord { kind: Kind::Dir, source: Observed::default(), destination: Observed::default(), hash: None }
    }

    /// The record for a path whose two sides now hold `source` and `destination`.
    pub fn synced(source: &Entry, destination: &Entry, hash: Option<Hash>) -> StateRecord {
        StateRecord {
            kind: source.kind,
            source: source.observed(),
            destination: destination.observed(),
            hash: hash.or(source.hash).or(destination.hash),
        }
    }

    pub fn side(&self, side: Side) -> Observed {
        match side {
            Side::Source => self.source,
            Side::Destination => self.destination,
        }
    }
}

/// The state of a pair: relative path -> record.
pub type State = BTreeMap<String, StateRecord>;

/// The parent folder of a relative path, if it is not at the root.
pub fn parent(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

/// Every ancestor folder of a relative path, nearest first.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(parent(path), |p| parent(p))
}

/// True when `path` lies strictly inside the folder `dir`.
pub fn is_inside(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// Entries of `map` strictly inside the folder `dir`: every key with the prefix `dir/`, which
/// is one contiguous range of a sorted map.
pub fn inside<'a, V>(map: &'a BTreeMap<String, V>, dir: &'a str) -> impl Iterator<Item = (&'a String, &'a V)> {
    let prefix = format!("{dir}/");
    map.range(prefix.clone()..).take_while(move |(k, _)| k.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_nearest_first() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), vec!["a/b", "a"]);
        assert_eq!(ancestors("a").count(), 0);
    }

    #[test]
    fn inside_is_strict_and_respects_component_boundaries() {
        assert!(is_inside("a/b", "a"));
        assert!(!is_inside("a", "a"));
        assert!(!is_inside("ab/c", "a"));
        let mut m = BTreeMap::new();
        for k in ["a", "a-b", "a/x", "a/y/z", "ab", "b"] {
            m.insert(k.to_string(), ());
        }
        let keys: Vec<_> = inside(&m, "a").map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["a/x", "a/y/z"]);
    }
}
