//! Endpoints for tests: a tree held in memory ([`MemoryEndpoint`]) and a wrapper that makes
//! chosen calls of any endpoint fail, or changes things just before them ([`Faulty`]).
//!
//! For tests only, yet public and always built, so that the integration tests in `tests/` can
//! drive the executor and the engine with no file system and no FTP server. Behaviour is added
//! by wrapping (STYLE.md 4, as rustic's dry-run backend and syncthing's `errorfs`): the memory
//! endpoint keeps the [`Endpoint`] contract faithfully, compare-then-mutate included, and every
//! fault comes from a [`Faulty`] around it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{
    changed_since_scan, changed_while_copying, mark_unsynced, resumable_temp, still_as_planned, temp_owner, Endpoint,
    EndpointError, ErrorKind, Result, Scan, TempOwner, RESUMABLE,
};
use crate::core::filter::Filter;
use crate::core::model::{ancestors, is_inside, parent, sibling, split, Entry, Hash, Kind, Mtime, Snapshot};

/// The pair tag a [`MemoryEndpoint`] names its temp files with unless told another.
pub const TAG: &str = "0123abcd";

/// The connections of a [`MemoryEndpoint::holding`] endpoint.
struct Pool {
    counts: Mutex<PoolCounts>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolCounts {
    busy: usize,
    waiting: usize,
    readers: usize,
}

impl Pool {
    fn counts(&self) -> MutexGuard<'_, PoolCounts> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection taken from a [`Pool`], given back when dropped.
struct Held {
    endpoint: MemoryEndpoint,
    /// Held by a reader (counted in [`PoolCounts::readers`]).
    reader: bool,
}

impl Held {
    fn for_reader(mut self) -> Held {
        self.reader = true;
        self.endpoint.shared.pool.as_ref().expect("held from a pool").counts().readers += 1;
        self
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let pool = self.endpoint.shared.pool.as_ref().expect("held from a pool");
        let mut counts = pool.counts();
        counts.busy -= 1;
        if self.reader {
            counts.readers -= 1;
        }
        pool.freed.notify_all();
    }
}

/// One file or folder of a [`MemoryEndpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File { data: Vec<u8>, mtime: Mtime, mode: Option<u32> },
    Dir,
}

impl Node {
    /// The node as a scan reports it.
    pub fn entry(&self) -> Entry {
        match self {
            Node::File { data, mtime, mode } => Entry { mode: *mode, ..Entry::file(data.len() as u64, *mtime) },
            Node::Dir => Entry::dir(),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Node::File { .. } => Kind::File,
            Node::Dir => Kind::Dir,
        }
    }
}

/// Every node by relative path. Invariant: the parent of every node is a folder node (the
/// root, "", is implicit).
type Nodes = BTreeMap<String, Node>;

/// An endpoint whose tree lives in memory. Cloning it gives another handle on the same tree,
/// so a test keeps one to build the tree, to change it behind the engine's back between scan
/// and apply, and to look at the result, while the engine holds another.
///
/// It keeps the [`Endpoint`] contract as the local endpoint does: atomic writes through a temp
/// file (`.pairsync-<tag>-…tmp`, hidden by its scan), compare-then-mutate before every write,
/// remove and rename, readers that fail when their file changes under them, staged folders
/// when made with [`MemoryEndpoint::staging`]. Its root always exists; it never fails on its
/// own (wrap it in [`Faulty`] for that).
#[derive(Clone)]
pub struct MemoryEndpoint {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    tag: String,
    stages: bool,
    connections: usize,
    /// Set by [`MemoryEndpoint::holding`]: the connections calls take, as an FTP pool's.
    pool: Option<Pool>,
    nodes: Mutex<Nodes>,
    counter: AtomicU64,
    flushes: AtomicU64,
}

impl MemoryEndpoint {
    /// An empty tree, shown as `url`.
    pub fn new(url: &str) -> MemoryEndpoint {
        MemoryEndpoint {
            shared: Arc::new(Shared {
                url: url.to_string(),
                tag: TAG.to_string(),
                stages: false,
                connections: 1,
                pool: None,
                nodes: Mutex::new(BTreeMap::new()),
                counter: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
            }),
        }
    }

    /// Names temp files with this pair tag (8 hex digits) instead of [`TAG`].
    pub fn with_tag(mut self, tag: &str) -> MemoryEndpoint {
        self.configure().tag = tag.to_string();
        self
    }

    /// Says it takes `n` transfers (and listings) at once ([`Endpoint::parallelism`]), as an
    /// FTP endpoint with `n` connections does.
    pub fn with_connections(mut self, n: usize) -> MemoryEndpoint {
        self.configure().connections = n;
        self
    }

    /// Says it would rather stage new folders ([`Endpoint::stages_folders`]), as an FTP
    /// endpoint does; the staging methods work either way.
    pub fn staging(mut self) -> MemoryEndpoint {
        self.configure().stages = true;
        self
    }

