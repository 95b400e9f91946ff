//! The state of a pair: one sled database per pair, holding one [`StateRecord`] per path, and
//! the lock that keeps two runs of a pair apart.
//!
//! The records of one folder's entries are stored together, as one sled value keyed by the
//! folder's path (the root is the empty key). A tree of 100,000 files in 1,000 folders is then
//! 1,000 values: loading it is a short walk, and the database is a fraction of the size it
//! would be with a value per path.
//!
//! Records are written only after the action they describe succeeded, in bounded batches, so a
//! run killed at any moment leaves records that are true, merely incomplete; the next run
//! converges. A database that cannot be opened is moved aside and the pair starts afresh, which
//! is a first run: a merge that deletes nothing.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};
use crate::core::model::{join, split, Kind, Observed, State, StateRecord};

/// Records per sled batch: big batches cost memory (DESIGN.md "State"), tiny ones speed.
pub const BATCH: usize = 1000;
const CACHE_BYTES: u64 = 4 * 1024 * 1024;
const FORMAT: u8 = 2;

/// The pair's id: derived from both canonical URLs, so a pair whose roots change starts afresh.
pub fn pair_id(source_url: &str, destination_url: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(source_url.as_bytes());
    hasher.update(&[0]);
    hasher.update(destination_url.as_bytes());
    hasher.finalize().to_hex()[..16].to_string()
}

/// Held for the whole run; released by the OS if the process dies.
pub struct PairLock {
    /// `None`: a dry run of a pair that never had a run here (see [`PairLock::acquire_to_read`]).
    _file: Option<File>,
}

impl PairLock {
    /// Takes the pair's lock at once, or fails with [`Error::Locked`].
    pub fn acquire(state_dir: &Path, id: &str) -> Result<PairLock> {
        let pairs = state_dir.join("pairs");
        fs::create_dir_all(&pairs).map_err(|e| state_error(&pairs, e))?;
        let path = pairs.join(format!("{id}.lock"));
        let file =
            File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| state_error(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(PairLock { _file: Some(file) }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(path)),
            Err(fs::TryLockError::Error(e)) => Err(state_error(&path, e)),
        }
    }

    /// The lock for a dry run, which leaves the state folder as it found it (creates nothing
    /// in it, not even the folder): taken shared, so dry runs do not keep each other out but a
    /// real run and a dry run do, and only when the pair's lock file is there. Without one no
    /// run of the pair ever began with this state folder: there is no state to read while a
    /// real run writes it, so the dry run goes on unlocked. Fails with [`Error::Locked`] while
    /// a real run holds the lock.
    pub fn acquire_to_read(state_dir: &Path, id: &str) -> Result<PairLock> {
        let path = state_dir.join("pairs").join(format!("{id}.lock"));
        // Read-only: flock needs no more, and nothing about the file changes.
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PairLock { _file: None }),
            Err(e) => return Err(state_error(&path, e)),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(PairLock { _file: Some(file) }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(path)),
            Err(fs::TryLockError::Error(e)) => Err(state_error(&path, e)),
        }
    }
}

pub struct StateDb {
    db: sled::Db,
    path: PathBuf,
    /// The records were written with the sides the other way round (a two-way pair first run
    /// as `sync B A`, now run as `sync A B`): exchanged as they are read and written.
    swapped: bool,
    /// A dry run's copy of the database, which `db` is (removed once `db` is closed: fields
    /// drop in order).
    _scratch: Option<Scratch>,
}

/// How the database was found when it was opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    Existing,
    New,
    /// It could not be read; it was moved to the given path (not in a dry run) and a fresh one
    /// started.
    Reset {
        moved_to: Option<PathBuf>,
        why: String,
    },
}

