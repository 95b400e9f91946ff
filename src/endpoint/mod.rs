//! Endpoints: where a side lives. The executor and the scan talk only to this trait.
//!
//! Every fallible method returns an [`EndpointError`] (a kind and its cause); the caller adds
//! the path and the side. Methods
//! that mutate take what the plan saw (`expect`/`replaces`) and refuse with
//! [`changed_since_scan`] when the target is no longer that: compare, then mutate.

pub mod credentials;
mod error;
pub mod ftp;
pub mod ftp_listing;
pub mod local;
pub mod spec;
pub mod testing;

use std::collections::HashMap;
use std::io::{self, Read};

pub use self::error::{changed_since_scan, changed_while_copying, EndpointError, ErrorKind, Result};
use crate::core::filter::Filter;
use crate::core::model::{Entry, Hash, Snapshot};

/// Something a scan could not take in, with its relative path (lossy, for display).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanIssue {
    pub path: String,
    pub message: String,
    pub kind: IssueKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueKind {
    /// A warning only: a name that no path of the pair can have (not UTF-8, or hostile).
    Skipped,
    /// A warning, and the path is left out of the run on both sides, state included: a symlink
    /// or special file, which must neither be overwritten nor look like "nothing there".
    Excluded,
    /// A problem (exit 1), and the path with everything below it is left out of the run: a
    /// folder that could not be listed must not look emptied.
    Unreadable,
    /// A problem (exit 1): a file whose name the pair cannot carry (not UTF-8), so it is not
    /// synced; cron must learn that from the exit code.
    Uncarried,
}

/// Marks the folders (by relative path) that hold something the scan left out.
pub fn mark_unsynced(found: &mut [(String, Entry)], holders: &std::collections::HashSet<String>) {
    if holders.is_empty() {
        return;
    }
    for (path, entry) in found.iter_mut() {
        if entry.kind == crate::core::model::Kind::Dir && holders.contains(path.as_str()) {
            entry.holds_unsynced = true;
        }
    }
}

pub struct Scan {
    pub snapshot: Snapshot,
    pub issues: Vec<ScanIssue>,
    /// Temp files left by a killed run of this pair, to remove once the pair is locked.
    pub leftovers: Vec<String>,
}

/// See [`Endpoint::folder_lister`]: a filter and a folder ("" for the root), its listing.
pub type FolderLister<'a> = dyn FnMut(&Filter, &str) -> Result<Scan> + 'a;

pub trait Endpoint: Send + Sync {
    /// The endpoint as a URL for messages and the pair id (never with a password).
    fn url(&self) -> String;

    /// Errors when the root is missing, not a folder, or unreadable; `NotConnected` when the
    /// endpoint cannot be reached or refused the login.
    fn check_root(&self) -> Result<()>;

    /// How many transfers (and folder listings) this endpoint takes at once (its connections);
    /// 1 unless it says more.
    fn parallelism(&self) -> usize {
        1
    }

    /// True when calls share a few connections, waiting for a free one (FTP): a reader keeps
    /// one, so a copy between two such sides holds its source's while it takes its target's.
    fn holds_connections(&self) -> bool {
        false
    }

    /// Lists the tree below the root, without following symlinks, skipping what `filter`
    /// ignores and this pair's temp files (reported as leftovers).
    fn scan(&self, filter: &Filter) -> Result<Scan>;

    /// Lists only part of the tree: the entries directly in each of `shallow` (folders, "" for
    /// the root), everything below each of `deep`, and the folders on the way to both. For a
    /// sync of the paths a watcher saw change. An endpoint that cannot do better lists all.
    fn scan_part(&self, filter: &Filter, _shallow: &[String], _deep: &[String]) -> Result<Scan> {
        self.scan(filter)
    }

