//! A local directory. Never follows a symlink when scanning and never writes through one: every
//! listing, stat, write, rename, delete and read happens relative to its folder, opened by
//! walking from the root one name at a time without following a link (`openat` with
//! `O_NOFOLLOW`). The open folder pins the real folder, so one swapped for a link at any moment,
//! even between a check and a rename, or between being listed and being entered, cannot send
//! anything outside the root (nor list anything outside it).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use filetime::FileTime;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Stat};
use rustix::io::Errno;

use super::{
    changed_since_scan, changed_while_copying, Endpoint, EndpointError, ErrorKind, IssueKind, Scan, ScanIssue,
    TempOwner,
};
use crate::core::filter::Filter;
use crate::core::model::{is_inside, join, sibling, split, Entry, Kind, Mtime, Snapshot};

pub struct LocalEndpoint {
    root: PathBuf,
    /// Temp files are named `.pairsync-<tag>-<pid>-<n>.tmp`; the tag is the pair's, so a run
    /// recognizes (and removes) only its own pair's leftovers.
    tag: String,
    counter: AtomicU64,
    /// Something was written since the last flush: a side only read (a mail store) is not
    /// synced to disk for nothing.
    wrote: std::sync::atomic::AtomicBool,
    /// Entries the scan in progress has listed (for a progress line).
    scanned: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Called with each folder a scan has listed, before it enters the folders in it: lets a
    /// test change the tree at that very moment.
    #[cfg(test)]
    after_listing: Option<ListingHook>,
}

/// A folder to list, and whether everything below it too.
type Start = (String, bool);

/// What a caller knows of a file without a stat (see `LocalEndpoint::scan_part_known`).
type Known<'a> = &'a dyn Fn(&str) -> Option<Entry>;

#[cfg(test)]
type ListingHook = Box<dyn Fn(&str) + Send + Sync>;

const TEMP_PREFIX: &str = ".pairsync-";
const TEMP_SUFFIX: &str = ".tmp";

impl LocalEndpoint {
    pub fn new(root: PathBuf, tag: &str) -> LocalEndpoint {
        LocalEndpoint {
            root,
            tag: tag.to_string(),
            counter: AtomicU64::new(0),
            wrote: std::sync::atomic::AtomicBool::new(false),
            scanned: Default::default(),
            #[cfg(test)]
            after_listing: None,
        }
    }

    /// The folder `dir` (relative, "" for the root), opened by walking from the root one name
    /// at a time, never through a symlink: a link or a file on the way is an error naming it.
    fn open_folder(&self, dir: &str) -> io::Result<OwnedFd> {
        // The root itself may be a link (a mount point's alias): the user chose it.
        let mut fd = rustix::fs::open(&self.root, PATH_FLAGS, Mode::empty())?;
        for (here, name) in steps("", dir) {
            fd = open_in(&fd, name, here)?;
        }
        Ok(fd)
    }

    /// As [`Self::open_folder`], from the deepest folder of `open` on the way to `dir` that is
    /// still where it was, keeping the folders opened on the way (the first [`KEPT_OPEN`] levels)
    /// in `open` for the next call.
    fn open_folder_in(&self, open: &mut OpenFolders, dir: &str) -> io::Result<Rc<OwnedFd>> {
        let on_the_way = |path: &String| path.is_empty() || path == dir || is_inside(dir, path);
        open.0.truncate(open.0.iter().take_while(|kept| on_the_way(&kept.path)).count());
        // Each kept folder must still be its parent's entry of its name: one moved away (out of
        // the root, say) since it was opened is opened again from its parent, or not found.
        let moved = (1..open.0.len()).find(|&i| !open.0[i].still_in(&open.0[i - 1].fd));
        open.0.truncate(moved.unwrap_or(open.0.len()));
        if open.0.is_empty() {
            let root = Rc::new(rustix::fs::open(&self.root, PATH_FLAGS, Mode::empty())?);
            open.0.push(KeptFolder { path: String::new(), fd: root, id: (0, 0) });
        }
        let last = open.0.last().expect("the root at least");
        let mut fd = last.fd.clone();
        for (here, name) in steps(&dir[..last.path.len()], dir) {
            let next = Rc::new(open_in(&fd, name, here)?);
            if open.0.len() < KEPT_OPEN {
                let st = rustix::fs::fstat(&*next)?;
                open.0.push(KeptFolder { path: here.to_string(), fd: next.clone(), id: (st.st_dev, st.st_ino) });
            }
            fd = next;
        }
        Ok(fd)
    }

    /// The open folder `fd` must still be the folder `dir` of the tree: not moved out of the
    /// root, nor replaced, while a copy into it went on.
    fn still_in_place(&self, fd: &OwnedFd, dir: &str) -> io::Result<()> {
        let (pinned, now) = (rustix::fs::fstat(fd)?, rustix::fs::fstat(self.open_folder(dir)?)?);
        if (pinned.st_dev, pinned.st_ino) == (now.st_dev, now.st_ino) {
            Ok(())
        } else {
            Err(changed_since_scan("its folder was moved or replaced").into())
        }
    }

