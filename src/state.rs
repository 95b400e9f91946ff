//! The state of a pair: one sled database per pair, holding one [`StateRecord`] per path, and
//! the lock that keeps two runs of a pair apart.
//!
//! Records are written only after the action they describe succeeded, in bounded batches, so a
//! run killed at any moment leaves records that are true, merely incomplete; the next run
//! converges. A database that cannot be opened is moved aside and the pair starts afresh, which
//! is a first run: a merge that deletes nothing.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::{Kind, Observed, State, StateRecord};

/// Records per sled batch: big batches cost memory (DESIGN.md "State"), tiny ones speed.
pub const BATCH: usize = 1000;
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
const FORMAT: u8 = 1;

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
    _file: File,
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
            Ok(()) => Ok(PairLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(path)),
            Err(fs::TryLockError::Error(e)) => Err(state_error(&path, e)),
        }
    }
}

pub struct StateDb {
    db: sled::Db,
    path: PathBuf,
}

/// How the database was found when it was opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    Existing,
    New,
    /// It could not be read; it was moved to the given path and a fresh one started.
    Reset {
        moved_to: PathBuf,
        why: String,
    },
}

impl StateDb {
    /// Opens (or creates) the database of pair `id`. Call with the pair's lock held.
    pub fn open(state_dir: &Path, id: &str, source_url: &str, destination_url: &str) -> Result<(StateDb, Opened)> {
        let path = state_dir.join("pairs").join(id);
        let existed = path.exists();
        let (db, opened) = match open_sled(&path) {
            Ok(db) => (db, if existed { Opened::Existing } else { Opened::New }),
            Err(why) => {
                let moved_to = path.with_extension(format!("corrupt-{}", chrono::Local::now().format("%Y%m%d-%H%M%S")));
                fs::rename(&path, &moved_to).map_err(|e| state_error(&path, e))?;
                let db = open_sled(&path).map_err(|e| Error::State { path: path.clone(), message: e })?;
                (db, Opened::Reset { moved_to, why })
            }
        };
        let meta = db.open_tree("meta").map_err(|e| sled_error(&path, e))?;
        for (key, value) in
            [("format", &[FORMAT][..]), ("source", source_url.as_bytes()), ("destination", destination_url.as_bytes())]
        {
            meta.insert(key, value).map_err(|e| sled_error(&path, e))?;
        }
        Ok((StateDb { db, path }, opened))
    }

    /// Every record. A record that does not decode is dropped (that path is then treated as
    /// never synced: compared directly, never deleted).
    pub fn load(&self) -> Result<(State, usize)> {
        let mut state = State::new();
        let mut bad = 0;
        for item in self.db.iter() {
            let (key, value) = item.map_err(|e| sled_error(&self.path, e))?;
            match (std::str::from_utf8(&key), decode(&value)) {
                (Ok(path), Some(record)) => {
                    state.insert(path.to_string(), record);
                }
                _ => bad += 1,
            }
        }
        Ok((state, bad))
    }

    pub fn writer(&self) -> StateWriter<'_> {
        StateWriter { db: self, batch: sled::Batch::default(), pending: 0 }
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
}

/// Collects record changes and commits them in batches of [`BATCH`].
pub struct StateWriter<'a> {
    db: &'a StateDb,
    batch: sled::Batch,
    pending: usize,
}

impl StateWriter<'_> {
    pub fn put(&mut self, path: &str, record: &StateRecord) -> Result<()> {
        self.batch.insert(path.as_bytes(), encode(record));
        self.bump()
    }

    pub fn forget(&mut self, path: &str) -> Result<()> {
        self.batch.remove(path.as_bytes());
        self.bump()
    }

    fn bump(&mut self) -> Result<()> {
        self.pending += 1;
        if self.pending >= BATCH {
            self.commit()?;
        }
        Ok(())
    }

    pub fn commit(&mut self) -> Result<()> {
        if self.pending > 0 {
            let batch = std::mem::take(&mut self.batch);
            self.db.db.apply_batch(batch).map_err(|e| sled_error(&self.db.path, e))?;
            self.pending = 0;
        }
        Ok(())
    }
}

/// Opens the database, refusing one whose records are in a format this build cannot read.
fn open_sled(path: &Path) -> std::result::Result<sled::Db, String> {
    let config = sled::Config::new().path(path).cache_capacity(CACHE_BYTES).flush_every_ms(Some(1000));
    // sled reports most corruption as an error, but may panic on a mangled file.
    let db = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())) {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("the database panicked while opening".into()),
    };
    let format = db.open_tree("meta").and_then(|meta| meta.get("format")).map_err(|e| e.to_string())?;
    match format {
        Some(f) if f != [FORMAT] => Err(format!("record format {f:?} is not {FORMAT}")),
        _ => Ok(db),
    }
}

fn state_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::State { path: path.to_path_buf(), message: e.to_string() }
}

fn sled_error(path: &Path, e: sled::Error) -> Error {
    state_error(path, e)
}

/// kind(1) | source size(8) mtime(8) | destination size(8) mtime(8) | hash(0 or 32), LE.
fn encode(r: &StateRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + 32);
    out.push(match r.kind {
        Kind::File => b'f',
        Kind::Dir => b'd',
    });
    for seen in [r.source, r.destination] {
        out.extend_from_slice(&seen.size.to_le_bytes());
        out.extend_from_slice(&seen.mtime.to_le_bytes());
    }
    if let Some(hash) = r.hash {
        out.extend_from_slice(&hash);
    }
    out
}

fn decode(bytes: &[u8]) -> Option<StateRecord> {
    let kind = match bytes.first()? {
        b'f' => Kind::File,
        b'd' => Kind::Dir,
        _ => return None,
    };
    let word = |i: usize| -> Option<[u8; 8]> { bytes.get(1 + 8 * i..9 + 8 * i)?.try_into().ok() };
    let seen = |i: usize| -> Option<Observed> {
        Some(Observed { size: u64::from_le_bytes(word(i)?), mtime: i64::from_le_bytes(word(i + 1)?) })
    };
    let hash = match bytes.len() {
        33 => None,
        65 => Some(bytes[33..65].try_into().ok()?),
        _ => return None,
    };
    Some(StateRecord { kind, source: seen(0)?, destination: seen(2)?, hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let with_hash = StateRecord {
            kind: Kind::File,
            source: Observed { size: 7, mtime: -5 },
            destination: Observed { size: 7, mtime: 1_700_000_000_123_456_789 },
            hash: Some([9; 32]),
        };
        for r in [with_hash, StateRecord { hash: None, ..with_hash }, StateRecord::dir()] {
            assert_eq!(decode(&encode(&r)), Some(r));
        }
        assert_eq!(decode(b"x"), None);
        assert_eq!(decode(&encode(&with_hash)[..40]), None);
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
        let (db, opened) = StateDb::open(dir.path(), "p", "/a", "/b").unwrap();
        assert!(matches!(opened, Opened::Reset { .. }), "{opened:?}");
        assert!(db.load().unwrap().0.is_empty());
    }
}