    /// Makes it hold its connections ([`MemoryEndpoint::with_connections`], 1 unless told)
    /// as an FTP endpoint does ([`Endpoint::holds_connections`]): every call that would talk to
    /// a server but the listings takes one for the call, waiting while none is free, and a
    /// reader from `open` keeps one until it is dropped (an FTP download gives its connection
    /// back at the end of the file; holding it to the drop is the stricter model). Tests of
    /// what waits on what look on through [`MemoryEndpoint::readers_open`] and
    /// [`MemoryEndpoint::waiting`].
    pub fn holding(mut self) -> MemoryEndpoint {
        self.configure().pool = Some(Pool { counts: Mutex::new(PoolCounts::default()), freed: Condvar::new() });
        self
    }

    /// Readers open now on a [`MemoryEndpoint::holding`] endpoint.
    pub fn readers_open(&self) -> usize {
        self.shared.pool.as_ref().map_or(0, |pool| pool.counts().readers)
    }

    /// Calls waiting now for a free connection of a [`MemoryEndpoint::holding`] endpoint.
    pub fn waiting(&self) -> usize {
        self.shared.pool.as_ref().map_or(0, |pool| pool.counts().waiting)
    }

    /// A connection for one call (none to take unless [`MemoryEndpoint::holding`]).
    fn connection(&self) -> Option<Held> {
        let pool = self.shared.pool.as_ref()?;
        // As an FTP endpoint's, at least one.
        let connections = self.shared.connections.max(1);
        let mut counts = pool.counts();
        if counts.busy >= connections {
            counts.waiting += 1;
            while counts.busy >= connections {
                counts = pool.freed.wait(counts).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            counts.waiting -= 1;
        }
        counts.busy += 1;
        Some(Held { endpoint: self.clone(), reader: false })
    }

    fn configure(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared).expect("a memory endpoint is configured before it is shared")
    }

    fn lock(&self) -> MutexGuard<'_, Nodes> {
        // A test that panicked while holding it must not hide the tree from the next look.
        self.shared.nodes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a file (mode 0644), creating its folders and replacing a file already there;
    /// returns its entry.
    pub fn put(&self, path: &str, bytes: impl AsRef<[u8]>, mtime: Mtime) -> Entry {
        let mut nodes = self.lock();
        create_folders(&mut nodes, parent(path).unwrap_or(""));
        let node = Node::File { data: bytes.as_ref().to_vec(), mtime, mode: Some(0o644) };
        assert!(!matches!(nodes.get(path), Some(Node::Dir)), "put {path}: a folder is there");
        let entry = node.entry();
        nodes.insert(path.to_string(), node);
        entry
    }

    /// Creates the folder `path` and its parents.
    pub fn mkdir_all(&self, path: &str) {
        create_folders(&mut self.lock(), path);
    }

    /// Sets the mtime of the file `path`, content unchanged (a touch).
    pub fn touch(&self, path: &str, mtime: Mtime) {
        match self.lock().get_mut(path) {
            Some(Node::File { mtime: m, .. }) => *m = mtime,
            other => panic!("touch {path}: not a file ({other:?})"),
        }
    }

    /// Removes `path` with everything below it, if it is there.
    pub fn remove_all(&self, path: &str) {
        remove_subtree(&mut self.lock(), path);
    }

    /// Moves `from` (with everything below it) to `to`, replacing nothing.
    pub fn move_to(&self, from: &str, to: &str) {
        let mut nodes = self.lock();
        assert!(nodes.contains_key(from) && !nodes.contains_key(to), "move {from} -> {to}");
        create_folders(&mut nodes, parent(to).unwrap_or(""));
        move_subtree(&mut nodes, from, to);
    }

    /// The content of the file `path`, or `None` (nothing there, or a folder).
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        match self.lock().get(path) {
            Some(Node::File { data, .. }) => Some(data.clone()),
            _ => None,
        }
    }

    /// The entry at `path` as a scan would report it, or `None`.
    pub fn entry(&self, path: &str) -> Option<Entry> {
        self.lock().get(path).map(Node::entry)
    }

    /// The whole tree, temp files included.
    pub fn tree(&self) -> BTreeMap<String, Node> {
        self.lock().clone()
    }

    /// The paths of temp files and folders in the tree (any pair's).
    pub fn temps(&self) -> Vec<String> {
        self.lock().keys().filter(|path| temp_owner(split(path).1, "00000000").is_some()).cloned().collect()
    }

    /// How many times [`Endpoint::flush`] was called.
    pub fn flushes(&self) -> u64 {
        self.shared.flushes.load(Ordering::SeqCst)
    }

    fn temp_name(&self, rel: &str) -> String {
        let n = self.shared.counter.fetch_add(1, Ordering::Relaxed);
        sibling(rel, &format!(".pairsync-{}-mem-{n}.tmp", self.shared.tag))
    }