    /// The open folder holding `rel`, and `rel`'s name in it.
    fn parent_of<'r>(&self, rel: &'r str) -> io::Result<(OwnedFd, &'r str)> {
        let (dir, name) = split(rel);
        Ok((self.open_folder(dir)?, name))
    }

    /// The file or folder at `rel`, `None` if nothing is there (nor its folder); a symlink or
    /// special file is an error, so that no compare takes it for "nothing" and nothing is
    /// written over it. Stat'ed in its open folder: a link on the way is an error, not followed.
    fn stat_path(&self, rel: &str) -> io::Result<Option<Entry>> {
        match self.parent_of(rel) {
            Ok((dir, name)) => entry_at(&dir, name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn temp_name(&self, rel: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("{TEMP_PREFIX}{}-{}-{n}{TEMP_SUFFIX}", self.tag, std::process::id());
        sibling(rel, &name)
    }
}

/// What is at `name` in `dir` now must be what the plan saw (`None`: nothing).
fn expect_at(dir: &OwnedFd, name: &str, expect: Option<&Entry>) -> io::Result<()> {
    Ok(super::still_as_planned(entry_at(dir, name)?, expect)?)
}

/// How the folders on the way to a listed one are opened: only to look in, never through a link.
const PATH_FLAGS: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

/// The folders on the way from `base` down to `dir` (inside it), each as its path and name.
fn steps<'d>(base: &str, dir: &'d str) -> impl Iterator<Item = (&'d str, &'d str)> {
    let mut walked = base.len();
    dir[base.len()..].split('/').filter(|n| !n.is_empty()).map(move |name| {
        walked = if walked == 0 { name.len() } else { walked + 1 + name.len() };
        (&dir[..walked], name)
    })
}

/// The folder `name` of the open folder `fd` (`here`: its path), opened to look in, never
/// through a link: a link or a file there is an error naming it.
fn open_in(fd: &OwnedFd, name: &str, here: &str) -> io::Result<OwnedFd> {
    match rustix::fs::openat(fd, name, PATH_FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
        Ok(next) => Ok(next),
        Err(err) if err == Errno::NOTDIR || err == Errno::LOOP => {
            let link = rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
            Err(io::Error::other(if link {
                format!("{here} is a symbolic link; refusing to go through it")
            } else {
                format!("{here} is not a folder")
            }))
        }
        Err(err) => Err(err.into()),
    }
}

/// How many folders on the way to the last one listed a [`LocalEndpoint::folder_lister`] keeps
/// open at most, the root included: a deeper folder is reached from the last of them, and a
/// tree thousands of levels deep never needs a descriptor a level.
const KEPT_OPEN: usize = 32;

/// The folders a [`LocalEndpoint::folder_lister`] keeps open between listings: those on the way
/// to the last folder listed, from the root down.
#[derive(Default)]
struct OpenFolders(Vec<KeptFolder>);

struct KeptFolder {
    path: String,
    fd: Rc<OwnedFd>,
    /// Device and inode, to tell it is still where it was opened.
    id: (u64, u64),
}

impl KeptFolder {
    /// True while this folder is still the entry of its name in the open folder `parent`.
    fn still_in(&self, parent: &OwnedFd) -> bool {
        let st = rustix::fs::statat(parent, split(&self.path).1, AtFlags::SYMLINK_NOFOLLOW);
        st.is_ok_and(|st| (st.st_dev, st.st_ino) == self.id)
    }
}

/// The file or folder `name` in `dir`, `None` if nothing is there; a symlink or special file is
/// an error, so that no compare takes it for "nothing" and nothing is written over it.
fn entry_at(dir: &OwnedFd, name: &str) -> io::Result<Option<Entry>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => match entry_of_stat(&st) {
            Some(entry) => Ok(Some(entry)),
            None => Err(io::Error::other("a symbolic link or special file is in the way; left alone")),
        },
        Err(Errno::NOENT) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// A file or folder entry from a stat; `None` for symlinks and special files.
fn entry_of_stat(st: &Stat) -> Option<Entry> {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Some(Entry::dir()),
        FileType::RegularFile => {
            let mtime = st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64;
            Some(Entry { mode: Some(st.st_mode & 0o7777), ..Entry::file(st.st_size as u64, mtime) })
        }
        _ => None,
    }
}

fn create_new(dir: &OwnedFd, name: &str) -> io::Result<File> {
    // O_EXCL and O_NOFOLLOW: never a file (or link) planted at the temp name. 0600 until the copy
    // is done: a private file is never readable by others meanwhile.
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?))
}

/// Renames `from` in `dir` to `to` in `to_dir`. With `fresh` (the plan saw nothing at `to`) it
/// never replaces what appeared there since the last check (RENAME_NOREPLACE, where the file
/// system has it).
fn rename_at(dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str, fresh: bool) -> io::Result<()> {
    if fresh {
        match rustix::fs::renameat_with(dir, from, to_dir, to, rustix::fs::RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(Errno::EXIST) => return Err(changed_since_scan("something appeared there").into()),
            Err(Errno::INVAL) | Err(Errno::NOSYS) => {} // not supported here: checked just before
            Err(err) => return Err(err.into()),
        }
    }
    Ok(rustix::fs::renameat(dir, from, to_dir, to)?)
}

