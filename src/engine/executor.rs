//! Apply: runs a plan through the endpoints and commits one state change per action that
//! succeeded. A failing action is a [`Problem`] for its path; the run goes on.

use std::collections::HashMap;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};

use crate::core::error::Result;
use crate::core::model::{parent, split, Entry, Hash, Kind, Side, StateRecord};
use crate::core::plan::{Action, Plan, StageLimits};
use crate::endpoint::{self, Endpoint, EndpointError, ErrorKind, HashingReader, RESUMABLE};
use crate::engine::versions::Versions;
use crate::state::{StateDb, StateWriter};

/// Something that went wrong with one path; the rest of the run went on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() { "(root)" } else { &self.path };
        write!(f, "{path}: {}", self.message)
    }
}

/// What happened, as it happens (progress bars, verbose lines, the log file).
pub trait Observer: Sync {
    fn applied(&self, _action: &Action) {}
    fn problem(&self, _problem: &Problem) {}
    /// Asked before each action: true stops the run there (a signal). What was applied stays
    /// applied and recorded; the rest is done by the next run.
    fn should_stop(&self) -> bool {
        false
    }
}

/// Counts of what was done.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub copied: usize,
    pub bytes: u64,
    pub deleted: usize,
    pub renamed: usize,
    pub folders_created: usize,
    /// Old files moved into the versions folder (`--backup-dir`) before an overwrite or delete.
    pub versioned: usize,
}

impl Tally {
    pub fn add(&mut self, action: &Action) {
        match action {
            Action::Copy { entry, .. } => {
                self.copied += 1;
                self.bytes += entry.size;
            }
            Action::Delete { .. } => self.deleted += 1,
            Action::Rename { .. } => self.renamed += 1,
            Action::Mkdir { .. } => self.folders_created += 1,
            Action::Record { .. } | Action::Forget { .. } => {}
        }
    }

    /// Adds what another part of the same run did. (`versioned` is counted for the whole run.)
    pub fn merge(&mut self, other: &Tally) {
        self.copied += other.copied;
        self.bytes += other.bytes;
        self.deleted += other.deleted;
        self.renamed += other.renamed;
        self.folders_created += other.folders_created;
        self.versioned = self.versioned.max(other.versioned);
    }

    pub fn of(plan: &Plan) -> Tally {
        let mut tally = Tally::default();
        plan.actions().for_each(|a| tally.add(a));
        tally
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub tally: Tally,
    pub problems: Vec<Problem>,
    /// The run was asked to stop before the plan was done.
    pub interrupted: bool,
    /// Paths whose action failed because what was there was no longer what the scan saw (or
    /// was gone): a fresh look may find them elsewhere (a mail message renamed meanwhile).
    pub changed: Vec<String>,
}

enum StateChange {
    Put(String, StateRecord),
    Forget(String),
    /// A copy written into a staged folder, with the hash of what was read: recorded once the
    /// folder is moved into place.
    Staged(Hash),
}

/// Bounds on a staged folder: a run killed before the folder is moved into place loses at
/// most this much upload, and files large enough to be resumed are copied one by one.
const STAGE_LIMITS: StageLimits = StageLimits { files: 1000, bytes: 64 << 20, file_size: RESUMABLE };

/// A new folder filled under a temp name and then moved into place whole, on an endpoint where
/// that saves round trips (see [`Endpoint::stages_folders`]). Shared with the copy workers.
struct StagedFolder {
    side: Side,
    /// The temp folder, created by the first copy into it (so that only the folders being
    /// filled exist as temps), or why it could not be.
    temp: OnceLock<std::result::Result<String, String>>,
}

/// Staged folders by path.
type StagedFolders<'p> = HashMap<&'p str, StagedFolder>;

/// The bookkeeping of one staged folder, kept by the thread that settles results.
struct Filling<'p> {
    mkdir: &'p Action,
    /// Copies into it that have not finished yet.
    remaining: usize,
    /// Copies written into it, with the hash of what was read.
    written: Vec<(&'p Action, Hash)>,
    /// A copy into it failed: its partial file may be in the temp folder.
    failed: bool,
}

/// What running one action gave: the state changes it implies, or why it failed.
type ActionResult = endpoint::Result<Vec<StateChange>>;

/// One application of a plan: the state writer, what happened, the staged folders.
struct Run<'e, 'p> {
    executor: &'e Executor<'e>,
    writer: StateWriter<'e>,
    outcome: Outcome,
    staged: &'p StagedFolders<'p>,
    filling: HashMap<&'p str, Filling<'p>>,
}

impl<'p> Run<'_, 'p> {
    /// Takes in the result of one action: its state changes, or a problem for its path.
    fn settle(&mut self, action: &'p Action, result: ActionResult) -> Result<()> {
        let executor = self.executor;
        let filling = match action {
            Action::Copy { path, .. } => parent(path).filter(|p| self.filling.contains_key(p)),
            _ => None,
        };
        match result {
            Ok(changes) => {
                if let [StateChange::Staged(hash)] = changes[..] {
                    let folder = self.filling.get_mut(filling.expect("written into a staged folder")).expect("filling");
                    folder.written.push((action, hash));
                } else {
                    self.outcome.tally.add(action);
                    executor.observer.applied(action);
                    for change in changes {
                        match change {
                            StateChange::Put(path, record) => self.writer.put(&path, &record)?,
                            StateChange::Forget(path) => self.writer.forget(&path)?,
                            StateChange::Staged(_) => unreachable!("alone in its result"),
                        }
                    }
                    if self.writer.full() {
                        executor.flush();
                        self.writer.commit()?;
                    }
                }
            }
            Err(err) => {
                if let Some(folder) = filling {
                    self.filling.get_mut(folder).expect("filling").failed = true;
                }
                if matches!(err.kind(), ErrorKind::ChangedSinceScan | ErrorKind::NotFound) {
                    self.outcome.changed.push(action.path().to_string());
                }
                let problem = Problem { path: action.path().to_string(), message: describe(action, &err) };
                executor.observer.problem(&problem);
                self.outcome.problems.push(problem);
            }
        }
        if let Some(folder) = filling {
            let entry = self.filling.get_mut(folder).expect("filling");
            entry.remaining -= 1;
            if entry.remaining == 0 {
                self.commit_staged(folder)?;
            }
        }
        Ok(())
    }