    /// Every entry the scan admits (the filter and temp rules of the local endpoint), with
    /// this pair's temp files and folders as leftovers.
    fn walk(&self, filter: &Filter) -> Scan {
        let nodes = self.lock();
        let (mut found, mut leftovers) = (Vec::new(), Vec::new());
        // Folders holding something left out: they cannot be emptied, so they are never deleted.
        let mut holders = HashSet::new();
        // Folders listed; what lies in a folder left out is not seen at all. A folder sorts
        // before everything inside it, so one pass in order sees each folder first.
        let mut listed: HashSet<&str> = HashSet::new();
        for (path, node) in nodes.iter() {
            let (dir, name) = split(path);
            if !dir.is_empty() && !listed.contains(dir) {
                continue;
            }
            if let Some(owner) = temp_owner(name, &self.shared.tag) {
                if owner == TempOwner::Own {
                    leftovers.push(path.clone());
                }
                holders.insert(dir.to_string());
            } else if filter.ignores(path, node.kind()) {
                holders.insert(dir.to_string());
            } else {
                found.push((path.clone(), node.entry()));
                if node.kind() == Kind::Dir {
                    listed.insert(path);
                }
            }
        }
        mark_unsynced(&mut found, &holders);
        Scan { snapshot: Snapshot::from_unique(found), issues: Vec::new(), leftovers }
    }
}

/// Creates the folder `dir` and its parents; panics if a file is in the way (a test's mistake).
fn create_folders(nodes: &mut Nodes, dir: &str) {
    if dir.is_empty() {
        return;
    }
    let mut all: Vec<&str> = ancestors(dir).collect();
    all.reverse();
    all.push(dir);
    for folder in all {
        match nodes.get(folder) {
            Some(Node::Dir) => {}
            Some(Node::File { .. }) => panic!("{folder} is a file, not a folder"),
            None => {
                nodes.insert(folder.to_string(), Node::Dir);
            }
        }
    }
}

/// The folder `dir` ("" for the root) exists.
fn folder_exists(nodes: &Nodes, dir: &str) -> Result<()> {
    match nodes.get(dir) {
        _ if dir.is_empty() => Ok(()),
        Some(Node::Dir) => Ok(()),
        Some(Node::File { .. }) => Err(EndpointError::new(ErrorKind::Other, format!("{dir} is not a folder"))),
        None => Err(not_found(dir)),
    }
}

fn not_found(path: &str) -> EndpointError {
    EndpointError::new(ErrorKind::NotFound, format!("{path}: no such file or folder"))
}

fn entry_at(nodes: &Nodes, path: &str) -> Option<Entry> {
    nodes.get(path).map(Node::entry)
}

/// The paths strictly inside the folder `dir`.
fn below(nodes: &Nodes, dir: &str) -> Vec<String> {
    let prefix = format!("{dir}/");
    nodes.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()).collect()
}

fn move_subtree(nodes: &mut Nodes, from: &str, to: &str) {
    for key in std::iter::once(from.to_string()).chain(below(nodes, from)) {
        if let Some(node) = nodes.remove(&key) {
            nodes.insert(format!("{to}{}", &key[from.len()..]), node);
        }
    }
}

fn remove_subtree(nodes: &mut Nodes, path: &str) {
    for key in below(nodes, path) {
        nodes.remove(&key);
    }
    nodes.remove(path);
}

/// Reads `data` to its end; the bytes read before an error are kept too.
fn read_all(data: &mut dyn Read) -> (Vec<u8>, io::Result<()>) {
    let mut bytes = Vec::new();
    let result = data.read_to_end(&mut bytes).map(|_| ());
    (bytes, result)
}

impl Endpoint for MemoryEndpoint {
    fn url(&self) -> String {
        self.shared.url.clone()
    }

    fn check_root(&self) -> Result<()> {
        Ok(())
    }

    fn scan(&self, filter: &Filter) -> Result<Scan> {
        Ok(self.walk(filter))
    }

    /// As the local endpoint lists them: the entries directly in each shallow folder,
    /// everything below each deep folder, and the folders on the way.
    fn scan_part(&self, filter: &Filter, shallow: &[String], deep: &[String]) -> Result<Scan> {
        let is_dir = |d: &String| d.is_empty() || matches!(self.entry(d), Some(e) if e.is_dir());
        let shallow: HashSet<&str> = shallow.iter().filter(|d| is_dir(d)).map(String::as_str).collect();
        let deep: Vec<&str> = deep.iter().filter(|d| !d.is_empty() && is_dir(d)).map(String::as_str).collect();
        let on_the_way: HashSet<&str> =
            shallow.iter().chain(&deep).flat_map(|d| ancestors(d).chain([*d])).filter(|d| !d.is_empty()).collect();
        let listed =
            |path: &str| shallow.contains(parent(path).unwrap_or("")) || deep.iter().any(|d| is_inside(path, d));
        let Scan { snapshot, issues, leftovers } = self.walk(filter);
        let mut snapshot = snapshot;
        snapshot.retain(|path, _| listed(path) || on_the_way.contains(path.as_str()));
        let leftovers = leftovers.into_iter().filter(|path| listed(path)).collect();
        Ok(Scan { snapshot, issues, leftovers })
    }