fn unlink(dir: &OwnedFd, name: &str) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// A file or folder entry from lstat metadata; `None` for symlinks and special files.
pub fn entry_of(meta: &fs::Metadata) -> Option<Entry> {
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

    fn check_root(&self) -> super::Result<()> {
        let meta = fs::metadata(&self.root)?;
        if !meta.is_dir() {
            return Err(EndpointError::new(ErrorKind::Other, "not a folder"));
        }
        Ok(fs::read_dir(&self.root).map(|_| ())?)
    }

    /// Walks the tree by open folder (see [`LocalEndpoint::walk`]): unlike a walk that stats
    /// each full path, it never resolves a path component again for each of a hundred
    /// thousand files, and never follows a folder swapped for a link meanwhile.
    fn scan(&self, filter: &Filter) -> super::Result<Scan> {
        Ok(self.walk(filter, vec![(String::new(), true)], Vec::new())?)
    }

    fn scan_part(&self, filter: &Filter, shallow: &[String], deep: &[String]) -> super::Result<Scan> {
        if let ([folder], []) = (shallow, deep) {
            if !folder.is_empty() {
                return Ok(self.list_one(filter, folder, &mut OpenFolders::default())?);
            }
        }
        let (start, on_the_way) = self.part_start(filter, shallow, deep);
        Ok(self.walk(filter, start, on_the_way)?)
    }

    fn folder_lister(&self) -> Box<super::FolderLister<'_>> {
        let mut open = OpenFolders::default();
        Box::new(move |filter, folder| match folder {
            "" => self.scan_part(filter, &[String::new()], &[]),
            _ => Ok(self.list_one(filter, folder, &mut open)?),
        })
    }

    fn stat(&self, path: &str) -> super::Result<Option<Entry>> {
        Ok(self.stat_path(path)?)
    }

    fn scan_progress(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicUsize>> {
        Some(self.scanned.clone())
    }

    fn write(
        &self,
        path: &str,
        data: &mut dyn Read,
        like: &Entry,
        replaces: Option<&Entry>,
        resume_from: u64,
    ) -> super::Result<Entry> {
        self.wrote.store(true, Ordering::Relaxed);
        let (dir, name) = self.parent_of(path)?;
        let resumable = like.size >= super::RESUMABLE;
        let temp = if resumable { super::resumable_temp(&self.tag, path, like) } else { self.temp_name(path) };
        let temp = split(&temp).1;
        let file = if resume_from > 0 {
            // O_NOFOLLOW: continue only the very file an earlier run left, never a planted link.
            // Not O_APPEND: a hole is skipped by writing past it (and Linux's pwrite appends
            // regardless of its offset under O_APPEND).
            let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let file = File::from(rustix::fs::openat(&dir, temp, flags, Mode::empty())?);
            if file.metadata()?.len() != resume_from {
                return Err(changed_since_scan("the partial copy to continue changed"));
            }
            file
        } else {
            if resumable {
                // A stale partial of the same content that is not worth continuing.
                let _ = unlink(&dir, temp);
            }
            create_new(&dir, temp)?
        };
        let written = (|| {
            // On the stack: a heap buffer this size is an mmap and fresh page faults per file.
            let mut buf = [0u8; 64 * 1024];
            let (mut at, mut skipped) = (resume_from, false);
            loop {
                HOLE_READ.set(None);
                let n = data.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                // A hole of a local source stays a hole: nothing is written there. Checked to be
                // zeros, so that the content never depends on the word of the reader.
                if HOLE_READ.take() == Some((at, n)) && buf[..n].iter().all(|&b| b == 0) {
                    skipped = true;
                } else {
                    file.write_all_at(&buf[..n], at)?;
                }
                at += n as u64;
            }
            if skipped {
                // A hole at the end is the file's length alone.
                file.set_len(at)?;
            }
            file.set_modified(system_time(like.mtime))?;
            if let Some(mode) = like.mode {
                file.set_permissions(fs::Permissions::from_mode(mode))?;
            }
            let meta = file.metadata()?;
            drop(file);
            // Compare, then mutate: the target must still be what the plan saw (the copy may
            // have taken a while). The rename is within the open folder.
            expect_at(&dir, name, replaces)?;
            self.still_in_place(&dir, split(path).0)?;
            rename_at(&dir, temp, &dir, name, replaces.is_none())?;
            Ok(meta)
        })();
        match written {
            Ok(meta) => Ok(entry_of(&meta).expect("a regular file")),
            Err(err) => {
                // A large copy's partial temp is kept for the next run to continue.
                if !resumable {
                    let _ = unlink(&dir, temp);
                }
                Err(err)
            }
        }
    }

    fn partial(&self, path: &str, like: &Entry) -> u64 {
        if like.size < super::RESUMABLE {
            return 0;
        }
        let temp = super::resumable_temp(&self.tag, path, like);
        let Ok((dir, name)) = self.parent_of(&temp) else { return 0 };
        match entry_at(&dir, name) {
            Ok(Some(entry)) if entry.kind == Kind::File && entry.size > 0 && entry.size < like.size => entry.size,
            _ => 0,
        }
    }

    fn open_from(&self, path: &str, expect: &Entry, offset: u64) -> super::Result<Box<dyn Read + Send + '_>> {
        let (dir, name) = self.parent_of(path)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            // O_NOFOLLOW met a link: the file was replaced by one since the scan.
            Err(Errno::LOOP) => return Err(changed_since_scan("now a symbolic link")),
            Err(err) => return Err(err.into()),
        };
        let meta = file.metadata()?;
        if !meta.is_file() || entry_of(&meta).is_none_or(|now| !now.same_metadata(expect)) {
            return Err(changed_since_scan("size or mtime differ"));
        }
        // Fewer blocks than bytes: it may have holes, which are then looked for (two seeks per
        // extent); any other file is read as it always was.
        let sparse = meta.blocks().saturating_mul(512) < meta.len();
        Ok(Box::new(CheckedReader { file, expect: *expect, read: offset, sparse, data_end: 0, hole_end: 0 }))
    }

    fn append(&self, path: &str, data: &mut dyn Read, expect: &Entry, like: &Entry) -> super::Result<Entry> {
        self.wrote.store(true, Ordering::Relaxed);
        let (dir, name) = self.parent_of(path)?;
        // O_NOFOLLOW: never through a link planted at the name.
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut file = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::LOOP) => return Err(changed_since_scan("now a symbolic link")),
            Err(Errno::NOENT) => return Err(changed_since_scan("gone")),
            Err(err) => return Err(err.into()),
        };
        let meta = file.metadata()?;
        if !meta.is_file() || entry_of(&meta).is_none_or(|now| !now.same_metadata(expect)) {
            return Err(changed_since_scan("size or mtime differ"));
        }
        io::copy(data, &mut file)?;
        file.set_modified(system_time(like.mtime))?;
        let meta = file.metadata()?;
        Ok(entry_of(&meta).expect("a regular file"))
    }

    fn mkdir(&self, path: &str) -> super::Result<()> {
        self.wrote.store(true, Ordering::Relaxed);
        let (dir, name) = self.parent_of(path)?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o777)) {
            Err(Errno::EXIST) => match entry_at(&dir, name)? {
                Some(entry) if entry.is_dir() => Ok(()),
                _ => Err(EndpointError::new(ErrorKind::Other, "something that is not a folder is in the way")),
            },
            other => Ok(other?),
        }
    }

    fn remove(&self, path: &str, expect: &Entry) -> super::Result<()> {
        self.wrote.store(true, Ordering::Relaxed);
        let (dir, name) = self.parent_of(path)?;
        expect_at(&dir, name, Some(expect))?;
        let flags = if expect.is_dir() { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        Ok(rustix::fs::unlinkat(&dir, name, flags)?)
    }

    fn rename(&self, from: &str, to: &str, expect: &Entry) -> super::Result<Entry> {
        self.wrote.store(true, Ordering::Relaxed);
        let ((from_dir, from_name), (to_dir, to_name)) = (self.parent_of(from)?, self.parent_of(to)?);
        expect_at(&from_dir, from_name, Some(expect))?;
        expect_at(&to_dir, to_name, None)?;
        rename_at(&from_dir, from_name, &to_dir, to_name, true)?;
        entry_at(&to_dir, to_name)?.ok_or_else(|| changed_since_scan("renamed file vanished"))
    }

    /// A relative path is opened in its open folder, as every other access is (so no path is
    /// too long, and no link on the way is followed); the file itself may be a link, as a
    /// drive's marker may be. An absolute path is the user's to resolve.
    fn read_check_file(&self, path: &str, limit: usize) -> super::Result<Option<Vec<u8>>> {
        let opened = if Path::new(path).is_absolute() {
            File::open(path)
        } else {
            self.parent_of(path.trim_end_matches('/')).and_then(|(dir, name)| {
                let flags = OFlags::RDONLY | OFlags::CLOEXEC;
                Ok(File::from(rustix::fs::openat(&dir, name, flags, Mode::empty())?))
            })
        };
        match opened {
            Ok(file) => {
                let mut bytes = Vec::new();
                file.take(limit as u64).read_to_end(&mut bytes)?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One syncfs of the root's filesystem per batch: far cheaper than an fsync per file.
    fn flush(&self) -> super::Result<()> {
        if !self.wrote.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let root = File::open(&self.root)?;
        Ok(rustix::fs::syncfs(&root)?)
    }

    fn remove_leftover(&self, path: &str) -> super::Result<()> {
        self.wrote.store(true, Ordering::Relaxed);
        let (dir, name) = self.parent_of(path)?;
        Ok(unlink(&dir, name)?)
    }
}

impl LocalEndpoint {
    /// Lists the folders in `start` (with everything below them when `true`). Each folder is
    /// opened in its parent's open folder with `O_NOFOLLOW`, and what it holds is stat'ed in
    /// it, never by path: a folder swapped for a link between being listed and being entered
    /// is taken in as the link it now is, never followed; and no path is too long to scan.
    fn walk(&self, filter: &Filter, start: Vec<(String, bool)>, found: Vec<(String, Entry)>) -> io::Result<Scan> {
        self.walk_knowing(filter, start, found, None)
    }

    /// `scan_part` of shallow folders, taking in without a stat every regular file `known`
    /// gives an entry for: for a caller that knows a name never changes content (a Maildir
    /// message is renamed when its flags change), so that listing a folder of a thousand
    /// known messages costs its listing, not a thousand stats.
    pub fn scan_part_known(
        &self,
        filter: &Filter,
        shallow: &[String],
        known: &dyn Fn(&str) -> Option<Entry>,
    ) -> super::Result<Scan> {
        let (start, on_the_way) = self.part_start(filter, shallow, &[]);
        Ok(self.walk_knowing(filter, start, on_the_way, Some(known))?)
    }

    /// Where a part scan starts: the shallow and deep folders that are folders, and the
    /// folders on the way to them, so that the plan sees their parents as they are. Only
    /// folders are listed: a changed path that is (now) a file or gone is seen in its
    /// parent's listing; a shallow folder that is gone is seen in its own parent's.
    fn part_start(&self, filter: &Filter, shallow: &[String], deep: &[String]) -> (Vec<Start>, Vec<(String, Entry)>) {
        let is_dir = |d: &String| d.is_empty() || matches!(self.stat_path(d), Ok(Some(e)) if e.is_dir());
        let mut start: Vec<(String, bool)> = shallow.iter().filter(|d| is_dir(d)).map(|d| (d.clone(), false)).collect();
        start.extend(deep.iter().filter(|d| !d.is_empty() && is_dir(d)).map(|d| (d.clone(), true)));
        let mut on_the_way: Vec<(String, Entry)> = Vec::new();
        for dir in start.iter().flat_map(|(d, _)| crate::core::model::ancestors(d).chain([d.as_str()])) {
            if !dir.is_empty() && !filter.hides(dir, Kind::Dir) {
                if let Ok(Some(entry)) = self.stat_path(dir) {
                    on_the_way.push((dir.to_string(), entry));
                }
            }
        }
        (start, on_the_way)
    }

    /// `scan_part` of one shallow folder, as a streamed scan asks for each: its parent opened
    /// once (or kept open in `open` since an earlier folder), for the folder's own entry and to
    /// open it in. What is not a folder (or cannot be reached) lists nothing, as in `part_start`.
    fn list_one(&self, filter: &Filter, folder: &str, open: &mut OpenFolders) -> io::Result<Scan> {
        // Gone (or not a folder now): nothing; unreachable otherwise: an issue, never taken
        // for an empty folder.
        let nothing = |error: Option<io::Error>| {
            let issues = error
                .filter(|e| !matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory))
                .map(|e| ScanIssue {
                    path: folder.to_string(),
                    message: format!("cannot read: {e}"),
                    kind: IssueKind::Unreadable,
                });
            Scan { snapshot: Snapshot::default(), issues: issues.into_iter().collect(), leftovers: Vec::new() }
        };
        let (parent_dir, name) = split(folder);
        let parent = match self.open_folder_in(open, parent_dir) {
            Ok(parent) => parent,
            Err(e) => return Ok(nothing(Some(e))),
        };
        let own = match entry_at(&parent, name) {
            Ok(Some(entry)) if entry.is_dir() => entry,
            Ok(_) => return Ok(nothing(None)),
            Err(e) => return Ok(nothing(Some(e))),
        };
        let found = if filter.hides(folder, Kind::Dir) { Vec::new() } else { vec![(folder.to_string(), own)] };
        self.walk_in(filter, vec![(folder.to_string(), false, Some(parent))], found, None)
    }

    fn walk_knowing(
        &self,
        filter: &Filter,
        start: Vec<(String, bool)>,
        found: Vec<(String, Entry)>,
        known: Option<Known>,
    ) -> io::Result<Scan> {
        let start = start.into_iter().map(|(dir, recursive)| (dir, recursive, None)).collect();
        self.walk_in(filter, start, found, known)
    }

    /// Lists each folder of `start` (in its open parent folder, when given).
    fn walk_in(
        &self,
        filter: &Filter,
        start: Vec<(String, bool, Option<Rc<OwnedFd>>)>,
        found: Vec<(String, Entry)>,
        known: Option<Known>,
    ) -> io::Result<Scan> {
        let mut walk = Walk {
            filter,
            known,
            tag: &self.tag,
            found,
            issues: Vec::new(),
            leftovers: Vec::new(),
            holders: HashSet::new(),
            not_folders: HashSet::new(),
        };
        // Each folder to list, with the open folder it is in (`None`: walked to from the root).
        // A folder stays open while folders in it are still to be listed.
        let mut folders = start;
        // One buffer for every listing, as large as glibc's readdir takes: a folder of a hundred
        // files is one getdents call.
        let mut buf = vec![MaybeUninit::uninit(); 32 * 1024];
        while let Some((dir, recursive, parent)) = folders.pop() {
            let Some(fd) = self.open_listing(&mut walk, &dir, parent)? else { continue };
            let mut listing = RawDir::new(&*fd, &mut buf);
            while let Some(item) = listing.next() {
                let item = match item {
                    Ok(item) => item,
                    // Removed while listed (so emptied first): as glibc's readdir, the end.
                    Err(Errno::NOENT) => break,
                    Err(err) => {
                        walk.unreadable(dir.clone(), format!("cannot read: {}", io::Error::from(err)));
                        break;
                    }
                };
                let bytes = item.file_name().to_bytes();
                if bytes == b"." || bytes == b".." {
                    continue;
                }
                let Ok(name) = std::str::from_utf8(bytes) else {
                    walk.holders.insert(dir.clone());
                    let path = format!("{dir}/{}", String::from_utf8_lossy(bytes)).trim_start_matches('/').to_string();
                    walk.issues.push(ScanIssue {
                        path,
                        message: "name is not valid UTF-8; skipped".into(),
                        kind: IssueKind::Uncarried,
                    });
                    continue;
                };
                if let Some(folder) = walk.take_in(&fd, &dir, name, item.file_type(), None) {
                    if recursive {
                        folders.push((folder, true, Some(Rc::clone(&fd))));
                    }
                }
            }
            self.scanned.store(walk.found.len(), Ordering::Relaxed);
            #[cfg(test)]
            if let Some(hook) = &self.after_listing {
                hook(&dir);
            }
        }
        Ok(walk.finish())
    }

    /// Opens the folder `dir` to list it: in `parent`, else walking from the root. `None` when
    /// it cannot be listed (`walk` has the issue, or what is there now); an error for the root.
    fn open_listing(&self, walk: &mut Walk, dir: &str, parent: Option<Rc<OwnedFd>>) -> io::Result<Option<Rc<OwnedFd>>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let opened = if dir.is_empty() {
            // The root itself may be a link (a mount point's alias): the user chose it.
            rustix::fs::open(&self.root, flags, Mode::empty())
        } else {
            let (parent_dir, name) = split(dir);
            let parent = match parent.map_or_else(|| self.open_folder(parent_dir).map(Rc::new), Ok) {
                Ok(parent) => parent,
                Err(err) => {
                    walk.unreadable(dir.to_string(), format!("cannot read: {err}"));
                    return Ok(None);
                }
            };
            match rustix::fs::openat(&*parent, name, flags | OFlags::NOFOLLOW, Mode::empty()) {
                // Listed as a folder, but no longer one (O_NOFOLLOW refused a link): swapped
                // since. Taken in as what is there now.
                Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                    walk.take_in_again(&parent, parent_dir, name);
                    return Ok(None);
                }
                opened => opened,
            }
        };
        match opened {
            Ok(fd) => Ok(Some(Rc::new(fd))),
            Err(err) if dir.is_empty() => Err(err.into()),
            Err(err) => {
                walk.unreadable(dir.to_string(), format!("cannot read: {}", io::Error::from(err)));
                Ok(None)
            }
        }
    }
}

