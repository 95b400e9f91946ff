//! The pure data model: sides, entries, snapshots and state records.
//!
//! Nothing here does I/O. Paths are relative to a side's root, '/'-separated, never empty,
//! never starting or ending with '/', and never containing `.` or `..` components.

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
    /// Filled in only when the planner asked for it (see [`crate::core::plan::hash_requests`]).
    pub hash: Option<Hash>,
    /// Unix permission bits, where the endpoint has them; given to the copy, never compared.
    pub mode: Option<u32>,
    /// A folder that holds entries the pair does not sync (ignored, symlinks, temp files): it
    /// cannot be deleted, so it is kept.
    pub holds_unsynced: bool,
}

impl Entry {
    pub fn file(size: u64, mtime: Mtime) -> Entry {
        Entry { kind: Kind::File, size, mtime, hash: None, mode: None, holds_unsynced: false }
    }

    pub fn dir() -> Entry {
        Entry { kind: Kind::Dir, size: 0, mtime: 0, hash: None, mode: None, holds_unsynced: false }
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
pub type Snapshot = SortedMap<Entry>;

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

    /// The record with its two sides exchanged: for a pair run in the other order.
    pub fn swapped(self) -> StateRecord {
        StateRecord { source: self.destination, destination: self.source, ..self }
    }

    pub fn side(&self, side: Side) -> Observed {
        match side {
            Side::Source => self.source,
            Side::Destination => self.destination,
        }
    }
}

/// The state of a pair: relative path -> record.
pub type State = SortedMap<StateRecord>;

/// A map from relative path, kept as one sorted vector.
///
/// Snapshots and the state are built once, in bulk, then walked in order and only rarely
/// looked up: a sorted vector does that with a third of a tree's memory and no second copy
/// while it is built (a hundred thousand entries are sorted in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortedMap<V> {
    items: Vec<(String, V)>,
}

impl<V> Default for SortedMap<V> {
    fn default() -> Self {
        SortedMap { items: Vec::new() }
    }
}

impl<V> SortedMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.items.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.items[i].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.items[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; O(n), for the few changes made after a bulk build.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.items[i].1, value)),
            Err(i) => {
                self.items.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.find(key).ok().map(|i| self.items.remove(i).1)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&String, &V) -> bool) {
        self.items.retain(|(k, v)| keep(k, v));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.items.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.items.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.iter().map(|(_, v)| v)
    }

    /// Entries whose key is `from` or sorts after it.
    pub fn iter_from(&self, from: &str) -> impl Iterator<Item = (&String, &V)> {
        let start = self.items.partition_point(|(k, _)| k.as_str() < from);
        self.items[start..].iter().map(|(k, v)| (k, v))
    }
}

impl<V> SortedMap<V> {
    /// Builds from entries with unique keys (a scan, the state), sorting them in place with no
    /// scratch memory. Of duplicate keys, should there be any, an arbitrary one is kept.
    pub fn from_unique(mut items: Vec<(String, V)>) -> Self {
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        items.dedup_by(|a, b| a.0 == b.0);
        SortedMap { items }
    }
}

impl<V> FromIterator<(String, V)> for SortedMap<V> {
    /// Sorts in place; of duplicate keys the last one given wins, as with a map's inserts.
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut items: Vec<(String, V)> = iter.into_iter().collect();
        if !items.is_sorted_by(|a, b| a.0 < b.0) {
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let mut deduped: Vec<(String, V)> = Vec::with_capacity(items.len());
            for item in items {
                match deduped.last_mut() {
                    Some(last) if last.0 == item.0 => *last = item,
                    _ => deduped.push(item),
                }
            }
            items = deduped;
        }
        SortedMap { items }
    }
}

/// `a/b/c` -> (`a/b`, `c`); `c` -> (``, `c`): the folder of a relative path and its name.
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The path of `name` in the folder `dir` (the root is ""): the inverse of [`split`]. Built
/// without the formatting machinery, as a scan does it for every file it lists.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        return name.to_string();
    }
    let mut path = String::with_capacity(dir.len() + 1 + name.len());
    path.push_str(dir);
    path.push('/');
    path.push_str(name);
    path
}

/// The path of `name` in the same folder as `path`.
pub fn sibling(path: &str, name: &str) -> String {
    join(split(path).0, name)
}

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
pub fn inside<'a, V>(map: &'a SortedMap<V>, dir: &'a str) -> impl Iterator<Item = (&'a String, &'a V)> {
    let prefix = format!("{dir}/");
    map.iter_from(&prefix).take_while(move |(k, _)| k.starts_with(&prefix))
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
    fn sorted_map_sorts_and_the_last_duplicate_wins() {
        let mut m: SortedMap<u8> =
            [("b", 1), ("a", 2), ("b", 3)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(m.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), [("a", 2), ("b", 3)]);
        assert_eq!(m.insert("aa".into(), 4), None);
        assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "aa", "b"]);
        assert_eq!(m.remove("a"), Some(2));
        assert_eq!(m.get("b"), Some(&3));
        assert!(!m.contains_key("a"));
    }

    #[test]
    fn inside_is_strict_and_respects_component_boundaries() {
        assert!(is_inside("a/b", "a"));
        assert!(!is_inside("a", "a"));
        assert!(!is_inside("ab/c", "a"));
        let m: SortedMap<()> =
            ["b", "a/x", "a", "ab", "a/y/z", "a-b"].into_iter().map(|k| (k.to_string(), ())).collect();
        let keys: Vec<_> = inside(&m, "a").map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["a/x", "a/y/z"]);
    }
}