    fn stat(&self, path: &str) -> Result<Option<Entry>> {
        let _connection = self.connection();
        Ok(self.entry(path))
    }

    fn write(
        &self,
        path: &str,
        data: &mut dyn Read,
        like: &Entry,
        replaces: Option<&Entry>,
        resume_from: u64,
    ) -> Result<Entry> {
        let _connection = self.connection();
        let resumable = like.size >= RESUMABLE;
        let temp = if resumable { resumable_temp(&self.shared.tag, path, like) } else { self.temp_name(path) };
        {
            let mut nodes = self.lock();
            folder_exists(&nodes, split(path).0)?;
            if resume_from > 0 {
                match nodes.get(&temp) {
                    Some(Node::File { data, .. }) if data.len() as u64 == resume_from => {}
                    _ => return Err(changed_since_scan("the partial copy to continue changed")),
                }
            } else {
                if resumable && matches!(nodes.get(&temp), Some(Node::File { .. })) {
                    // A stale partial of the same content that is not worth continuing.
                    nodes.remove(&temp);
                }
                if nodes.contains_key(&temp) {
                    return Err(EndpointError::new(ErrorKind::Other, format!("{temp}: the temp name is taken")));
                }
                nodes.insert(temp.clone(), Node::File { data: Vec::new(), mtime: 0, mode: Some(0o600) });
            }
        }
        // Read with the tree unlocked: the reader may be this endpoint's own, and the copy may
        // take a while, during which anything may change here.
        let (bytes, read) = read_all(data);
        let mut nodes = self.lock();
        let written = (|| -> Result<Entry> {
            let Some(Node::File { data, mtime, mode }) = nodes.get_mut(&temp) else {
                return Err(changed_since_scan("the temp file vanished"));
            };
            data.extend_from_slice(&bytes);
            read?;
            *mtime = like.mtime;
            if like.mode.is_some() {
                *mode = like.mode;
            }
            // Compare, then mutate: the target must still be what the plan saw. (The temp file
            // lies in the target's folder: it went wherever that folder went.)
            still_as_planned(entry_at(&nodes, path), replaces)?;
            if matches!(nodes.get(path), Some(Node::Dir)) {
                return Err(EndpointError::new(ErrorKind::Other, "a folder is in the way"));
            }
            let node = nodes.remove(&temp).expect("checked above");
            let entry = node.entry();
            nodes.insert(path.to_string(), node);
            Ok(entry)
        })();
        // A large copy's partial temp is kept for the next run to continue.
        if written.is_err() && !resumable && matches!(nodes.get(&temp), Some(Node::File { .. })) {
            nodes.remove(&temp);
        }
        written
    }

    fn partial(&self, path: &str, like: &Entry) -> u64 {
        if like.size < RESUMABLE {
            return 0;
        }
        match entry_at(&self.lock(), &resumable_temp(&self.shared.tag, path, like)) {
            Some(entry) if entry.kind == Kind::File && entry.size > 0 && entry.size < like.size => entry.size,
            _ => 0,
        }
    }

    fn open_from(&self, path: &str, expect: &Entry, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
        let connection = self.connection().map(Held::for_reader);
        match entry_at(&self.lock(), path) {
            None => Err(not_found(path)),
            Some(now) if now.kind != Kind::File || !now.same_metadata(expect) => {
                Err(changed_since_scan("size or mtime differ"))
            }
            Some(_) => Ok(Box::new(MemoryReader {
                endpoint: self.clone(),
                path: path.to_string(),
                expect: *expect,
                read: offset,
                _connection: connection,
            })),
        }
    }

    fn stages_folders(&self) -> bool {
        self.shared.stages
    }

    fn parallelism(&self) -> usize {
        self.shared.connections
    }

    fn holds_connections(&self) -> bool {
        self.shared.pool.is_some()
    }

    fn mkdir_staged(&self, path: &str) -> Result<String> {
        let _connection = self.connection();
        let mut nodes = self.lock();
        folder_exists(&nodes, split(path).0)?;
        let staged = self.temp_name(path);
        nodes.insert(staged.clone(), Node::Dir);
        Ok(staged)
    }

    fn write_staged(&self, path: &str, data: &mut dyn Read, like: &Entry) -> Result<()> {
        let _connection = self.connection();
        {
            let nodes = self.lock();
            folder_exists(&nodes, split(path).0)?;
            if nodes.contains_key(path) {
                return Err(EndpointError::new(ErrorKind::Other, format!("{path}: already there")));
            }
        }
        let (bytes, read) = read_all(data);
        let mut nodes = self.lock();
        folder_exists(&nodes, split(path).0)?;
        // A file cut short stays, for commit_staged to leave out.
        nodes.insert(path.to_string(), Node::File { data: bytes, mtime: like.mtime, mode: like.mode });
        Ok(read?)
    }