/// What a scan has taken in so far.
struct Walk<'a> {
    filter: &'a Filter,
    /// Files whose entry the caller already knows, taken in without a stat.
    known: Option<Known<'a>>,
    tag: &'a str,
    found: Vec<(String, Entry)>,
    issues: Vec<ScanIssue>,
    leftovers: Vec<String>,
    /// Folders holding something left out: they cannot be emptied, so they are never deleted.
    holders: HashSet<String>,
    /// Listed as folders, found to be something else when entered: not folders after all.
    not_folders: HashSet<String>,
}

impl Walk<'_> {
    /// Takes in `name` of the folder `dir` (open as `fd`), of the type its listing gave, or
    /// its `stat` if it has one. Returns its path if it is a folder to enter.
    fn take_in(&mut self, fd: &OwnedFd, dir: &str, name: &str, listed: FileType, stat: Option<Stat>) -> Option<String> {
        let rel = join(dir, name);
        let (ft, stat) = match (listed, stat) {
            // A file system that does not say in its listings.
            (FileType::Unknown, None) => match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => (FileType::from_raw_mode(st.st_mode), Some(st)),
                Err(err) => {
                    self.unreadable(rel, format!("cannot stat: {}", io::Error::from(err)));
                    return None;
                }
            },
            known => known,
        };
        let temp = super::temp_owner(name, self.tag);
        match ft {
            FileType::Directory => {
                if temp.is_some() {
                    // A temp folder (an FTP endpoint's staged folder): left alone.
                    self.holders.insert(dir.to_string());
                } else if !self.filter.ignores(&rel, Kind::Dir) {
                    self.found.push((rel.clone(), Entry::dir()));
                    return Some(rel);
                } else {
                    self.holders.insert(dir.to_string());
                }
            }
            FileType::RegularFile => {
                if let Some(owner) = temp {
                    if owner == TempOwner::Own {
                        self.leftovers.push(rel);
                    }
                    self.holders.insert(dir.to_string());
                } else if self.filter.ignores(&rel, Kind::File) {
                    self.holders.insert(dir.to_string());
                } else if let Some(entry) = self.known.and_then(|known| known(&rel)) {
                    // The caller vouches for this file as it was (see `scan_part_known`).
                    self.found.push((rel, entry));
                } else {
                    let stat = stat.map_or_else(|| rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW), Ok);
                    match stat.map(|st| (FileType::from_raw_mode(st.st_mode), st)) {
                        Ok((FileType::RegularFile, st)) => {
                            self.found.push((rel, entry_of_stat(&st).expect("a regular file")));
                        }
                        // A file a moment ago: what this folder holds was not listed.
                        Ok((FileType::Directory, _)) => self.unreadable(rel, "changed while being scanned".into()),
                        Ok((ft, _)) => self.left_out(dir, rel, ft),
                        Err(err) => self.unreadable(rel, format!("cannot stat: {}", io::Error::from(err))),
                    }
                }
            }
            ft => {
                if !self.filter.ignores(&rel, Kind::File) {
                    self.left_out(dir, rel, ft);
                }
            }
        }
        None
    }

    /// Takes in `name` of the folder `dir` (open as `fd`) again: listed as a folder, it was no
    /// longer one when entered.
    fn take_in_again(&mut self, fd: &OwnedFd, dir: &str, name: &str) {
        let rel = join(dir, name);
        match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            // A folder again: what it held meanwhile was not listed.
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                self.unreadable(rel, "changed while being scanned".into());
            }
            Ok(st) => {
                self.not_folders.insert(rel);
                self.take_in(fd, dir, name, FileType::from_raw_mode(st.st_mode), Some(st));
            }
            Err(err) => self.unreadable(rel, format!("cannot read: {}", io::Error::from(err))),
        }
    }

    /// A symbolic link or special file: never followed, never synced, and its folder is never
    /// deleted.
    fn left_out(&mut self, dir: &str, rel: String, ft: FileType) {
        self.holders.insert(dir.to_string());
        let what = if ft == FileType::Symlink { "symbolic link, not followed" } else { "not a regular file or folder" };
        self.issues.push(ScanIssue { path: rel, message: format!("{what}; left alone"), kind: IssueKind::Excluded });
    }

    fn unreadable(&mut self, path: String, message: String) {
        self.issues.push(ScanIssue { path, message, kind: IssueKind::Unreadable });
    }

    fn finish(mut self) -> Scan {
        if !self.not_folders.is_empty() {
            self.found.retain(|(path, entry)| !(entry.is_dir() && self.not_folders.contains(path)));
        }
        super::mark_unsynced(&mut self.found, &self.holders);
        Scan { snapshot: Snapshot::from_unique(self.found), issues: self.issues, leftovers: self.leftovers }
    }
}

