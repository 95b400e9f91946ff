//! Versions kept (`--backup-dir`): before the executor overwrites or deletes a file on a side,
//! the old file is moved into this run's folder on that side (`<dir>/<run>/<path>`, see
//! `core::versions` for the names), and after the run the oldest run folders beyond
//! `--backup-keep` are removed.
//!
//! Every move is a rename on the side's own endpoint (on FTP, RNFR/RNTO on the server): no
//! byte is copied. The rename is compare-then-mutate like any other: it moves the file only if
//! it is still what the plan saw, and only to a free name. A version that cannot be kept stops
//! its action (a problem for the path): nothing is overwritten or deleted without its version.
//! If the copy that follows the move fails, the path stays empty on that side until the next
//! run, which copies it again (the side that changed still differs from the state); the old
//! file is safe in the versions folder meanwhile.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::core::filter::Filter;
use crate::core::model::{ancestors, is_inside, parent, Entry, Kind, Side};
use crate::core::versions::{self, Backup};
use crate::endpoint::{Endpoint, EndpointError, ErrorKind, Result};

/// A run's versions on both sides.
pub struct Versions {
    backup: Backup,
    /// The run's start (`core::versions::STAMP_FORMAT`).
    stamp: String,
    sides: [SideVersions; 2],
}

#[derive(Default)]
struct SideVersions {
    /// This run's folder on the side, made by the first version kept there (so that a run
    /// that keeps nothing makes nothing), or why it could not be.
    run: OnceLock<std::result::Result<String, String>>,
    /// Folders below it made so far (each once, however many files go in).
    made: Mutex<HashSet<String>>,
    kept: AtomicUsize,
}

impl Versions {
    pub fn new(backup: Backup, stamp: String) -> Versions {
        Versions { backup, stamp, sides: Default::default() }
    }

    /// Versions kept on both sides so far.
    pub fn kept(&self) -> usize {
        self.sides.iter().map(|s| s.kept.load(Ordering::Relaxed)).sum()
    }

    /// Moves the file `path` of `side` (`endpoint`), still `entry`, into this run's folder there.
    /// Errors as the endpoint's mkdir and rename do, saying what was being done.
    pub fn keep(&self, side: Side, endpoint: &dyn Endpoint, path: &str, entry: &Entry) -> Result<()> {
        let here = &self.sides[side.index()];
        let run = here.run.get_or_init(|| self.make_run_folder(endpoint).map_err(|e| e.to_string()));
        let run = run.as_ref().map_err(|e| {
            EndpointError::new(ErrorKind::Other, format!("cannot make the versions folder in {}: {e}", self.backup.dir))
        })?;
        let to = format!("{run}/{path}");
        let mut on_the_way: Vec<&str> = ancestors(&to).take_while(|dir| dir.len() > run.len()).collect();
        on_the_way.reverse();
        for dir in on_the_way {
            if here.made.lock().expect("not poisoned").contains(dir) {
                continue;
            }
            endpoint.mkdir(dir).map_err(|e| context(e, &format!("cannot make {dir} to keep the old version")))?;
            here.made.lock().expect("not poisoned").insert(dir.to_string());
        }
        endpoint.rename(path, &to, entry).map_err(|e| context(e, &format!("cannot keep the old version as {to}")))?;
        here.kept.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The versions folder (and the folders on the way to it), then a free run folder in it:
    /// the stamp, or `stamp-2`... when another run of the same second made one.
    fn make_run_folder(&self, endpoint: &dyn Endpoint) -> Result<String> {
        let dir = &self.backup.dir;
        for folder in ancestors(dir).collect::<Vec<_>>().into_iter().rev().chain([dir.as_str()]) {
            endpoint.mkdir(folder)?;
        }
        for n in 1..=1000 {
            let run = format!("{dir}/{}", versions::run_folder(&self.stamp, n));
            if endpoint.stat(&run)?.is_none() {
                endpoint.mkdir(&run)?;
                return Ok(run);
            }
        }
        Err(EndpointError::new(ErrorKind::Other, format!("no free run folder for {} in {dir}", self.stamp)))
    }

    /// After the run: on each side where it kept versions, removes the oldest run folders
    /// beyond `--backup-keep`, files first, then folders deepest first. Returns warnings for
    /// what could not be removed (the sync itself went well; the next run tries again).
    pub fn prune(&self, endpoints: [&dyn Endpoint; 2]) -> Vec<String> {
        let Some(keep) = self.backup.keep else { return Vec::new() };
        let mut warnings = Vec::new();
        for side in Side::BOTH {
            if self.sides[side.index()].kept.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let endpoint = endpoints[side.index()];
            let dir = &self.backup.dir;
            let listed = match endpoint.scan_part(&everything(), std::slice::from_ref(dir), &[]) {
                Ok(scan) => scan.snapshot,
                Err(e) => {
                    warnings.push(format!("{side}: cannot list the versions folder {dir}: {e}"));
                    continue;
                }
            };
            let runs = listed
                .iter()
                .filter(|(path, entry)| entry.kind == Kind::Dir && parent(path) == Some(dir.as_str()))
                .map(|(path, _)| &path[dir.len() + 1..]);
            for old in versions::to_prune(runs, keep) {
                let run = format!("{dir}/{old}");
                if let Err(e) = remove_tree(endpoint, &run) {
                    warnings.push(format!("{side}: cannot remove the old versions in {run}: {e}"));
                }
            }
        }
        warnings
    }
}

/// A filter that hides nothing: the versions folder is hidden from the pair, not from pruning.
fn everything() -> Filter {
    Filter::new(std::iter::empty::<(&str, &str)>(), true).expect("no patterns to compile")
}

/// Removes the folder `dir` with everything in it. Anything the listing could not take in (a
/// symbolic link, an unreadable folder) stops it: the folder could not be emptied anyway.
fn remove_tree(endpoint: &dyn Endpoint, dir: &str) -> Result<()> {
    let scan = endpoint.scan_part(&everything(), &[], &[dir.to_string()])?;
    if let Some(issue) = scan.issues.first() {
        return Err(EndpointError::new(ErrorKind::Other, format!("{}: {}", issue.path, issue.message)));
    }
    let inside: Vec<(&String, &Entry)> = scan.snapshot.iter().filter(|(path, _)| is_inside(path, dir)).collect();
    for (path, entry) in inside.iter().filter(|(_, e)| e.kind == Kind::File) {
        endpoint.remove(path, entry)?;
    }
    // Sorted, a folder comes before what it holds: backwards, each is empty when removed.
    for (path, entry) in inside.iter().rev().filter(|(_, e)| e.kind == Kind::Dir) {
        endpoint.remove(path, entry)?;
    }
    endpoint.remove(dir, &Entry::dir())
}

fn context(err: EndpointError, what: &str) -> EndpointError {
    EndpointError::new(err.kind(), format!("{what}: {err}"))
}