    /// Moves the staged folder into place whole when it holds exactly the written files and
    /// no write failed; otherwise creates `path` and moves the written files one by one.
    fn commit_staged(
        &self,
        staged: &str,
        path: &str,
        written: &[(&str, u64)],
        failed: bool,
    ) -> Result<HashMap<String, Entry>> {
        let _connection = self.connection();
        let mut nodes = self.lock();
        match nodes.get(staged) {
            Some(Node::Dir) => {}
            _ => return Err(not_found(staged)),
        }
        let written: HashMap<&str, u64> = written.iter().copied().collect();
        let inside = below(&nodes, staged);
        let files: HashMap<String, Entry> = inside
            .iter()
            .filter(|p| parent(p) == Some(staged))
            .filter_map(|p| {
                let entry = entry_at(&nodes, p)?;
                let name = split(p).1;
                (entry.kind == Kind::File && written.get(name) == Some(&entry.size)).then(|| (name.to_string(), entry))
            })
            .collect();
        still_as_planned(entry_at(&nodes, path), None)?;
        folder_exists(&nodes, split(path).0)?;
        if inside.len() == files.len() && !failed {
            move_subtree(&mut nodes, staged, path);
            return Ok(files);
        }
        nodes.insert(path.to_string(), Node::Dir);
        for name in files.keys() {
            let node = nodes.remove(&format!("{staged}/{name}")).expect("listed above");
            nodes.insert(format!("{path}/{name}"), node);
        }
        remove_subtree(&mut nodes, staged);
        Ok(files)
    }

    fn mkdir(&self, path: &str) -> Result<()> {
        let _connection = self.connection();
        let mut nodes = self.lock();
        folder_exists(&nodes, split(path).0)?;
        match nodes.get(path) {
            Some(Node::Dir) => Ok(()),
            Some(Node::File { .. }) => {
                Err(EndpointError::new(ErrorKind::Other, "something that is not a folder is in the way"))
            }
            None => {
                nodes.insert(path.to_string(), Node::Dir);
                Ok(())
            }
        }
    }

    fn remove(&self, path: &str, expect: &Entry) -> Result<()> {
        let _connection = self.connection();
        let mut nodes = self.lock();
        still_as_planned(entry_at(&nodes, path), Some(expect))?;
        if expect.is_dir() && !below(&nodes, path).is_empty() {
            return Err(EndpointError::new(ErrorKind::Other, "folder not empty"));
        }
        nodes.remove(path);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str, expect: &Entry) -> Result<Entry> {
        let _connection = self.connection();
        let mut nodes = self.lock();
        still_as_planned(entry_at(&nodes, from), Some(expect))?;
        still_as_planned(entry_at(&nodes, to), None)?;
        folder_exists(&nodes, split(to).0)?;
        if is_inside(to, from) {
            return Err(EndpointError::new(ErrorKind::Other, "cannot move a folder into itself"));
        }
        move_subtree(&mut nodes, from, to);
        Ok(entry_at(&nodes, to).expect("just moved there"))
    }

    /// An absolute path is taken from the root: the tree has nothing outside it.
    fn read_check_file(&self, path: &str, limit: usize) -> Result<Option<Vec<u8>>> {
        let _connection = self.connection();
        match self.lock().get(path.trim_start_matches('/')) {
            None => Ok(None),
            Some(Node::Dir) => Err(EndpointError::new(ErrorKind::Other, format!("{path} is a folder"))),
            Some(Node::File { data, .. }) => Ok(Some(data[..data.len().min(limit)].to_vec())),
        }
    }

    fn flush(&self) -> Result<()> {
        self.shared.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// A temp file, or a staged folder with the files in it.
    fn remove_leftover(&self, path: &str) -> Result<()> {
        let _connection = self.connection();
        let mut nodes = self.lock();
        if !nodes.contains_key(path) {
            return Err(not_found(path));
        }
        remove_subtree(&mut nodes, path);
        Ok(())
    }
}

/// Reads a memory file as it is at each read (so a change while it is read shows), and at its
/// end checks it is still the size and mtime the plan saw.
struct MemoryReader {
    endpoint: MemoryEndpoint,
    path: String,
    expect: Entry,
    read: u64,
    /// Kept until the reader is dropped (an FTP download keeps its connection to the end of
    /// the file).
    _connection: Option<Held>,
}

impl Read for MemoryReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let nodes = self.endpoint.lock();
        let Some(node @ Node::File { data, .. }) = nodes.get(&self.path) else {
            return Err(changed_while_copying().into());
        };
        let start = (self.read as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        self.read += n as u64;
        if (n == 0 || self.read > self.expect.size)
            && (self.read != self.expect.size || !node.entry().same_metadata(&self.expect))
        {
            return Err(changed_while_copying().into());
        }
        Ok(n)
    }
}