thread_local! {
    /// The hole (offset, length) the last read of a local file on this thread returned as
    /// zeros: how a local source tells a local write, which it reaches only as `dyn Read`
    /// through the executor's hashing reader, where not to write. A write clears it before
    /// each read, so it only ever describes the read just made; any other reader leaves it
    /// clear, so a copy from FTP is written whole.
    static HOLE_READ: std::cell::Cell<Option<(u64, usize)>> = const { std::cell::Cell::new(None) };
}

/// Reads a file and, at its end, checks it is still the size and mtime the plan saw.
///
/// A sparse file's holes are not read but returned as zeros (so its content, and its hash, are
/// the whole logical file), one read never spanning data and hole, and each told to
/// [`HOLE_READ`].
struct CheckedReader {
    file: File,
    expect: Entry,
    read: u64,
    /// The file may have holes: look for them (`SEEK_DATA`/`SEEK_HOLE`).
    sparse: bool,
    /// Where the data extent `read` is in ends, once looked up.
    data_end: u64,
    /// Where the hole `read` is in ends, once looked up.
    hole_end: u64,
}

impl CheckedReader {
    /// With `read` in a hole, the bytes of it left (never past the size the plan saw); `None`
    /// in data, with `data_end` where that data ends.
    fn hole_left(&mut self) -> io::Result<Option<u64>> {
        use rustix::fs::{seek, SeekFrom};
        if self.read < self.hole_end {
            return Ok(Some(self.hole_end - self.read));
        }
        if self.read < self.data_end {
            return Ok(None);
        }
        match seek(&self.file, SeekFrom::Data(self.read)) {
            Ok(data) if data > self.read => self.hole_end = data.min(self.expect.size),
            Ok(_) => {
                match seek(&self.file, SeekFrom::Hole(self.read)) {
                    Ok(end) if end > self.read => self.data_end = end,
                    // Changed under the read (its end check says so), or cannot say: data.
                    _ => self.sparse = false,
                }
                return Ok(None);
            }
            // No data after `read`: a hole to the end.
            Err(Errno::NXIO) => self.hole_end = self.expect.size,
            // A file system that cannot say: all of it is data.
            Err(_) => {
                self.sparse = false;
                return Ok(None);
            }
        }
        Ok(Some(self.hole_end - self.read).filter(|&n| n > 0))
    }
}

