//! A local directory. Never follows a symlink when scanning and never writes through one: every
//! parent of a path written to is checked to be a real folder (not a link) below the root.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use filetime::FileTime;

use super::{changed_since_scan, changed_while_copying, Endpoint, IssueKind, Scan, ScanIssue, TempOwner};
use crate::filter::Filter;
use crate::model::{ancestors, Entry, Kind, Mtime, Snapshot};

pub struct LocalEndpoint {
    root: PathBuf,
    /// Temp files are named `.pairsync-<tag>-<pid>-<n>.tmp`; the tag is the pair's, so a run
    /// recognizes (and removes) only its own pair's leftovers.
    tag: String,
    counter: AtomicU64,
}

const TEMP_PREFIX: &str = ".pairsync-";
const TEMP_SUFFIX: &str = ".tmp";

impl LocalEndpoint {
    pub fn new(root: PathBuf, tag: &str) -> LocalEndpoint {
        LocalEndpoint { root, tag: tag.to_string(), counter: AtomicU64::new(0) }
    }

    fn full(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Refuses to touch `rel` unless each of its parents is a real folder, not a symlink:
    /// a link in the tree must never let a write escape the root. Checked afresh every time
    /// (right before a temp file is made and again right before the rename), never cached: a
    /// folder may be swapped for a link while a run goes on.
    fn check_parents(&self, rel: &str) -> io::Result<()> {
        let parents: Vec<&str> = ancestors(rel).collect();
        for dir in parents.into_iter().rev() {
            let meta = fs::symlink_metadata(self.full(dir))?;
            if meta.file_type().is_symlink() {
                return Err(io::Error::other(format!("{dir} is a symbolic link; refusing to write through it")));
            }
            if !meta.is_dir() {
                return Err(io::Error::other(format!("{dir} is not a folder")));
            }
        }
        Ok(())
    }

    /// What is at `rel` now must be what the plan saw (`None`: nothing).
    fn expect_current(&self, rel: &str, expect: Option<&Entry>) -> io::Result<()> {
        let now = self.stat_path(rel)?;
        match (now, expect) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(changed_since_scan("something appeared there")),
            (None, Some(_)) => Err(changed_since_scan("it disappeared")),
            (Some(now), Some(then)) if then.is_dir() && now.is_dir() => Ok(()),
            (Some(now), Some(then)) if now.same_metadata(then) => Ok(()),
            (Some(_), Some(_)) => Err(changed_since_scan("size or mtime differ")),
        }
    }