impl StateDb {
    /// Opens (or creates) the database of pair `id`. Call with the pair's lock held.
    ///
    /// A dry run leaves the state folder byte for byte as it was (see [`StateDb::open_copy`]).
    pub fn open(state_dir: &Path, id: &str, urls: [&str; 2], dry_run: bool) -> Result<(StateDb, Opened)> {
        let path = state_dir.join("pairs").join(id);
        if dry_run {
            return StateDb::open_copy(path, id, urls);
        }
        let existed = path.exists();
        let (db, opened) = match open_sled(&path)? {
            Ok(db) => (db, if existed { Opened::Existing } else { Opened::New }),
            Err(why) => {
                let moved_to = path.with_extension(format!("corrupt-{}", chrono::Local::now().format("%Y%m%d-%H%M%S")));
                fs::rename(&path, &moved_to).map_err(|e| state_error(&path, e))?;
                let db = open_sled(&path)?.map_err(|e| Error::State { path: path.clone(), message: e })?;
                (db, Opened::Reset { moved_to: Some(moved_to), why })
            }
        };
        let swapped = written_swapped(&db, &path, urls)?;
        let meta = db.open_tree("meta").map_err(|e| sled_error(&path, e))?;
        // The sides as the records hold them: never rewritten the other way round.
        let sides = if swapped { [urls[1], urls[0]] } else { urls };
        for (key, value) in
            [("format", &[FORMAT][..]), ("source", sides[0].as_bytes()), ("destination", sides[1].as_bytes())]
        {
            // Written only when new, so that a no-op run writes nothing.
            if meta.get(key).map_err(|e| sled_error(&path, e))?.as_deref() != Some(value) {
                meta.insert(key, value).map_err(|e| sled_error(&path, e))?;
            }
        }
        Ok((StateDb { db, path, swapped, _scratch: None }, opened))
    }

    /// A dry run's database: a private copy of the pair's, in the temp folder. sled has no
    /// read-only mode: it writes to the files of any database it opens, even only to read it
    /// (it recovers its log, and rewrites it). A missing database is an empty one in memory, an
    /// unreadable one too (a real run would move it aside); nothing in the state folder is
    /// created, moved or written.
    fn open_copy(path: PathBuf, id: &str, urls: [&str; 2]) -> Result<(StateDb, Opened)> {
        let in_memory = |path: PathBuf, opened| -> Result<(StateDb, Opened)> {
            let db = sled::Config::new().temporary(true).open().map_err(|e| sled_error(&path, e))?;
            Ok((StateDb { db, path, swapped: false, _scratch: None }, opened))
        };
        if !path.exists() {
            return in_memory(path, Opened::New);
        }
        let scratch = Scratch::copy_of(&path, id)?;
        match open_sled(&scratch.0)? {
            Ok(db) => {
                let swapped = written_swapped(&db, &path, urls)?;
                Ok((StateDb { db, path, swapped, _scratch: Some(scratch) }, Opened::Existing))
            }
            Err(why) => in_memory(path, Opened::Reset { moved_to: None, why }),
        }
    }

    /// Every record. A folder whose records do not decode is dropped (its paths are then
    /// treated as never synced: compared directly, never deleted); returns how many were.
    pub fn load(&self) -> Result<(State, usize)> {
        let mut records = Vec::new();
        let mut bad = 0;
        for item in self.db.iter() {
            let (key, value) = item.map_err(|e| sled_error(&self.path, e))?;
            let Ok(folder) = std::str::from_utf8(&key) else {
                bad += 1;
                continue;
            };
            let before = records.len();
            if decode_folder(folder, &value, &mut records).is_none() {
                records.truncate(before);
                bad += 1;
            }
        }
        Ok((State::from_unique(self.oriented(records)), bad))
    }

    /// Records as this run sees its sides.
    fn oriented(&self, mut records: Vec<(String, StateRecord)>) -> Vec<(String, StateRecord)> {
        if self.swapped {
            for (_, record) in &mut records {
                *record = record.swapped();
            }
        }
        records
    }