    /// A lister of single folders for a streamed scan, which asks for them one after another
    /// (parents before what they hold): each call is `scan_part` of that one folder, shallow.
    /// It may keep what it opened for the next call (a local endpoint keeps the folders on the
    /// way to the last one open, as a recursive walk does); it serves one scan, on one thread.
    fn folder_lister(&self) -> Box<FolderLister<'_>> {
        Box::new(|filter, folder| self.scan_part(filter, &[folder.to_string()], &[]))
    }

    /// A live count of the entries a scan in progress has listed, for a progress line; `None`
    /// when the endpoint keeps none.
    fn scan_progress(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicUsize>> {
        None
    }

    /// The entry at `path` now, or `None`.
    fn stat(&self, path: &str) -> Result<Option<Entry>>;

    /// Opens the file for reading. The reader fails with [`changed_while_copying`] if the file
    /// turns out not to be `expect` (size or mtime) by the end of the read.
    fn open(&self, path: &str, expect: &Entry) -> Result<Box<dyn Read + Send + '_>> {
        self.open_from(path, expect, 0)
    }

    /// Writes `data` to `path` atomically (temp name in the same folder, then rename) with the
    /// mtime and permissions of `like` (the file copied); `replaces` is what the plan saw there.
    /// Returns the entry as the endpoint now reports it (its own mtime precision). No partial
    /// file is ever visible at `path`. With `resume_from` > 0, `data` starts at that offset and
    /// continues the partial temp file [`Endpoint::partial`] found.
    fn write(
        &self,
        path: &str,
        data: &mut dyn Read,
        like: &Entry,
        replaces: Option<&Entry>,
        resume_from: u64,
    ) -> Result<Entry>;

    /// Bytes of the file `like` that an interrupted earlier copy to `path` left in its temp
    /// file, to be continued rather than sent again (0: start afresh).
    fn partial(&self, _path: &str, _like: &Entry) -> u64 {
        0
    }

    /// Opens the file like [`Endpoint::open`], reading from byte `offset` on.
    fn open_from(&self, path: &str, expect: &Entry, offset: u64) -> Result<Box<dyn Read + Send + '_>>;

    /// True when this endpoint would rather create a new folder under a temp name, fill it and
    /// move it into place once ([`Endpoint::mkdir_staged`]) than rename every file into place:
    /// where each rename and check is a round trip to a server.
    fn stages_folders(&self) -> bool {
        false
    }

    /// Creates a folder under a temp name beside `path` (whose parent exists), invisible under
    /// any name a scan takes in; returns the temp folder's path. Its files are written with
    /// [`Endpoint::write_staged`], then it is moved into place by [`Endpoint::commit_staged`].
    fn mkdir_staged(&self, path: &str) -> Result<String> {
        Err(EndpointError::new(ErrorKind::Other, format!("{path}: this endpoint does not stage folders")))
    }

    /// Writes a file straight into a staged folder (`path` lies in it) with the mtime of `like`:
    /// no temp name, as the folder itself is one. A file cut short stays there, for
    /// [`Endpoint::commit_staged`] to remove.
    fn write_staged(&self, path: &str, _data: &mut dyn Read, _like: &Entry) -> Result<()> {
        Err(EndpointError::new(ErrorKind::Other, format!("{path}: this endpoint does not stage folders")))
    }

    /// Moves the staged folder `staged` into place at `path`, which must still be free, with
    /// the files in it that are among `written` (name and size). Returns those files as the
    /// endpoint now reports them, by name. Nothing else in it ever appears at `path`: when a
    /// write into it `failed` (its partial file may still be landing on the server) or it holds
    /// anything else, `path` is created and the written files are moved into it one by one.
    fn commit_staged(
        &self,
        staged: &str,
        path: &str,
        _written: &[(&str, u64)],
        _failed: bool,
    ) -> Result<HashMap<String, Entry>> {
        Err(EndpointError::new(ErrorKind::Other, format!("{staged} -> {path}: this endpoint does not stage folders")))
    }

    /// Appends `data` to the file at `path`, which must still be `expect` (size and mtime),
    /// then gives it the mtime of `like`; returns the entry now there. For a file that only
    /// grows at its end (Cyrus's `cyrus.cache`): what was there is never rewritten, and a cut
    /// append leaves a longer file that the next run, finding it not as recorded, copies
    /// whole. An endpoint that cannot append says so (`Refused`); the caller copies instead.
    fn append(&self, path: &str, _data: &mut dyn Read, _expect: &Entry, _like: &Entry) -> Result<Entry> {
        Err(EndpointError::new(ErrorKind::Refused, format!("{path}: this endpoint does not append")))
    }

    /// Creates a folder; its parent exists. Succeeds if a folder is already there.
    fn mkdir(&self, path: &str) -> Result<()>;

    /// Removes a file or an empty folder, if it is still `expect`.
    fn remove(&self, path: &str, expect: &Entry) -> Result<()>;

    /// Renames `from` (still `expect`) to the free name `to`; returns the entry at `to`.
    fn rename(&self, from: &str, to: &str, expect: &Entry) -> Result<Entry>;

    /// Reads up to `limit` bytes of a file given as an absolute path or relative to the root:
    /// the file check. `None` when it does not exist.
    fn read_check_file(&self, path: &str, limit: usize) -> Result<Option<Vec<u8>>>;

    /// Makes what was written so far durable, before the state records describing it are
    /// committed (so a power cut never leaves a record of a file whose bytes were lost).
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Removes a leftover temp file (or staged folder, with the files in it) found by
    /// [`Endpoint::scan`].
    fn remove_leftover(&self, path: &str) -> Result<()>;

    /// BLAKE3 of the file's content.
    fn hash(&self, path: &str, expect: &Entry) -> Result<Hash> {
        let mut hasher = blake3::Hasher::new();
        let mut reader = self.open(path, expect)?;
        io::copy(&mut reader, &mut hasher)?;
        Ok(*hasher.finalize().as_bytes())
    }
}

