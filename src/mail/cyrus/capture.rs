//! Consistent copies of files Cyrus changes in place or replaces: read whole, under the shared
//! fcntl lock Cyrus's own readers take, so that what the replica gets is a state Cyrus was in.
//!
//! A mailbox's `cyrus.header`, `cyrus.index`, `cyrus.cache` and `cyrus.annotations` are read
//! together under one shared lock on `cyrus.index`: Cyrus's writers take a write lock on it
//! before they change any of them, and wait while it is held (so it is held only as long as
//! the reads take). `cyr_expire` and `reconstruct` replace the files by rename: after locking,
//! the path must still be the locked file, else it is opened again. A user's databases
//! (`sub.db`, `seen.db`, ...) and the quota and annotation databases are read the same way,
//! each under a lock on itself (twoskip and flat databases lock their own file).
//!
//! Record locks belong to the process and go with the first close of any descriptor of the
//! file, so captures run one at a time ([`CAPTURE`]).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::core::model::Entry;
use crate::endpoint::local::entry_of;
use crate::mail::synclog::fcntl_lock;

static CAPTURE: Mutex<()> = Mutex::new(());

/// How often a file replaced between its open and its lock is opened again.
const ATTEMPTS: usize = 16;

/// A file as it was read: its entry (size and mtime at the read) and its bytes.
#[derive(Debug, Clone)]
pub struct Captured {
    pub entry: Entry,
    pub bytes: Arc<[u8]>,
    /// Only stat'ed: the caller knew this size and mtime, so the bytes were not read (and
    /// must not be served: [`Captured::bytes`] is empty).
    pub unread: bool,
    /// The file read: (device, inode).
    pub id: (u64, u64),
}

/// Whether the caller already has the file at this path as it is now (its size and mtime).
pub type Known<'a> = &'a dyn Fn(&Path, &Entry) -> bool;

/// Opens `path` and takes a shared lock on it, again while the path turns out to be another
/// file once locked. `Ok(None)` when there is no such file.
fn open_locked(path: &Path) -> io::Result<Option<File>> {
    for _ in 0..ATTEMPTS {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        fcntl_lock(&file, rustix::fs::FlockOperation::LockShared)?;
        let locked = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => return Ok(Some(file)),
            // Replaced (or removed) meanwhile: the lock is on a file nobody uses any more.
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!("{}: replaced {ATTEMPTS} times while being locked", path.display())))
}

fn read_whole(mut file: &File, path: &Path, known: Known) -> io::Result<Captured> {
    let meta = file.metadata()?;
    if let Some(entry) = entry_of(&meta).filter(|entry| known(path, entry)) {
        return Ok(Captured { entry, bytes: Arc::from(Vec::new()), unread: true, id: (meta.dev(), meta.ino()) });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    let mut entry = entry_of(&meta).ok_or_else(|| io::Error::other("not a regular file"))?;
    // What was read, whatever the size said a moment before.
    entry.size = bytes.len() as u64;
    Ok(Captured { entry, bytes: Arc::from(bytes), unread: false, id: (meta.dev(), meta.ino()) })
}

/// The error with the path it is about.
fn with_path(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Reads `lock` under a shared lock on it, and `others` (each `None` when absent) while it is
/// held; a file `known` says the caller has as it is is only stat'ed. `Ok(None)` when `lock`
/// does not exist.
pub fn together(
    lock: &Path,
    others: &[PathBuf],
    known: Known,
) -> io::Result<Option<(Captured, Vec<Option<Captured>>)>> {
    let _one = CAPTURE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(file) = open_locked(lock)? else { return Ok(None) };
    let first = read_whole(&file, lock, &|_, _| false).map_err(with_path(lock))?;
    let mut rest = Vec::new();
    for path in others {
        let captured = match File::open(path) {
            Ok(other) => Some(read_whole(&other, path, known).map_err(with_path(path))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(with_path(path)(e)),
        };
        rest.push(captured);
    }
    drop(file);
    Ok(Some((first, rest)))
}

/// One file under a shared lock on itself, unless `known` says the caller has it as it is;
/// `Ok(None)` when it does not exist.
pub fn one(path: &Path, known: Known) -> io::Result<Option<Captured>> {
    let _one = CAPTURE.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(meta) = std::fs::metadata(path) {
        if let Some(entry) = entry_of(&meta).filter(|entry| known(path, entry)) {
            return Ok(Some(Captured {
                entry,
                bytes: Arc::from(Vec::new()),
                unread: true,
                id: (meta.dev(), meta.ino()),
            }));
        }
    }
    let Some(file) = open_locked(path)? else { return Ok(None) };
    read_whole(&file, path, &|_, _| false)
        .map(Some)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_replaced_by_rename_is_read_as_it_is_now() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("cyrus.index");
        std::fs::write(&index, b"old").unwrap();
        std::fs::write(dir.path().join("cyrus.header"), b"header").unwrap();
        let (first, rest) =
            together(&index, &[dir.path().join("cyrus.header"), dir.path().join("cyrus.annotations")], &|_, _| false)
                .unwrap()
                .unwrap();
        assert_eq!(&*first.bytes, b"old");
        assert_eq!(first.entry.size, 3);
        assert_eq!(&*rest[0].as_ref().unwrap().bytes, b"header");
        assert!(rest[1].is_none());
        std::fs::write(dir.path().join("new"), b"newer").unwrap();
        std::fs::rename(dir.path().join("new"), &index).unwrap();
        assert_eq!(&*one(&index, &|_, _| false).unwrap().unwrap().bytes, b"newer");
        assert!(one(&dir.path().join("missing"), &|_, _| false).unwrap().is_none());
        // What the caller has as it is is not read again.
        let known = one(&index, &|_, e| e.size == 5).unwrap().unwrap();
        assert!(known.unread && known.bytes.is_empty() && known.entry.size == 5);
        let header = dir.path().join("cyrus.header");
        let (first, rest) = together(&index, std::slice::from_ref(&header), &|p, _| p == header).unwrap().unwrap();
        assert!(!first.unread && rest[0].as_ref().unwrap().unread);
    }

    #[test]
    fn a_writer_holding_the_lock_is_waited_for() {
        // A child process (record locks are per process) holds a write lock for a moment; the
        // capture must see the bytes written under it, never a half.
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("cyrus.index");
        std::fs::write(&index, b"before").unwrap();
        let script = format!(
            "import fcntl,os,sys,time\nf=open({path:?},'r+b')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\n\
             f.truncate(0);f.write(b'half');f.flush();time.sleep(0.3);f.write(b'-and-whole');f.flush()\n\
             fcntl.lockf(f,fcntl.LOCK_UN)",
            path = index.display().to_string()
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        io::BufRead::read_line(&mut io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "locked");
        let captured = one(&index, &|_, _| false).unwrap().unwrap();
        assert_eq!(&*captured.bytes, b"half-and-whole");
        assert!(child.wait().unwrap().success());
    }
}