    /// The records of the entries directly in each of `folders` (the root is ""): a few point
    /// lookups, so a part of a large store (a mail replica's mailboxes) is read without the rest.
    /// Returns them with how many folders did not decode (their paths count as never synced).
    pub fn load_folders<'f>(&self, folders: impl IntoIterator<Item = &'f str>) -> Result<(State, usize)> {
        let mut records = Vec::new();
        let mut bad = 0;
        let mut seen = std::collections::HashSet::new();
        for folder in folders {
            if !seen.insert(folder) {
                continue;
            }
            let Some(value) = self.db.get(folder.as_bytes()).map_err(|e| sled_error(&self.path, e))? else { continue };
            let before = records.len();
            if decode_folder(folder, &value, &mut records).is_none() {
                records.truncate(before);
                bad += 1;
            }
        }
        Ok((State::from_unique(self.oriented(records)), bad))
    }

    /// Moves the records of the folder `from`, and of everything below it, to `to` (a folder
    /// renamed on both sides: a renamed mailbox), in one atomic batch. `record` is the folder's
    /// own record, put at `to` in place of the one at `from`.
    pub fn move_folder(&self, from: &str, to: &str, record: &StateRecord) -> Result<()> {
        let mut batch = sled::Batch::default();
        let below = format!("{from}/");
        for key in [from.to_string()].into_iter().chain(self.keys_below(&below)?) {
            let Some(value) = self.db.get(key.as_bytes()).map_err(|e| sled_error(&self.path, e))? else { continue };
            batch.remove(key.as_bytes());
            batch.insert(format!("{to}{}", &key[from.len()..]).as_bytes(), value);
        }
        // The folder's own record lives in its parent's value: out of one, into the other.
        let mut parents: BTreeMap<String, BTreeMap<String, StateRecord>> = BTreeMap::new();
        for (path, put) in [(from, false), (to, true)] {
            let (folder, name) = split(path);
            if !parents.contains_key(folder) {
                let mut records = Vec::new();
                if let Some(value) = self.db.get(folder.as_bytes()).map_err(|e| sled_error(&self.path, e))? {
                    if decode_folder("", &value, &mut records).is_none() {
                        records.clear();
                    }
                }
                parents.insert(folder.to_string(), records.into_iter().collect());
            }
            let records = parents.get_mut(folder).expect("just inserted");
            if put {
                records.insert(name.to_string(), *record);
            } else {
                records.remove(name);
            }
        }
        for (folder, records) in parents {
            if records.is_empty() {
                batch.remove(folder.as_bytes());
            } else {
                batch.insert(folder.as_bytes(), encode_folder(&records));
            }
        }
        self.db.apply_batch(batch).map_err(|e| sled_error(&self.path, e))
    }

    /// Every key (folder) that starts with `prefix`.
    fn keys_below(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for item in self.db.scan_prefix(prefix.as_bytes()) {
            let (key, _) = item.map_err(|e| sled_error(&self.path, e))?;
            if let Ok(key) = std::str::from_utf8(&key) {
                keys.push(key.to_string());
            }
        }
        Ok(keys)
    }

    pub fn writer(&self) -> StateWriter<'_> {
        StateWriter { db: self, folders: HashMap::new(), pending: 0 }
    }

    /// Drops the records of these paths at once.
    pub fn forget_all(&self, paths: &[String]) -> Result<()> {
        let mut writer = self.writer();
        for path in paths {
            writer.forget(path)?;
        }
        writer.commit()
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| sled_error(&self.path, e))
    }

    /// Notes beside the records: small named strings a replicator keeps between runs (which
    /// folder a Cyrus mailbox was in, and its uniqueid), in their own sled tree.
    fn notes_tree(&self) -> Result<sled::Tree> {
        self.db.open_tree("notes").map_err(|e| sled_error(&self.path, e))
    }

    pub fn note(&self, key: &str) -> Result<Option<String>> {
        let value = self.notes_tree()?.get(key.as_bytes()).map_err(|e| sled_error(&self.path, e))?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Sets (`Some`) or removes (`None`) a note; written only when it changes.
    pub fn set_note(&self, key: &str, value: Option<&str>) -> Result<()> {
        let tree = self.notes_tree()?;
        let result = match value {
            Some(value) if self.note(key)?.as_deref() != Some(value) => tree.insert(key.as_bytes(), value.as_bytes()),
            Some(_) => return Ok(()),
            None => tree.remove(key.as_bytes()),
        };
        result.map(|_| ()).map_err(|e| sled_error(&self.path, e))
    }

    /// Every note whose key starts with `prefix`, in key order.
    pub fn notes(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        for item in self.notes_tree()?.scan_prefix(prefix.as_bytes()) {
            let (key, value) = item.map_err(|e| sled_error(&self.path, e))?;
            found.push((String::from_utf8_lossy(&key).into_owned(), String::from_utf8_lossy(&value).into_owned()));
        }
        Ok(found)
    }
}

/// Collects record changes for batches of [`BATCH`]; the caller commits each (one atomic sled
/// write of the folders it touched) once the data it describes is durable.
pub struct StateWriter<'a> {
    db: &'a StateDb,
    /// Folders changed since the last commit, with all their records (read on first touch).
    folders: HashMap<String, BTreeMap<String, StateRecord>>,
    pending: usize,
}