    /// True for the creation of a staged folder, which its first copy does.
    fn defers(&self, action: &Action) -> bool {
        matches!(action, Action::Mkdir { side, path } if self.staged.get(path.as_str()).is_some_and(|s| s.side == *side))
    }

    /// Moves a staged folder into place and records it and the files written into it. If that
    /// fails, its temp folder is removed and nothing of it is recorded: the next run copies
    /// its files again.
    fn commit_staged(&mut self, folder: &'p str) -> Result<()> {
        let Some(filling) = self.filling.remove(folder) else { return Ok(()) };
        let staged = &self.staged[folder];
        // Never created (no copy into it ran), or it could not be: its copies said why.
        let Some(Ok(temp)) = staged.temp.get() else { return Ok(()) };
        let endpoint = self.executor.endpoint(staged.side);
        if filling.written.is_empty() {
            let _ = endpoint.remove_leftover(temp);
            return Ok(());
        }
        let names: Vec<(&str, u64)> = filling
            .written
            .iter()
            .map(|(action, _)| match action {
                Action::Copy { path, entry, .. } => (split(path).1, entry.size),
                _ => unreachable!("only copies are written into a staged folder"),
            })
            .collect();
        let files = match endpoint.commit_staged(temp, folder, &names, filling.failed) {
            Ok(files) => files,
            Err(err) => {
                let _ = endpoint.remove_leftover(temp);
                let err = EndpointError::new(
                    ErrorKind::Other,
                    format!(
                        "not moved into place from its temp folder ({err}); its {} new files are copied again next run",
                        filling.written.len()
                    ),
                );
                return self.settle(filling.mkdir, Err(err));
            }
        };
        self.settle(filling.mkdir, Ok(vec![StateChange::Put(folder.to_string(), StateRecord::dir())]))?;
        for (action, hash) in filling.written {
            let Action::Copy { from, path, entry, .. } = action else { unreachable!("only copies") };
            let result = match files.get(split(path).1) {
                Some(written) => {
                    let (s, d) = match from {
                        Side::Source => (entry, written),
                        Side::Destination => (written, entry),
                    };
                    Ok(vec![StateChange::Put(path.clone(), StateRecord::synced(s, d, Some(hash)))])
                }
                None => Err(EndpointError::new(
                    ErrorKind::Other,
                    "not moved into place from the temp folder; copied again next run",
                )),
            };
            self.settle(action, result)?;
        }
        Ok(())
    }

    /// After the copies (all done, or a stop): moves the folders still being filled into
    /// place with what they hold. With the temps made by the first copy, these are only the
    /// few folders the workers were in.
    fn commit_all_staged(&mut self) -> Result<()> {
        let mut folders: Vec<&'p str> = self.filling.keys().copied().collect();
        folders.sort_unstable();
        for folder in folders {
            self.commit_staged(folder)?;
        }
        Ok(())
    }
}

