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
}

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

fn read_whole(mut file: &File) -> io::Result<Captured> {
    let meta = file.metadata()?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    let mut entry = entry_of(&meta).ok_or_else(|| io::Error::other("not a regular file"))?;
    // What was read, whatever the size said a moment before.
    entry.size = bytes.len() as u64;
    Ok(Captured { entry, bytes: Arc::from(bytes) })
}

/// Reads `lock` under a shared lock on it, and `others` (each `None` when absent) while it is
/// held. `Ok(None)` when `lock` does not exist.
pub fn together(lock: &Path, others: &[PathBuf]) -> io::Result<Option<(Captured, Vec<Option<Captured>>)>> {
    let _one = CAPTURE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(file) = open_locked(lock)? else { return Ok(None) };
    let first = read_whole(&file).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", lock.display())))?;
    let mut rest = Vec::new();
    for path in others {
        let captured = match File::open(path) {
            Ok(other) => {
                Some(read_whole(&other).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        rest.push(captured);
    }
    drop(file);
    Ok(Some((first, rest)))
}

/// One file under a shared lock on itself; `Ok(None)` when it does not exist.
pub fn one(path: &Path) -> io::Result<Option<Captured>> {
    Ok(together(path, &[])?.map(|(captured, _)| captured))
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
        let (first, rest) = together(&index, &[dir.path().join("cyrus.header"), dir.path().join("cyrus.annotations")])
            .unwrap()
            .unwrap();
        assert_eq!(&*first.bytes, b"old");
        assert_eq!(first.entry.size, 3);
        assert_eq!(&*rest[0].as_ref().unwrap().bytes, b"header");
        assert!(rest[1].is_none());
        std::fs::write(dir.path().join("new"), b"newer").unwrap();
        std::fs::rename(dir.path().join("new"), &index).unwrap();
        assert_eq!(&*one(&index).unwrap().unwrap().bytes, b"newer");
        assert!(one(&dir.path().join("missing")).unwrap().is_none());
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
        let captured = one(&index).unwrap().unwrap();
        assert_eq!(&*captured.bytes, b"half-and-whole");
        assert!(child.wait().unwrap().success());
    }
}