impl StateWriter<'_> {
    pub fn put(&mut self, path: &str, record: &StateRecord) -> Result<()> {
        let (folder, name) = split(path);
        let record = if self.db.swapped { record.swapped() } else { *record };
        self.folder(folder)?.insert(name.to_string(), record);
        self.bump()
    }

    pub fn forget(&mut self, path: &str) -> Result<()> {
        let (folder, name) = split(path);
        self.folder(folder)?.remove(name);
        self.bump()
    }

    fn folder(&mut self, folder: &str) -> Result<&mut BTreeMap<String, StateRecord>> {
        if !self.folders.contains_key(folder) {
            let stored = self.db.db.get(folder.as_bytes()).map_err(|e| sled_error(&self.db.path, e))?;
            let mut records = Vec::new();
            if let Some(value) = stored {
                // A folder that does not decode starts empty, as load() treated it.
                if decode_folder("", &value, &mut records).is_none() {
                    records.clear();
                }
            }
            self.folders.insert(folder.to_string(), records.into_iter().collect());
        }
        Ok(self.folders.get_mut(folder).expect("just inserted"))
    }

    fn bump(&mut self) -> Result<()> {
        self.pending += 1;
        Ok(())
    }

    /// True when a batch is full: the caller makes the data durable, then commits.
    pub fn full(&self) -> bool {
        self.pending >= BATCH
    }

    pub fn commit(&mut self) -> Result<()> {
        if self.folders.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (folder, records) in self.folders.drain() {
            if records.is_empty() {
                batch.remove(folder.as_bytes());
            } else {
                batch.insert(folder.as_bytes(), encode_folder(&records));
            }
        }
        self.db.db.apply_batch(batch).map_err(|e| sled_error(&self.db.path, e))?;
        self.pending = 0;
        Ok(())
    }
}

/// True when the database's records were written with `urls` the other way round (its meta
/// names them so): a two-way pair, which is the same pair in either order.
fn written_swapped(db: &sled::Db, path: &Path, urls: [&str; 2]) -> Result<bool> {
    let meta = db.open_tree("meta").map_err(|e| sled_error(path, e))?;
    let get = |key: &str| meta.get(key).map_err(|e| sled_error(path, e));
    let (source, destination) = (get("source")?, get("destination")?);
    Ok(urls[0] != urls[1]
        && source.as_deref() == Some(urls[1].as_bytes())
        && destination.as_deref() == Some(urls[0].as_bytes()))
}