/// An [`Endpoint`] call, as [`Faulty`] names it. `Read` is the first read of a reader that
/// `Open` gave (its path is the file's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    CheckRoot,
    /// `scan` (path "") and `scan_part` (the folders asked for).
    Scan,
    Stat,
    /// `open` and `open_from`.
    Open,
    Read,
    Write,
    MkdirStaged,
    WriteStaged,
    /// Paths: the staged folder, then the target.
    CommitStaged,
    Mkdir,
    Remove,
    /// Paths: `from`, then `to`.
    Rename,
    ReadCheckFile,
    /// Path "".
    Flush,
    RemoveLeftover,
    Hash,
}

/// One call as a [`Faulty`] rule sees it.
#[derive(Debug)]
pub struct Call<'a> {
    pub op: Op,
    /// The paths the call names (two for a rename or a staged commit).
    pub paths: &'a [&'a str],
    /// Which call of this op it is, from 1.
    pub n: usize,
}

impl Call<'_> {
    /// True when the call names `path`.
    pub fn names(&self, path: &str) -> bool {
        self.paths.contains(&path)
    }
}

type Matcher = Box<dyn Fn(&Call<'_>) -> bool + Send + Sync>;

struct Fault {
    op: Op,
    matches: Matcher,
    kind: ErrorKind,
}

struct Before<E> {
    op: Op,
    matches: Matcher,
    run: Box<dyn FnOnce(&E) + Send>,
}

/// Wraps an endpoint and fails the calls a test chose, delegating every other call unchanged.
/// A failed call does nothing: the error is returned before the wrapped endpoint sees it.
/// Rules and hooks can be added at any time (after the scan, say) through `&self`.
///
/// ```ignore
/// let destination = Faulty::new(MemoryEndpoint::new("mem://d"));
/// destination.fail(Op::Rename, "a/b", ErrorKind::Other); // every rename naming a/b
/// destination.fail_nth(Op::Write, 3);                    // the third write
/// destination.before(Op::Write, "x", |inner| { inner.put("x", "theirs", 5); }); // changed meanwhile
/// ```
pub struct Faulty<E> {
    inner: E,
    faults: Mutex<Vec<Fault>>,
    hooks: Mutex<Vec<Before<E>>>,
    /// Every call so far: its op and its paths (joined by " -> ").
    log: Mutex<Vec<(Op, String)>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<E: Endpoint> Faulty<E> {
    pub fn new(inner: E) -> Faulty<E> {
        Faulty { inner, faults: Mutex::default(), hooks: Mutex::default(), log: Mutex::default() }
    }

    /// The wrapped endpoint: calls on it bypass every rule.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// Every call of `op` naming `path` fails with `kind`.
    pub fn fail(&self, op: Op, path: &str, kind: ErrorKind) -> &Self {
        let path = path.to_string();
        self.fail_when(op, kind, move |call| call.names(&path))
    }

    /// The `n`th call of `op` (from 1, counting every call of it) fails with [`ErrorKind::Other`].
    pub fn fail_nth(&self, op: Op, n: usize) -> &Self {
        self.fail_when(op, ErrorKind::Other, move |call| call.n == n)
    }

    /// Every call of `op` for which `predicate` holds fails with `kind`.
    pub fn fail_when(
        &self,
        op: Op,
        kind: ErrorKind,
        predicate: impl Fn(&Call<'_>) -> bool + Send + Sync + 'static,
    ) -> &Self {
        locked(&self.faults).push(Fault { op, matches: Box::new(predicate), kind });
        self
    }

    /// Runs `change` on the wrapped endpoint just before the first call of `op` naming `path`
    /// (before that call's fault rules are consulted): to simulate "changed meanwhile".
    pub fn before(&self, op: Op, path: &str, change: impl FnOnce(&E) + Send + 'static) -> &Self {
        let path = path.to_string();
        self.before_when(op, move |call| call.names(&path), change)
    }

    /// Runs `change` just before the first call of `op` for which `predicate` holds.
    pub fn before_when(
        &self,
        op: Op,
        predicate: impl Fn(&Call<'_>) -> bool + Send + Sync + 'static,
        change: impl FnOnce(&E) + Send + 'static,
    ) -> &Self {
        locked(&self.hooks).push(Before { op, matches: Box::new(predicate), run: Box::new(change) });
        self
    }

    /// Drops every fault rule and every hook not run yet: the endpoint behaves again.
    pub fn heal(&self) {
        locked(&self.faults).clear();
        locked(&self.hooks).clear();
    }

    /// The paths of every call of `op` so far, in order (a rename's as "from -> to").
    pub fn calls(&self, op: Op) -> Vec<String> {
        locked(&self.log).iter().filter(|(o, _)| *o == op).map(|(_, paths)| paths.clone()).collect()
    }

    /// Logs a call, runs the hooks due before it, and fails it if a rule says so.
    fn enter(&self, op: Op, paths: &[&str]) -> Result<()> {
        let n = {
            let mut log = locked(&self.log);
            log.push((op, paths.join(" -> ")));
            log.iter().filter(|(o, _)| *o == op).count()
        };
        let call = Call { op, paths, n };
        let due: Vec<Before<E>> = {
            let mut hooks = locked(&self.hooks);
            let (due, rest) = std::mem::take(&mut *hooks).into_iter().partition(|h| h.op == op && (h.matches)(&call));
            *hooks = rest;
            due
        };
        // Run unlocked: a hook may well call into this endpoint's inner one.
        for hook in due {
            (hook.run)(&self.inner);
        }
        match locked(&self.faults).iter().find(|f| f.op == op && (f.matches)(&call)) {
            Some(fault) => Err(EndpointError::new(
                fault.kind,
                format!("injected fault ({:?}) on {op:?} {}", fault.kind, paths.join(" -> ")),
            )),
            None => Ok(()),
        }
    }

    fn reader<'a>(&'a self, path: &str, inner: Box<dyn Read + Send + 'a>) -> Box<dyn Read + Send + 'a> {
        Box::new(FaultyReader { faulty: self, inner, path: path.to_string(), started: false })
    }
}

impl<E: Endpoint> Endpoint for Faulty<E> {
    fn url(&self) -> String {
        self.inner.url()
    }

    fn check_root(&self) -> Result<()> {
        self.enter(Op::CheckRoot, &[""])?;
        self.inner.check_root()
    }

    fn parallelism(&self) -> usize {
        self.inner.parallelism()
    }

    fn holds_connections(&self) -> bool {
        self.inner.holds_connections()
    }

    fn scan(&self, filter: &Filter) -> Result<Scan> {
        self.enter(Op::Scan, &[""])?;
        self.inner.scan(filter)
    }

    fn scan_part(&self, filter: &Filter, shallow: &[String], deep: &[String]) -> Result<Scan> {
        let folders: Vec<&str> = shallow.iter().chain(deep).map(String::as_str).collect();
        self.enter(Op::Scan, &folders)?;
        self.inner.scan_part(filter, shallow, deep)
    }

    fn stat(&self, path: &str) -> Result<Option<Entry>> {
        self.enter(Op::Stat, &[path])?;
        self.inner.stat(path)
    }

    fn open(&self, path: &str, expect: &Entry) -> Result<Box<dyn Read + Send + '_>> {
        self.enter(Op::Open, &[path])?;
        Ok(self.reader(path, self.inner.open(path, expect)?))
    }

    fn write(
        &self,
        path: &str,
        data: &mut dyn Read,
        like: &Entry,
        replaces: Option<&Entry>,
        resume_from: u64,
    ) -> Result<Entry> {
        self.enter(Op::Write, &[path])?;
        self.inner.write(path, data, like, replaces, resume_from)
    }

    fn partial(&self, path: &str, like: &Entry) -> u64 {
        self.inner.partial(path, like)
    }

    fn open_from(&self, path: &str, expect: &Entry, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
        self.enter(Op::Open, &[path])?;
        Ok(self.reader(path, self.inner.open_from(path, expect, offset)?))
    }

    fn stages_folders(&self) -> bool {
        self.inner.stages_folders()
    }

    fn mkdir_staged(&self, path: &str) -> Result<String> {
        self.enter(Op::MkdirStaged, &[path])?;
        self.inner.mkdir_staged(path)
    }

    fn write_staged(&self, path: &str, data: &mut dyn Read, like: &Entry) -> Result<()> {
        self.enter(Op::WriteStaged, &[path])?;
        self.inner.write_staged(path, data, like)
    }

    fn commit_staged(
        &self,
        staged: &str,
        path: &str,
        written: &[(&str, u64)],
        failed: bool,
    ) -> Result<HashMap<String, Entry>> {
        self.enter(Op::CommitStaged, &[staged, path])?;
        self.inner.commit_staged(staged, path, written, failed)
    }

    fn mkdir(&self, path: &str) -> Result<()> {
        self.enter(Op::Mkdir, &[path])?;
        self.inner.mkdir(path)
    }

    fn remove(&self, path: &str, expect: &Entry) -> Result<()> {
        self.enter(Op::Remove, &[path])?;
        self.inner.remove(path, expect)
    }

    fn rename(&self, from: &str, to: &str, expect: &Entry) -> Result<Entry> {
        self.enter(Op::Rename, &[from, to])?;
        self.inner.rename(from, to, expect)
    }

    fn read_check_file(&self, path: &str, limit: usize) -> Result<Option<Vec<u8>>> {
        self.enter(Op::ReadCheckFile, &[path])?;
        self.inner.read_check_file(path, limit)
    }

    fn flush(&self) -> Result<()> {
        self.enter(Op::Flush, &[""])?;
        self.inner.flush()
    }

    fn remove_leftover(&self, path: &str) -> Result<()> {
        self.enter(Op::RemoveLeftover, &[path])?;
        self.inner.remove_leftover(path)
    }

    fn hash(&self, path: &str, expect: &Entry) -> Result<Hash> {
        self.enter(Op::Hash, &[path])?;
        self.inner.hash(path, expect)
    }
}

/// A reader from a [`Faulty`] endpoint: its first read is the call [`Op::Read`].
struct FaultyReader<'a, E> {
    faulty: &'a Faulty<E>,
    inner: Box<dyn Read + Send + 'a>,
    path: String,
    started: bool,
}

impl<E: Endpoint> Read for FaultyReader<'_, E> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.started {
            self.started = true;
            self.faulty.enter(Op::Read, &[&self.path])?;
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything() -> Filter {
        Filter::new([("", ""); 0], true).unwrap()
    }

    #[test]
    fn write_replaces_only_what_the_plan_saw() {
        let ep = MemoryEndpoint::new("mem://t");
        let old = ep.put("f", "old", 1);
        let like = Entry::file(3, 7);
        let err = ep.write("f", &mut &b"new"[..], &like, None, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ChangedSinceScan);
        let err = ep.write("f", &mut &b"new"[..], &like, Some(&Entry::file(3, 2)), 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ChangedSinceScan);
        assert_eq!(ep.get("f").unwrap(), b"old");
        let written = ep.write("f", &mut &b"new"[..], &like, Some(&old), 0).unwrap();
        assert_eq!((written.size, written.mtime), (3, 7));
        assert_eq!(ep.get("f").unwrap(), b"new");
        assert!(ep.temps().is_empty());
    }

    #[test]
    fn a_reader_fails_when_its_file_changes_under_it() {
        let ep = MemoryEndpoint::new("mem://t");
        let entry = ep.put("f", vec![1u8; 100], 1);
        let mut reader = ep.open("f", &entry).unwrap();
        let mut buf = [0u8; 10];
        reader.read_exact(&mut buf).unwrap();
        ep.put("f", vec![2u8; 100], 2);
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        assert_eq!(EndpointError::from(err).kind(), ErrorKind::ChangedSinceScan);
        let mut reader = ep.open("f", &Entry::file(100, 2)).unwrap();
        assert_eq!(io::copy(&mut reader, &mut io::sink()).unwrap(), 100);
    }

    #[test]
    fn remove_rename_and_mkdir_compare_first() {
        let ep = MemoryEndpoint::new("mem://t");
        let a = ep.put("d/a", "a", 1);
        ep.put("d/b", "b", 1);
        assert_eq!(ep.remove("d/a", &Entry::file(1, 2)).unwrap_err().kind(), ErrorKind::ChangedSinceScan);
        assert_eq!(ep.remove("d", &Entry::dir()).unwrap_err().kind(), ErrorKind::Other);
        assert_eq!(ep.rename("d/a", "d/b", &a).unwrap_err().kind(), ErrorKind::ChangedSinceScan);
        assert_eq!(ep.rename("d/a", "x/a", &a).unwrap_err().kind(), ErrorKind::NotFound);
        ep.mkdir("d").unwrap();
        assert!(ep.mkdir("d/a").is_err());
        assert_eq!(ep.rename("d", "e", &Entry::dir()).unwrap(), Entry::dir());
        assert_eq!(ep.get("e/a").unwrap(), b"a");
        ep.remove("e/a", &a).unwrap();
        assert_eq!(ep.entry("e/a"), None);
    }

    #[test]
    fn scan_hides_temps_and_ignored_paths_and_marks_their_folders() {
        let ep = MemoryEndpoint::new("mem://t");
        ep.put("keep/a", "a", 1);
        ep.put("keep/x.db", "x", 1);
        ep.put("cache/c", "c", 1);
        ep.put(".pairsync-0123abcd-1-0.tmp", "own", 1);
        ep.put("keep/.pairsync-deadbeef-1-0.tmp", "theirs", 1);
        let filter = Filter::new([("--ignore", r"\.db$"), ("--ignore", "^cache/")], true).unwrap();
        let scan = ep.scan(&filter).unwrap();
        let found: Vec<_> = scan.snapshot.keys().cloned().collect();
        assert_eq!(found, ["keep", "keep/a"]);
        assert!(scan.snapshot.get("keep").unwrap().holds_unsynced);
        assert_eq!(scan.leftovers, [".pairsync-0123abcd-1-0.tmp"]);
        assert_eq!(ep.scan(&everything()).unwrap().snapshot.len(), 5);
    }

    #[test]
    fn faulty_fails_chosen_calls_and_runs_hooks_first() {
        let ep = Faulty::new(MemoryEndpoint::new("mem://t"));
        ep.fail(Op::Mkdir, "b", ErrorKind::Refused).fail_nth(Op::Mkdir, 3);
        ep.before(Op::Mkdir, "a", |inner| {
            inner.put("a", "in the way", 1);
        });
        assert_eq!(ep.mkdir("a").unwrap_err().kind(), ErrorKind::Other);
        assert_eq!(ep.mkdir("b").unwrap_err().kind(), ErrorKind::Refused);
        assert!(ep.mkdir("c").is_err());
        ep.mkdir("d").unwrap();
        assert_eq!(ep.calls(Op::Mkdir), ["a", "b", "c", "d"]);
        assert_eq!(ep.inner().entry("b"), None);
        ep.heal();
        ep.mkdir("b").unwrap();
    }
}