impl Read for CheckedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut limit = buf.len();
        if self.sparse && self.read < self.expect.size && !buf.is_empty() {
            match self.hole_left()? {
                Some(hole) => {
                    let n = buf.len().min(usize::try_from(hole).unwrap_or(usize::MAX));
                    buf[..n].fill(0);
                    HOLE_READ.set(Some((self.read, n)));
                    self.read += n as u64;
                    return Ok(n);
                }
                None if self.sparse => {
                    limit = limit.min(usize::try_from(self.data_end - self.read).unwrap_or(usize::MAX));
                }
                None => {}
            }
        }
        // At its offset, not the file's position: the seeks above move that.
        let n = self.file.read_at(&mut buf[..limit], self.read)?;
        self.read += n as u64;
        if n == 0 || self.read > self.expect.size {
            let now = entry_of(&self.file.metadata()?);
            if self.read != self.expect.size || now.is_none_or(|now| !now.same_metadata(&self.expect)) {
                return Err(changed_while_copying().into());
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn append_adds_at_the_end_only_to_the_file_expected() {
        let dir = tempfile::tempdir().unwrap();
        let end = LocalEndpoint::new(dir.path().to_path_buf(), "00000000");
        std::fs::write(dir.path().join("cache"), b"head").unwrap();
        let was = end.stat("cache").unwrap().unwrap();
        let like = Entry::file(9, 1_700_000_000_000_000_000);
        let now = end.append("cache", &mut &b"-tail"[..], &was, &like).unwrap();
        assert_eq!(std::fs::read(dir.path().join("cache")).unwrap(), b"head-tail");
        assert_eq!((now.size, now.mtime), (9, like.mtime));
        // Not the file expected (it changed since): nothing written.
        let err = end.append("cache", &mut &b"!"[..], &was, &like).unwrap_err();
        assert_eq!(err.kind(), crate::endpoint::ErrorKind::ChangedSinceScan);
        assert_eq!(std::fs::read(dir.path().join("cache")).unwrap(), b"head-tail");
        assert!(end.append("missing", &mut &b"x"[..], &was, &like).is_err());
    }

    fn endpoint() -> (tempfile::TempDir, LocalEndpoint) {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = LocalEndpoint::new(dir.path().to_path_buf(), "0123abcd");
        (dir, endpoint)
    }

    /// A reader that, on its first read, swaps the folder `a` of `root` for a symlink to
    /// `outside`: the folder changes under a write in progress.
    struct Swapper<'a> {
        root: &'a Path,
        outside: &'a Path,
        swapped: bool,
    }

    impl Read for Swapper<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.swapped {
                return Ok(0);
            }
            self.swapped = true;
            fs::rename(self.root.join("a"), self.root.join("a.moved"))?;
            std::os::unix::fs::symlink(self.outside, self.root.join("a"))?;
            buf[..4].copy_from_slice(b"data");
            Ok(4)
        }
    }

    #[test]
    fn a_folder_swapped_for_a_link_mid_write_never_sends_the_write_outside() {
        let (dir, ep) = endpoint();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        let mut data = Swapper { root: dir.path(), outside: outside.path(), swapped: false };
        // The write went on in the folder it opened (now "a.moved"), but is not renamed into
        // place there: that folder is no longer "a". Its temp file is removed.
        let err = ep.write("a/f", &mut data, &Entry::file(4, 1_000_000_000), None, 0).unwrap_err();
        assert!(err.to_string().contains("a is a symbolic link"), "{err}");
        assert_eq!(fs::read_dir(dir.path().join("a.moved")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "a write went through the link");
        // Every later write through the link is refused, naming it.
        let err = ep.write("a/g", &mut &b"x"[..], &Entry::file(1, 0), None, 0).unwrap_err();
        assert!(err.to_string().contains("a is a symbolic link"), "{err}");
        let err = ep.mkdir("a/sub").unwrap_err();
        assert!(err.to_string().contains("a is a symbolic link"), "{err}");
        fs::write(outside.path().join("f"), b"data").unwrap();
        let err = ep.open("a/f", &Entry::file(4, 1_000_000_000)).err().expect("a read through the link");
        assert!(err.to_string().contains("a is a symbolic link"), "{err}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1, "only the file this test put there");
    }

    fn no_filter() -> Filter {
        Filter::new([("", ""); 0], true).unwrap()
    }

    #[test]
    fn a_folder_swapped_for_a_link_mid_scan_is_taken_in_as_the_link_never_followed() {
        // Cause: the scan listed folders by path (`fs::read_dir`), so a folder swapped for a link
        // between being listed and being entered was followed, and the tree outside listed.
        let (dir, mut ep) = endpoint();
        let (outside, aside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/f"), "inside").unwrap();
        fs::create_dir(outside.path().join("secret")).unwrap();
        fs::write(outside.path().join("secret/key"), "outside").unwrap();
        fs::write(outside.path().join("g"), "outside").unwrap();
        let (root, target, moved) = (dir.path().to_path_buf(), outside.path().to_path_buf(), aside.path().join("b"));
        // Once "a" is listed ("a/b" seen as a folder) and before "a/b" is entered.
        ep.after_listing = Some(Box::new(move |listed| {
            if listed == "a" {
                fs::rename(root.join("a/b"), &moved).unwrap();
                std::os::unix::fs::symlink(&target, root.join("a/b")).unwrap();
            }
        }));
        let scan = ep.scan(&no_filter()).unwrap();
        let listed: Vec<(&str, Kind)> = scan.snapshot.iter().map(|(path, e)| (path.as_str(), e.kind)).collect();
        assert_eq!(listed, [("a", Kind::Dir), ("a/f", Kind::File)], "listed outside the root, or lost a/f");
        let link = ScanIssue {
            path: "a/b".into(),
            message: "symbolic link, not followed; left alone".into(),
            kind: IssueKind::Excluded,
        };
        assert_eq!(scan.issues, [link]);
        // Exactly as a scan that finds the link there from the start: "a" holds it, so it is
        // never deleted.
        ep.after_listing = None;
        let again = ep.scan(&no_filter()).unwrap();
        assert_eq!(scan.snapshot, again.snapshot);
        assert_eq!(scan.issues, again.issues);
        assert!(scan.snapshot.get("a").unwrap().holds_unsynced);
    }

    #[test]
    fn a_folder_lister_lists_each_folder_as_its_part_scan_does_whatever_it_kept_open() {
        let (dir, ep) = endpoint();
        let outside = tempfile::tempdir().unwrap();
        for folder in ["a/b/c", "a/d", "e/f", "g"] {
            fs::create_dir_all(dir.path().join(folder)).unwrap();
            fs::write(dir.path().join(folder).join("file"), folder).unwrap();
        }
        fs::create_dir(outside.path().join("y")).unwrap();
        fs::write(outside.path().join("y/secret"), "outside").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("e/link")).unwrap();
        let filter = no_filter();
        let mut list = ep.folder_lister();
        // Down, across, back up to another branch, through a link, into what is gone.
        for folder in
            ["", "a", "a/b", "a/b/c", "a/d", "e", "e/f", "a/b/c", "g", "e/link", "e/link/y", "a/b", "gone/x", "a/d"]
        {
            let listed = list(&filter, folder).unwrap();
            let alone = ep.scan_part(&filter, &[folder.to_string()], &[]).unwrap();
            assert_eq!(listed.snapshot, alone.snapshot, "{folder}");
            assert_eq!(listed.issues, alone.issues, "{folder}");
            assert!(
                listed.snapshot.iter().all(|(path, _)| !path.contains("secret")),
                "{folder} listed outside the root"
            );
        }
        let c = list(&filter, "a/b/c").unwrap();
        let paths: Vec<&str> = c.snapshot.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a/b/c", "a/b/c/file"]);
        let through = list(&filter, "e/link/y").unwrap();
        assert!(through.snapshot.is_empty());
        assert!(through.issues[0].message.contains("e/link is a symbolic link"), "{:?}", through.issues);
    }

    #[test]
    fn a_folder_lister_keeps_a_bounded_number_of_folders_open_however_deep() {
        // Cause (review): every folder on the way to the last one listed was kept open, so a
        // tree 1,100 levels deep needed 1,100 descriptors, past the usual limit of 1,024.
        let (dir, ep) = endpoint();
        let deep = vec!["d"; 1100].join("/");
        fs::create_dir_all(dir.path().join(&deep)).unwrap();
        fs::write(dir.path().join(&deep).join("f"), "x").unwrap();
        let (filter, mut open, mut at) = (no_filter(), OpenFolders::default(), String::new());
        for _ in 0..1100 {
            at = join(&at, "d");
            let listed = ep.list_one(&filter, &at, &mut open).unwrap();
            assert!(listed.issues.is_empty(), "{:?}", listed.issues);
            assert!(open.0.len() <= KEPT_OPEN, "{} kept open", open.0.len());
        }
        let bottom = ep.list_one(&filter, &deep, &mut open).unwrap();
        assert_eq!(bottom.snapshot, ep.scan_part(&filter, std::slice::from_ref(&deep), &[]).unwrap().snapshot);
        assert_eq!(bottom.snapshot.get(&format!("{deep}/f")).map(|e| e.size), Some(1));
    }

    #[test]
    fn a_folder_lister_never_lists_a_kept_folder_moved_out_of_the_root() {
        // Cause (review): kept folders were reused by path without a look: one moved out of the
        // root was still listed under its old path, with what is now outside.
        let (dir, ep) = endpoint();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        fs::create_dir_all(dir.path().join("a/b/e")).unwrap();
        fs::write(dir.path().join("a/b/e/file"), "in the root").unwrap();
        let filter = no_filter();
        let mut list = ep.folder_lister();
        list(&filter, "a/b/c").unwrap(); // keeps "", a and a/b open
        fs::rename(dir.path().join("a"), outside.path().join("a")).unwrap();
        fs::write(outside.path().join("a/b/e/secret"), "outside").unwrap();
        let listed = list(&filter, "a/b/e").unwrap();
        assert_eq!(listed.snapshot, ep.scan_part(&filter, &["a/b/e".to_string()], &[]).unwrap().snapshot);
        assert!(listed.snapshot.is_empty(), "{:?}", listed.snapshot);
        // Put back, kept open again, then a/b moved aside and another folder made in its
        // place (a/ itself stays): what is there now is listed.
        fs::rename(outside.path().join("a"), dir.path().join("a")).unwrap();
        list(&filter, "a/b/c").unwrap();
        fs::rename(dir.path().join("a/b"), dir.path().join("a/old-b")).unwrap();
        fs::create_dir_all(dir.path().join("a/b/e")).unwrap();
        fs::write(dir.path().join("a/b/e/new"), "new").unwrap();
        let listed = list(&filter, "a/b/e").unwrap();
        let paths: Vec<&str> = listed.snapshot.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a/b/e", "a/b/e/new"]);
    }

    #[test]
    fn a_tree_deeper_than_path_max_is_scanned() {
        let (dir, ep) = endpoint();
        // 20 folders of 250 bytes: no path of the bottom file fits in PATH_MAX (4096 bytes), so
        // the tree is built, as it is scanned, one open folder at a time.
        let name = "d".repeat(250);
        let mut fd = rustix::fs::open(dir.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..20 {
            rustix::fs::mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            fd = rustix::fs::openat(&fd, name.as_str(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        }
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        File::from(rustix::fs::openat(&fd, "bottom", flags, Mode::from_raw_mode(0o644)).unwrap())
            .write_all(b"at the bottom")
            .unwrap();
        let bottom = format!("{}bottom", format!("{name}/").repeat(20));
        assert!(bottom.len() > 4096);
        let scan = ep.scan(&no_filter()).unwrap();
        assert!(scan.issues.is_empty(), "{:?}", scan.issues);
        assert_eq!(scan.snapshot.len(), 21);
        assert_eq!(scan.snapshot.get(&bottom).map(|e| (e.kind, e.size)), Some((Kind::File, 13)));
    }

    #[test]
    fn a_file_growing_while_read_fails_the_read() {
        let (dir, ep) = endpoint();
        fs::write(dir.path().join("f"), vec![1u8; 10_000]).unwrap();
        let entry = ep.stat("f").unwrap().unwrap();
        let mut reader = ep.open("f", &entry).unwrap();
        let mut buf = [0u8; 4096];
        reader.read_exact(&mut buf).unwrap();
        fs::OpenOptions::new().append(true).open(dir.path().join("f")).unwrap().write_all(b"more").unwrap();
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("changed while being read"), "{err}");
    }

    #[test]
    fn a_sparse_file_written_into_while_read_fails_the_read() {
        // Its holes are not read but given as zeros: the end check still sees the change.
        let (dir, ep) = endpoint();
        let file = File::create(dir.path().join("f")).unwrap();
        file.write_all_at(b"data", 1 << 20).unwrap();
        file.set_len(4 << 20).unwrap();
        filetime::set_file_mtime(dir.path().join("f"), FileTime::from_unix_time(1_600_000_000, 0)).unwrap();
        let entry = ep.stat("f").unwrap().unwrap();
        let mut reader = ep.open("f", &entry).unwrap();
        let mut buf = vec![0u8; 4096];
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(HOLE_READ.get(), Some((0, 4096)), "the leading hole was read");
        file.write_all_at(b"late", 3 << 20).unwrap();
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
    fn a_hole_is_skipped_only_where_the_reader_said_so_and_gave_zeros() {
        // A reader that calls every read a hole: zeros are skipped, anything else written.
        struct Claims<'a>(&'a [&'a [u8]], u64);
        impl Read for Claims<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else { return Ok(0) };
                buf[..first.len()].copy_from_slice(first);
                HOLE_READ.set(Some((self.1, first.len())));
                (self.0, self.1) = (rest, self.1 + first.len() as u64);
                Ok(first.len())
            }
        }
        let (dir, ep) = endpoint();
        let zeros = vec![0u8; 64 * 1024];
        let parts: [&[u8]; 4] = [&zeros, b"not zeros", &zeros, &zeros];
        let size = 3 * zeros.len() as u64 + 9;
        ep.write("f", &mut Claims(&parts, 0), &Entry::file(size, 0), None, 0).unwrap();
        let written = fs::read(dir.path().join("f")).unwrap();
        assert_eq!(written, [&zeros[..], b"not zeros", &zeros, &zeros].concat());
        // Only the few blocks around "not zeros" are allocated; the trailing hole is its length.
        assert!(fs::metadata(dir.path().join("f")).unwrap().blocks() * 512 < size / 2);
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