/// How long a database held by sled's own lock is waited for before the run gives up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A private folder in the temp folder holding a copy of a pair's database; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    /// Copies the database at `path`. With the pair's lock held no other run writes it; sled's
    /// own lock (an exclusive `flock` on its `db` file, held while it is open) is taken shared
    /// for the copy, so that the handle of an earlier run in this process (the daemon), still
    /// closing, is waited for.
    fn copy_of(path: &Path, id: &str) -> Result<Scratch> {
        static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pairsync-dry-run-{id}-{}-{n}", std::process::id()));
        // Private (the records name the pair's files), and new: never one planted there.
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
            .create(&dir)
            .map_err(|e| state_error(&dir, e))?;
        let scratch = Scratch(dir);
        let held = match File::open(path.join("db")) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(state_error(path, e)),
        };
        if let Some(file) = &held {
            let started = std::time::Instant::now();
            loop {
                match file.try_lock_shared() {
                    Ok(()) => break,
                    Err(fs::TryLockError::WouldBlock) if started.elapsed() <= LOCK_WAIT => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked(path.to_path_buf())),
                    Err(fs::TryLockError::Error(e)) => return Err(state_error(path, e)),
                }
            }
        }
        copy_folder(path, &scratch.0).map_err(|e| state_error(path, format!("cannot copy it for the dry run: {e}")))?;
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copies the files of the folder `from`, and of the folders in it, into the folder `to`.
fn copy_folder(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (from, to) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            fs::create_dir(&to)?;
            copy_folder(&from, &to)?;
        } else {
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Opens the database. `Ok(Err(why))`: it is unreadable (corrupt, or in a format this build
/// cannot read) and may be moved aside. `Err`: it could not be opened for another reason
/// (permissions, a lock that did not go away): a good database is never taken for a bad one.
fn open_sled(path: &Path) -> Result<std::result::Result<sled::Db, String>> {
    let config = sled::Config::new().path(path).cache_capacity(CACHE_BYTES).flush_every_ms(Some(1000));
    let started = std::time::Instant::now();
    let db = loop {
        // sled reports most corruption as an error, but may panic on a mangled file.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())) {
            Ok(Ok(db)) => break db,
            // With the pair lock held, sled's lock can only be held by the handle of an earlier
            // run in this process (the daemon) whose background threads are still closing it.
            Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() > LOCK_WAIT {
                    return Err(Error::Locked(path.to_path_buf()));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(Err(sled::Error::Io(e))) => return Err(state_error(path, e)),
            Ok(Err(e)) => return Ok(Err(e.to_string())),
            Err(_) => return Ok(Err("the database panicked while opening".into())),
        }
    };
    let format = db.open_tree("meta").and_then(|meta| meta.get("format")).map_err(|e| sled_error(path, e))?;
    Ok(match format {
        Some(f) if f != [FORMAT] => Err(format!("record format {f:?} is not {FORMAT}")),
        _ => Ok(db),
    })
}

fn state_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::State { path: path.to_path_buf(), message: e.to_string() }
}

fn sled_error(path: &Path, e: sled::Error) -> Error {
    state_error(path, e)
}

/// One folder's records: for each, name length (u16 LE), name, then the record: `d` for a
/// folder; `c` for a file, then a flags byte ([`HASHED`], [`SAME`]), the source's size (LEB128)
/// and mtime (i64 LE), the destination's likewise unless [`SAME`] says it is the source's, and
/// the 32-byte hash when [`HASHED`]. (Records written before are `f` or `h`, with both sides'
/// size and mtime as u64/i64 LE and the hash for `h`: still read.) A file both sides hold as the
/// same size and mtime, the usual case, takes 11 bytes and its hash besides its name, not 33:
/// the state is read whole by a no-op run, and cached by sled as read.
fn encode_folder(records: &BTreeMap<String, StateRecord>) -> Vec<u8> {
    fn observed(out: &mut Vec<u8>, seen: Observed) {
        let mut size = seen.size;
        while size >= 0x80 {
            out.push((size as u8) | 0x80);
            size >>= 7;
        }
        out.push(size as u8);
        out.extend_from_slice(&seen.mtime.to_le_bytes());
    }
    let mut out = Vec::with_capacity(records.len() * 56);
    for (name, r) in records {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        match (r.kind, r.hash) {
            (Kind::Dir, _) => out.push(b'd'),
            (Kind::File, hash) => {
                let same = r.source == r.destination;
                out.push(b'c');
                out.push(if hash.is_some() { HASHED } else { 0 } | if same { SAME } else { 0 });
                observed(&mut out, r.source);
                if !same {
                    observed(&mut out, r.destination);
                }
                if let Some(hash) = hash {
                    out.extend_from_slice(&hash);
                }
            }
        }
    }
    out
}

/// Flags of a `c` record: a hash follows.
const HASHED: u8 = 1;
/// Flags of a `c` record: the destination was seen as the source (size and mtime).
const SAME: u8 = 2;

/// Appends the records of `folder` to `out` as (full path, record); `None` if malformed.
fn decode_folder(folder: &str, mut bytes: &[u8], out: &mut Vec<(String, StateRecord)>) -> Option<()> {
    fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
        let (head, tail) = bytes.split_at_checked(n)?;
        *bytes = tail;
        Some(head)
    }
    fn word(bytes: &mut &[u8]) -> Option<[u8; 8]> {
        take(bytes, 8)?.try_into().ok()
    }
    fn observed(bytes: &mut &[u8]) -> Option<Observed> {
        let mut size: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = take(bytes, 1)?[0];
            size |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(Observed { size, mtime: i64::from_le_bytes(word(bytes)?) });
            }
        }
        None
    }
    while !bytes.is_empty() {
        let len = u16::from_le_bytes(take(&mut bytes, 2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(take(&mut bytes, len)?).ok()?;
        let record = match take(&mut bytes, 1)?[0] {
            b'd' => StateRecord::dir(),
            tag @ (b'f' | b'h') => {
                let mut seen = [Observed::default(); 2];
                for s in &mut seen {
                    *s = Observed {
                        size: u64::from_le_bytes(word(&mut bytes)?),
                        mtime: i64::from_le_bytes(word(&mut bytes)?),
                    };
                }
                let hash = if tag == b'h' { Some(take(&mut bytes, 32)?.try_into().ok()?) } else { None };
                StateRecord { kind: Kind::File, source: seen[0], destination: seen[1], hash }
            }
            b'c' => {
                let flags = take(&mut bytes, 1)?[0];
                if flags & !(HASHED | SAME) != 0 {
                    return None;
                }
                let source = observed(&mut bytes)?;
                let destination = if flags & SAME != 0 { source } else { observed(&mut bytes)? };
                let hash = if flags & HASHED != 0 { Some(take(&mut bytes, 32)?.try_into().ok()?) } else { None };
                StateRecord { kind: Kind::File, source, destination, hash }
            }
            _ => return None,
        };
        if name.is_empty() || name.contains('/') {
            return None;
        }
        let path = join(folder, name);
        out.push((path, record));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_round_trip() {
        let with_hash = StateRecord {
            kind: Kind::File,
            source: Observed { size: 7, mtime: -5 },
            destination: Observed { size: 7, mtime: 1_700_000_000_123_456_789 },
            hash: Some([9; 32]),
        };
        let same = Observed { size: u64::MAX, mtime: i64::MIN };
        let both_alike = StateRecord { source: same, destination: same, ..with_hash };
        let records: BTreeMap<String, StateRecord> = [
            ("h", with_hash),
            ("f", StateRecord { hash: None, ..with_hash }),
            ("d", StateRecord::dir()),
            ("s", both_alike),
            (
                "z",
                StateRecord { hash: None, source: Observed::default(), destination: Observed::default(), ..with_hash },
            ),
        ]
        .into_iter()
        .map(|(n, r)| (n.to_string(), r))
        .collect();
        let bytes = encode_folder(&records);
        let mut out = Vec::new();
        decode_folder("a/b", &bytes, &mut out).unwrap();
        let want: Vec<_> = records.iter().map(|(n, r)| (format!("a/b/{n}"), *r)).collect();
        assert_eq!(out, want);
        for cut in [1, 3, 10, bytes.len() - 1] {
            assert_eq!(decode_folder("", &bytes[..cut], &mut Vec::new()), None, "cut at {cut}");
        }
        // Unknown flags, and a size longer than 64 bits, are malformed.
        assert_eq!(decode_folder("", b"\x01\x00xc\x04\x00", &mut Vec::new()), None);
        assert_eq!(
            decode_folder("", b"\x01\x00xc\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", &mut Vec::new()),
            None
        );
        // Two sides alike, a small file: 11 bytes besides the name (and hash), not 33.
        let one = |r: StateRecord| encode_folder(&[("n".to_string(), r)].into_iter().collect()).len() - 3;
        let small = Observed { size: 7, mtime: 1_700_000_000_123_456_789 };
        let small = StateRecord { kind: Kind::File, source: small, destination: small, hash: None };
        assert_eq!(one(small), 11);
        assert_eq!(one(StateRecord { hash: Some([0; 32]), ..small }), 43);
    }

    /// Records written before the compact `c` form (`f`, `h`) are still read.
    #[test]
    fn the_earlier_record_form_is_still_read() {
        let mut bytes = Vec::new();
        for (name, tag) in [("f", b'f'), ("h", b'h')] {
            bytes.extend_from_slice(&1u16.to_le_bytes());
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(tag);
            for word in [7u64, 9, 8, 10] {
                bytes.extend_from_slice(&word.to_le_bytes());
            }
            if tag == b'h' {
                bytes.extend_from_slice(&[4; 32]);
            }
        }
        let mut out = Vec::new();
        decode_folder("", &bytes, &mut out).unwrap();
        let f = StateRecord {
            kind: Kind::File,
            source: Observed { size: 7, mtime: 9 },
            destination: Observed { size: 8, mtime: 10 },
            hash: None,
        };
        assert_eq!(out, vec![("f".to_string(), f), ("h".to_string(), StateRecord { hash: Some([4; 32]), ..f })]);
    }

    #[test]
    fn writer_commits_only_what_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = StateDb::open(dir.path(), "p", ["/a", "/b"], false).unwrap();
        let f = StateRecord {
            kind: Kind::File,
            source: Observed { size: 1, mtime: 2 },
            destination: Observed { size: 1, mtime: 3 },
            hash: None,
        };
        let mut w = db.writer();
        for path in ["x", "d", "d/y", "d/e/z"] {
            w.put(path, &f).unwrap();
        }
        w.commit().unwrap();
        let mut w = db.writer();
        w.forget("d/y").unwrap();
        w.put("x", &StateRecord { hash: Some([1; 32]), ..f }).unwrap();
        w.commit().unwrap();
        let (state, bad) = db.load().unwrap();
        assert_eq!(bad, 0);
        assert_eq!(state.keys().collect::<Vec<_>>(), ["d", "d/e/z", "x"]);
        assert_eq!(state.get("x").unwrap().hash, Some([1; 32]));
    }

    #[test]
    fn a_moved_folder_takes_its_records_and_leaves_its_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = StateDb::open(dir.path(), "p", ["/a", "/b"], false).unwrap();
        let f = StateRecord {
            kind: Kind::File,
            source: Observed { size: 1, mtime: 2 },
            destination: Observed { size: 1, mtime: 3 },
            hash: None,
        };
        let mut w = db.writer();
        for dir_path in ["m", "m/.A", "m/.A/cur", "m/.Ab", "m/.Ab/cur"] {
            w.put(dir_path, &StateRecord::dir()).unwrap();
        }
        for file in ["m/.A/cur/x:2,S", "m/.A/uidlist", "m/.Ab/cur/y"] {
            w.put(file, &f).unwrap();
        }
        w.commit().unwrap();
        db.move_folder("m/.A", "m/.B", &StateRecord::dir()).unwrap();
        let (state, bad) = db.load().unwrap();
        assert_eq!(bad, 0);
        // `.Ab` shares `.A`'s prefix as text, not as a folder: it stays where it was.
        assert_eq!(
            state.keys().collect::<Vec<_>>(),
            ["m", "m/.Ab", "m/.Ab/cur", "m/.Ab/cur/y", "m/.B", "m/.B/cur", "m/.B/cur/x:2,S", "m/.B/uidlist"]
        );
    }

    #[test]
    fn a_pair_opened_in_the_other_order_reads_and_writes_its_records_turned_round() {
        // A two-way pair run as `sync B A` after `sync A B` shares the state `sync A B` wrote.
        let dir = tempfile::tempdir().unwrap();
        let r = StateRecord {
            kind: Kind::File,
            source: Observed { size: 1, mtime: 10 },
            destination: Observed { size: 1, mtime: 20 },
            hash: None,
        };
        {
            let (db, _) = StateDb::open(dir.path(), "p", ["/a", "/b"], false).unwrap();
            let mut w = db.writer();
            w.put("f", &r).unwrap();
            w.commit().unwrap();
        }
        for dry_run in [true, false] {
            let (db, _) = StateDb::open(dir.path(), "p", ["/b", "/a"], dry_run).unwrap();
            assert_eq!(db.load().unwrap().0.get("f"), Some(&r.swapped()), "dry run: {dry_run}");
            assert_eq!(db.load_folders([""]).unwrap().0.get("f"), Some(&r.swapped()));
        }
        {
            let (db, _) = StateDb::open(dir.path(), "p", ["/b", "/a"], false).unwrap();
            let mut w = db.writer();
            w.put("g", &r).unwrap();
            w.commit().unwrap();
        }
        // Written the other way round, read back in the first order: turned round again.
        let (db, _) = StateDb::open(dir.path(), "p", ["/a", "/b"], false).unwrap();
        let (state, _) = db.load().unwrap();
        assert_eq!((state.get("f"), state.get("g")), (Some(&r), Some(&r.swapped())));
    }

    #[test]
    fn pair_id_depends_on_both_roots_and_their_order() {
        assert_ne!(pair_id("/a", "/b"), pair_id("/b", "/a"));
        assert_ne!(pair_id("/a", "/bc"), pair_id("/ab", "/c"));
        assert_eq!(pair_id("/a", "/b").len(), 16);
    }

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = PairLock::acquire(dir.path(), "p").unwrap();
        assert!(matches!(PairLock::acquire(dir.path(), "p"), Err(Error::Locked(_))));
        drop(first);
        PairLock::acquire(dir.path(), "p").unwrap();
    }

    #[test]
    fn garbage_database_is_moved_aside_and_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("pairs").join("p");
        fs::create_dir_all(&db_dir).unwrap();
        fs::write(db_dir.join("conf"), b"\xff\xfe garbage").unwrap();
        fs::write(db_dir.join("db"), vec![0xAB; 4096]).unwrap();
        let (db, opened) = StateDb::open(dir.path(), "p", ["/a", "/b"], false).unwrap();
        assert!(matches!(opened, Opened::Reset { .. }), "{opened:?}");
        assert!(db.load().unwrap().0.is_empty());
    }
}