/// Whose temp file or folder a name is: `.pairsync-<tag>-<anything>.tmp`, the tag being a pair's
/// 8 hex digits. Every endpoint uses this one rule, for files and folders alike, so that a
/// name one side hides is hidden by the other too (else a two-way run would carry its
/// "deletion" over). `None` for any other name, which is synced like any other.
pub fn temp_owner(name: &str, own_tag: &str) -> Option<TempOwner> {
    let rest = name.strip_prefix(".pairsync-")?;
    let (tag, tail) = (rest.get(..8)?, &rest[8..]);
    if !tag.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        || !tail.starts_with('-')
        || !tail.ends_with(".tmp")
    {
        return None;
    }
    Some(if tag == own_tag { TempOwner::Own } else { TempOwner::Other })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempOwner {
    /// Left by a killed run of this pair: removed (or continued) by this one.
    Own,
    /// Another pair's, maybe being written right now: left alone, and its folder is never
    /// deleted.
    Other,
}

/// Files at least this large are copied under a temp name that a later run finds again, so that
/// an interrupted copy is continued instead of sent again.
pub const RESUMABLE: u64 = 1 << 20;

/// The temp name of a resumable copy of the file `like` to `rel`: the same for the same path,
/// size and mtime, so a copy is only ever continued with the content it began with.
pub fn resumable_temp(tag: &str, rel: &str, like: &Entry) -> String {
    let hash = blake3::hash(format!("{rel}\0{}\0{}", like.size, like.mtime).as_bytes()).to_hex();
    crate::core::model::sibling(rel, &format!(".pairsync-{tag}-r{}.tmp", &hash[..16]))
}

/// Compare, then mutate: what is at a path `now` must be what the plan saw there (`expect`,
/// `None`: nothing). A folder is still a folder whatever its mtime.
pub fn still_as_planned(now: Option<Entry>, expect: Option<&Entry>) -> Result<()> {
    match (now, expect) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(changed_since_scan("something appeared there")),
        (None, Some(_)) => Err(changed_since_scan("it disappeared")),
        (Some(now), Some(then)) if now.is_dir() && then.is_dir() => Ok(()),
        (Some(now), Some(then)) if now.same_metadata(then) => Ok(()),
        (Some(_), Some(_)) => Err(changed_since_scan("size or mtime differ")),
    }
}

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: blake3::Hasher::new() }
    }

    pub fn hash(&self) -> Hash {
        *self.hasher.finalize().as_bytes()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_only_the_generated_shape() {
        let own = "0123abcd";
        for (name, want) in [
            (".pairsync-0123abcd-42-7.tmp", Some(TempOwner::Own)),
            (".pairsync-0123abcd-r00ff00ff00ff00ff.tmp", Some(TempOwner::Own)),
            (".pairsync-deadbeef-1-0.tmp", Some(TempOwner::Other)),
            (".pairsync-notes.tmp", None),
            (".pairsync-0123abcd.tmp", None),
            (".pairsync-0123ABCD-1-0.tmp", None),
            (".pairsync-0123abcd-1-0.tmpx", None),
            ("pairsync-0123abcd-1-0.tmp", None),
            (".pairsync-0123ab", None),
        ] {
            assert_eq!(temp_owner(name, own), want, "{name}");
        }
    }
}