pub struct Executor<'a> {
    pub endpoints: [&'a dyn Endpoint; 2],
    pub observer: &'a dyn Observer,
    /// Copies run on this many threads.
    pub workers: usize,
    /// Make writes durable before committing their records. Needed in two-way mode, where a
    /// file cut short by a power failure would otherwise look edited and be carried back over
    /// the good copy; in one-way modes the source is authoritative and a short file is simply
    /// copied again by the next run.
    pub durable: bool,
    /// Keep the old file of every overwrite and file deletion (`--backup-dir`); `None`: not kept.
    pub versions: Option<&'a Versions>,
}

impl Executor<'_> {
    fn endpoint(&self, side: Side) -> &dyn Endpoint {
        self.endpoints[side.index()]
    }

    /// Applies `plan` in order (consecutive copies in parallel), committing state as it goes.
    /// Errors only when the state cannot be written.
    pub fn apply(&self, plan: &Plan, db: &StateDb) -> Result<Outcome> {
        // The folders to stage: those the plan creates and fills with small new files, on an
        // endpoint that gains by it.
        let (mut staged, mut filling) = (StagedFolders::new(), HashMap::new());
        for side in [Side::Source, Side::Destination] {
            if self.endpoint(side).stages_folders() {
                for (folder, (mkdir, copies)) in plan.staged_folders(side, STAGE_LIMITS) {
                    staged.insert(folder, StagedFolder { side, temp: OnceLock::new() });
                    filling.insert(folder, Filling { mkdir, remaining: copies, written: Vec::new(), failed: false });
                }
            }
        }
        let mut run =
            Run { executor: self, writer: db.writer(), outcome: Outcome::default(), staged: &staged, filling };
        for phase in plan.phases() {
            let all_copies = phase.iter().all(|a| matches!(a, Action::Copy { .. }));
            if all_copies && phase.len() > 1 && self.workers > 1 {
                // Between two sides that hold connections (FTP), one way at a time: a copy holds
                // its source's connection (the open reader) while it takes its target's, so
                // copies going both ways at once could each hold the one the other waits for,
                // and the run would never end. Going one way, every copy takes them in the same
                // order. Other pairs copy both ways at once (a large copy one way does not hold
                // up the small ones the other way).
                let one_way = self.endpoints.iter().all(|e| e.holds_connections());
                let ways = if one_way { vec![Some(Side::Source), Some(Side::Destination)] } else { vec![None] };
                for way in ways {
                    let copies: Vec<&Action> = phase
                        .iter()
                        .filter(|a| way.is_none_or(|way| matches!(a, Action::Copy { from, .. } if *from == way)))
                        .collect();
                    self.copy_in_parallel(&copies, &staged, &mut |action, result| run.settle(action, result))?;
                }
            } else {
                for action in phase {
                    if self.observer.should_stop() {
                        break;
                    }
                    if run.defers(action) {
                        continue;
                    }
                    let result = self.run(action, &staged);
                    run.settle(action, result)?;
                }
            }
            if all_copies {
                run.commit_all_staged()?;
            }
            if self.observer.should_stop() {
                break;
            }
        }
        let Run { mut writer, mut outcome, .. } = run;
        // Only writes need making durable: a no-op run must not wait for the disk (sled's
        // flush costs fsyncs even with nothing to write).
        if !plan.is_noop() {
            self.flush();
        }
        writer.commit()?;
        if plan.actions().next().is_some() {
            db.flush()?;
        }
        outcome.interrupted = self.observer.should_stop();
        outcome.tally.versioned = self.versions.map_or(0, Versions::kept);
        Ok(outcome)
    }

    fn copy_in_parallel<'p>(
        &self,
        copies: &[&'p Action],
        staged: &StagedFolders,
        settle: &mut dyn FnMut(&'p Action, ActionResult) -> Result<()>,
    ) -> Result<()> {
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::sync_channel(256);
        std::thread::scope(|scope| {
            for _ in 0..self.workers.min(copies.len()) {
                let tx = tx.clone();
                let next = &next;
                scope.spawn(move || loop {
                    if self.observer.should_stop() {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&action) = copies.get(i) else { break };
                    if tx.send((i, self.run(action, staged))).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            let mut result = Ok(());
            for (i, outcome) in rx {
                if result.is_ok() {
                    result = settle(copies[i], outcome);
                }
                if result.is_err() {
                    // The state cannot be written: stop handing out work, let workers drain.
                    next.store(copies.len(), Ordering::Relaxed);
                }
            }
            result
        })
    }

    /// Makes both sides' writes durable before records of them are committed. A side that
    /// cannot be flushed is not an error (the records stay true; only power-cut durability is
    /// weaker), so this never fails a run.
    fn flush(&self) {
        if !self.durable {
            return;
        }
        for endpoint in self.endpoints {
            let _ = endpoint.flush();
        }
    }

    /// Before the file `old` (as the plan saw it) at `path` on `side` is overwritten: moved into
    /// the versions folder when versions are kept, so that the write then finds the name free
    /// (returns `None`, what the write must now find there); else `old` as it is.
    fn keep_version<'e>(&self, side: Side, path: &str, old: Option<&'e Entry>) -> endpoint::Result<Option<&'e Entry>> {
        match (self.versions, old) {
            (Some(versions), Some(old)) if old.kind == Kind::File => {
                versions.keep(side, self.endpoint(side), path, old)?;
                Ok(None)
            }
            _ => Ok(old),
        }
    }

    /// Runs one action; returns the state changes it implies.
    fn run(&self, action: &Action, staged: &StagedFolders) -> ActionResult {
        match action {
            Action::Copy { from, path, entry, replaces } => {
                let target = self.endpoint(from.other());
                let folder = parent(path).and_then(|p| staged.get_key_value(p)).filter(|(_, s)| s.side != *from);
                if let Some((folder, staged)) = folder {
                    // Into a staged folder: recorded once the folder is moved into place.
                    let temp = staged.temp.get_or_init(|| target.mkdir_staged(folder).map_err(|e| e.to_string()));
                    let temp = temp.as_ref().map_err(|e| {
                        EndpointError::new(ErrorKind::Other, format!("cannot create a temp folder: {e}"))
                    })?;
                    let name = split(path).1;
                    let mut reader = HashingReader::new(self.endpoint(*from).open(path, entry)?);
                    target.write_staged(&format!("{temp}/{name}"), &mut reader, entry)?;
                    return Ok(vec![StateChange::Staged(reader.hash())]);
                }
                // A large copy an earlier run was cut off in is continued where it stopped.
                let offset = target.partial(path, entry);
                let reader = self.endpoint(*from).open_from(path, entry, offset)?;
                let mut reader = HashingReader::new(reader);
                let replaces = self.keep_version(from.other(), path, replaces.as_deref())?;
                let written = target.write(path, &mut reader, entry, replaces, offset)?;
                // A continued copy did not read the whole file: it records no hash.
                let hash = (offset == 0).then(|| reader.hash());
                let (s, d) = match from {
                    Side::Source => (entry, &written),
                    Side::Destination => (&written, entry),
                };
                Ok(vec![StateChange::Put(path.clone(), StateRecord::synced(s, d, hash))])
            }
            Action::Mkdir { side, path } => {
                self.endpoint(*side).mkdir(path)?;
                Ok(vec![StateChange::Put(path.clone(), StateRecord::dir())])
            }
            Action::Delete { side, path, entry } => {
                match self.versions {
                    // Deleting a file is moving it into the versions folder.
                    Some(versions) if entry.kind == Kind::File => {
                        versions.keep(*side, self.endpoint(*side), path, entry)?
                    }
                    _ => self.endpoint(*side).remove(path, entry)?,
                }
                Ok(vec![StateChange::Forget(path.clone())])
            }
            Action::Rename { side, from, to, entry, counterpart } => {
                let moved = self.endpoint(*side).rename(from, to, entry)?;
                let Some(there) = counterpart.as_deref() else { return Ok(vec![]) };
                let (s, d): (&Entry, &Entry) = match side {
                    Side::Source => (&moved, there),
                    Side::Destination => (there, &moved),
                };
                Ok(vec![
                    StateChange::Forget(from.clone()),
                    StateChange::Put(to.clone(), StateRecord::synced(s, d, there.hash)),
                ])
            }
            Action::Record { path, record } => Ok(vec![StateChange::Put(path.clone(), *record)]),
            Action::Forget { path } => Ok(vec![StateChange::Forget(path.clone())]),
        }
    }
}

fn describe(action: &Action, err: &EndpointError) -> String {
    let what = match action {
        Action::Copy { from, .. } => format!("copy {from} -> {}", from.other()),
        Action::Mkdir { side, .. } => format!("mkdir on the {side}"),
        Action::Delete { side, .. } => format!("delete on the {side}"),
        Action::Rename { side, from, .. } => format!("rename {from} on the {side}"),
        Action::Record { .. } | Action::Forget { .. } => "state".to_string(),
    };
    format!("{what}: {err}")
}