    /// The file or folder at `rel`, `None` if nothing is there; a symlink or special file is
    /// an error, so that no compare takes it for "nothing" and nothing is written over it.
    fn stat_path(&self, rel: &str) -> io::Result<Option<Entry>> {
        match fs::symlink_metadata(self.full(rel)) {
            Ok(meta) => match entry_of(&meta) {
                Some(entry) => Ok(Some(entry)),
                None => Err(io::Error::other("a symbolic link or special file is in the way; left alone")),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn temp_name(&self, rel: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("{TEMP_PREFIX}{}-{}-{n}{TEMP_SUFFIX}", self.tag, std::process::id());
        match crate::model::parent(rel) {
            Some(dir) => format!("{dir}/{name}"),
            None => name,
        }
    }
}

/// A file or folder entry from lstat metadata; `None` for symlinks and special files.
fn entry_of(meta: &fs::Metadata) -> Option<Entry> {
    let ft = meta.file_type();
    if ft.is_dir() {
        Some(Entry::dir())
    } else if ft.is_file() {
        Some(Entry { mode: Some(meta.permissions().mode() & 0o7777), ..Entry::file(meta.len(), mtime_of(meta)) })
    } else {
        None
    }
}

fn mtime_of(meta: &fs::Metadata) -> Mtime {
    let t = FileTime::from_last_modification_time(meta);
    t.unix_seconds() * 1_000_000_000 + i64::from(t.nanoseconds())
}

fn system_time(mtime: Mtime) -> SystemTime {
    let (secs, nanos) = (mtime.div_euclid(1_000_000_000), mtime.rem_euclid(1_000_000_000) as u32);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(u64::from(nanos))
    }
}

impl Endpoint for LocalEndpoint {
    fn url(&self) -> String {
        self.root.display().to_string()
    }

    fn check_root(&self) -> io::Result<()> {
        let meta = fs::metadata(&self.root)?;
        if !meta.is_dir() {
            return Err(io::Error::other("not a folder"));
        }
        fs::read_dir(&self.root).map(|_| ())
    }

    /// Walks the tree with `read_dir`: unlike a walk that stats each full path, std's
    /// `DirEntry::metadata` stats relative to the open folder (statx on its fd), which saves
    /// resolving every path component again for each of a hundred thousand files.
    fn scan(&self, filter: &Filter) -> io::Result<Scan> {
        self.walk(filter, vec![(String::new(), true)], Vec::new())
    }

    fn scan_part(&self, filter: &Filter, shallow: &[String], deep: &[String]) -> io::Result<Scan> {
        // Only folders are listed: a changed path that is (now) a file or gone is seen in its
        // parent's listing; a shallow folder that is gone is seen in its own parent's.
        let is_dir = |d: &String| d.is_empty() || matches!(self.stat_path(d), Ok(Some(e)) if e.is_dir());
        let mut start: Vec<(String, bool)> = shallow.iter().filter(|d| is_dir(d)).map(|d| (d.clone(), false)).collect();
        start.extend(deep.iter().filter(|d| !d.is_empty() && is_dir(d)).map(|d| (d.clone(), true)));
        // The folders on the way, so that the plan sees their parents as they are.
        let mut on_the_way: Vec<(String, Entry)> = Vec::new();
        for dir in start.iter().flat_map(|(d, _)| crate::model::ancestors(d).chain([d.as_str()])) {
            if !dir.is_empty() && !filter.hides(dir, Kind::Dir) {
                if let Ok(Some(entry)) = self.stat_path(dir) {
                    on_the_way.push((dir.to_string(), entry));
                }
            }
        }
        self.walk(filter, start, on_the_way)
    }

    fn stat(&self, path: &str) -> io::Result<Option<Entry>> {
        self.stat_path(path)
    }

    fn write(
        &self,
        path: &str,
        data: &mut dyn Read,
        like: &Entry,
        replaces: Option<&Entry>,
        resume_from: u64,
    ) -> io::Result<Entry> {
        self.check_parents(path)?;
        let resumable = like.size >= super::RESUMABLE;
        let temp = if resumable { super::resumable_temp(&self.tag, path, like) } else { self.temp_name(path) };
        let temp_path = self.full(&temp);
        let mut file = if resume_from > 0 {
            // O_NOFOLLOW: continue only the very file an earlier run left, never a planted link.
            let file = OpenOptions::new().append(true).custom_flags(libc::O_NOFOLLOW).open(&temp_path)?;
            if file.metadata()?.len() != resume_from {
                return Err(changed_since_scan("the partial copy to continue changed"));
            }
            file
        } else {
            if resumable {
                // A stale partial of the same content that is not worth continuing.
                let _ = fs::remove_file(&temp_path);
            }
            // create_new: O_EXCL never follows a symlink planted at the temp name.
            // 0600 until the copy is done: a private file is never readable by others meanwhile.
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp_path)?
        };
        let written = (|| {
            // On the stack: a heap buffer this size is an mmap and fresh page faults per file.
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = data.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n])?;
            }
            file.set_modified(system_time(like.mtime))?;
            if let Some(mode) = like.mode {
                file.set_permissions(fs::Permissions::from_mode(mode))?;
            }
            let meta = file.metadata()?;
            drop(file);
            // Compare, then mutate: the target must still be what the plan saw, and its folders
            // real folders, checked right before the rename (the copy may have taken a while).
            self.check_parents(path)?;
            self.expect_current(path, replaces)?;
            fs::rename(&temp_path, self.full(path))?;
            Ok(meta)
        })();
        match written {
            Ok(meta) => Ok(entry_of(&meta).expect("a regular file")),
            Err(err) => {
                // A large copy's partial temp is kept for the next run to continue.
                if !resumable {
                    let _ = fs::remove_file(&temp_path);
                }
                Err(err)
            }
        }
    }

    fn partial(&self, path: &str, like: &Entry) -> u64 {
        if like.size < super::RESUMABLE {
            return 0;
        }
        let temp = self.full(&super::resumable_temp(&self.tag, path, like));
        match fs::symlink_metadata(temp) {
            Ok(meta) if meta.is_file() && meta.len() > 0 && meta.len() < like.size => meta.len(),
            _ => 0,
        }
    }

    fn open_from(&self, path: &str, expect: &Entry, offset: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        use std::io::Seek;
        let mut file = File::open(self.full(path))?;
        let meta = file.metadata()?;
        if !meta.is_file() || entry_of(&meta).is_none_or(|now| !now.same_metadata(expect)) {
            return Err(changed_since_scan("size or mtime differ"));
        }
        file.seek(io::SeekFrom::Start(offset))?;
        Ok(Box::new(CheckedReader { file, expect: *expect, read: offset }))
    }

    fn mkdir(&self, path: &str) -> io::Result<()> {
        self.check_parents(path)?;
        match fs::create_dir(self.full(path)) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match self.stat_path(path)? {
                Some(entry) if entry.is_dir() => Ok(()),
                _ => Err(io::Error::other("something that is not a folder is in the way")),
            },
            other => other,
        }?;
        Ok(())
    }

    fn remove(&self, path: &str, expect: &Entry) -> io::Result<()> {
        self.check_parents(path)?;
        self.expect_current(path, Some(expect))?;
        if expect.is_dir() {
            fs::remove_dir(self.full(path))
        } else {
            fs::remove_file(self.full(path))
        }
    }

    fn rename(&self, from: &str, to: &str, expect: &Entry) -> io::Result<Entry> {
        self.check_parents(from)?;
        self.check_parents(to)?;
        self.expect_current(from, Some(expect))?;
        self.expect_current(to, None)?;
        fs::rename(self.full(from), self.full(to))?;
        self.stat_path(to)?.ok_or_else(|| changed_since_scan("renamed file vanished"))
    }

    fn read_check_file(&self, path: &str, limit: usize) -> io::Result<Option<Vec<u8>>> {
        let full = if Path::new(path).is_absolute() { PathBuf::from(path) } else { self.full(path) };
        match File::open(full) {
            Ok(file) => {
                let mut bytes = Vec::new();
                file.take(limit as u64).read_to_end(&mut bytes)?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One syncfs of the root's filesystem per batch: far cheaper than an fsync per file.
    fn flush(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let root = File::open(&self.root)?;
        // SAFETY: syncfs only reads the descriptor, which `root` keeps open for the call.
        if unsafe { libc::syncfs(root.as_raw_fd()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn remove_leftover(&self, path: &str) -> io::Result<()> {
        fs::remove_file(self.full(path))
    }
}

impl LocalEndpoint {
    /// Lists the folders in `start` (with everything below them when `true`).
    fn walk(&self, filter: &Filter, start: Vec<(String, bool)>, mut found: Vec<(String, Entry)>) -> io::Result<Scan> {
        let mut issues = Vec::new();
        let mut leftovers = Vec::new();
        // Folders holding something left out: they cannot be emptied, so they are never deleted.
        let mut holders = std::collections::HashSet::new();
        let mut folders = start;
        while let Some((dir, recursive)) = folders.pop() {
            let listing = match fs::read_dir(self.full(&dir)) {
                Ok(listing) => listing,
                Err(err) if dir.is_empty() => return Err(err),
                Err(err) => {
                    issues.push(ScanIssue {
                        path: dir,
                        message: format!("cannot read: {err}"),
                        kind: IssueKind::Unreadable,
                    });
                    continue;
                }
            };
            for item in listing {
                let item = match item {
                    Ok(item) => item,
                    Err(err) => {
                        let path = dir.clone();
                        issues.push(ScanIssue {
                            path,
                            message: format!("cannot read: {err}"),
                            kind: IssueKind::Unreadable,
                        });
                        break;
                    }
                };
                let name = item.file_name();
                let Some(name) = name.to_str() else {
                    holders.insert(dir.clone());
                    let path = format!("{dir}/{}", name.to_string_lossy()).trim_start_matches('/').to_string();
                    issues.push(ScanIssue {
                        path,
                        message: "name is not valid UTF-8; skipped".into(),
                        kind: IssueKind::Skipped,
                    });
                    continue;
                };
                let rel = if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") };
                let ft = match item.file_type() {
                    Ok(ft) => ft,
                    Err(err) => {
                        issues.push(ScanIssue {
                            path: rel,
                            message: format!("cannot stat: {err}"),
                            kind: IssueKind::Unreadable,
                        });
                        continue;
                    }
                };
                let temp = super::temp_owner(name, &self.tag);
                if ft.is_dir() {
                    if temp.is_some() {
                        // A temp folder (an FTP endpoint's staged folder): left alone.
                        holders.insert(dir.clone());
                    } else if !filter.ignores(&rel, Kind::Dir) {
                        found.push((rel.clone(), Entry::dir()));
                        if recursive {
                            folders.push((rel, true));
                        }
                    } else {
                        holders.insert(dir.clone());
                    }
                } else if ft.is_file() {
                    if let Some(owner) = temp {
                        if owner == TempOwner::Own {
                            leftovers.push(rel);
                        }
                        holders.insert(dir.clone());
                    } else if filter.ignores(&rel, Kind::File) {
                        holders.insert(dir.clone());
                    } else {
                        match item.metadata() {
                            Ok(meta) => found.push((rel, entry_of(&meta).expect("a regular file"))),
                            Err(err) => issues.push(ScanIssue {
                                path: rel,
                                message: format!("cannot stat: {err}"),
                                kind: IssueKind::Unreadable,
                            }),
                        }
                    }
                } else if !filter.ignores(&rel, Kind::File) {
                    holders.insert(dir.clone());
                    let what =
                        if ft.is_symlink() { "symbolic link, not followed" } else { "not a regular file or folder" };
                    issues.push(ScanIssue {
                        path: rel,
                        message: format!("{what}; left alone"),
                        kind: IssueKind::Excluded,
                    });
                }
            }
        }
        super::mark_unsynced(&mut found, &holders);
        Ok(Scan { snapshot: Snapshot::from_unique(found), issues, leftovers })
    }
}

/// Reads a file and, at its end, checks it is still the size and mtime the plan saw.
struct CheckedReader {
    file: File,
    expect: Entry,
    read: u64,
}

impl Read for CheckedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if n == 0 || self.read > self.expect.size {
            let now = entry_of(&self.file.metadata()?);
            if self.read != self.expect.size || now.is_none_or(|now| !now.same_metadata(&self.expect)) {
                return Err(changed_while_copying());
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> (tempfile::TempDir, LocalEndpoint) {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = LocalEndpoint::new(dir.path().to_path_buf(), "0123abcd");
        (dir, endpoint)
    }

    #[test]
    fn a_file_growing_while_read_fails_the_read() {
        let (dir, ep) = endpoint();
        fs::write(dir.path().join("f"), vec![1u8; 10_000]).unwrap();
        let entry = ep.stat("f").unwrap().unwrap();
        let mut reader = ep.open("f", &entry).unwrap();
        let mut buf = [0u8; 4096];
        reader.read_exact(&mut buf).unwrap();
        OpenOptions::new().append(true).open(dir.path().join("f")).unwrap().write_all(b"more").unwrap();
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("changed while being read"), "{err}");
    }

    #[test]
    fn a_write_that_fails_leaves_neither_temp_file_nor_target() {
        let (dir, ep) = endpoint();
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("source went away"))
            }
        }
        assert!(ep.write("x", &mut Broken, &Entry::file(1, 0), None, 0).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn write_refuses_a_target_that_appeared_since_the_scan() {
        let (dir, ep) = endpoint();
        fs::write(dir.path().join("x"), "someone else's").unwrap();
        let err = ep.write("x", &mut &b"mine"[..], &Entry::file(4, 0), None, 0).unwrap_err();
        assert!(err.to_string().contains("changed since the scan"), "{err}");
        assert_eq!(fs::read_to_string(dir.path().join("x")).unwrap(), "someone else's");
    }

    #[test]
    fn write_reports_what_the_filesystem_stored() {
        let (_dir, ep) = endpoint();
        let mtime = 1_600_000_000_123_456_789;
        let like = Entry { mode: Some(0o751), ..Entry::file(4, mtime) };
        let written = ep.write("x", &mut &b"data"[..], &like, None, 0).unwrap();
        assert_eq!(written, ep.stat("x").unwrap().unwrap());
        assert_eq!((written.size, written.mtime, written.mode), (4, mtime, Some(0o751)));
    }
}
