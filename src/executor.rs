//! Apply: runs a plan through the endpoints and commits one state change per action that
//! succeeded. A failing action is a [`Problem`] for its path; the run goes on.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::endpoint::{Endpoint, HashingReader};
use crate::error::Result;
use crate::model::{Entry, Side, StateRecord};
use crate::plan::{Action, Plan};
use crate::state::StateDb;

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
}

enum StateChange {
    Put(String, StateRecord),
    Forget(String),
}

/// What running one action gave: the state changes it implies, or why it failed.
type ActionResult = io::Result<Vec<StateChange>>;

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
}

impl Executor<'_> {
    fn endpoint(&self, side: Side) -> &dyn Endpoint {
        self.endpoints[side.index()]
    }

    /// Applies `plan` in order (consecutive copies in parallel), committing state as it goes.
    /// Errors only when the state cannot be written.
    pub fn apply(&self, plan: &Plan, db: &StateDb) -> Result<Outcome> {
        let mut writer = db.writer();
        let mut outcome = Outcome::default();
        let mut settle = |action: &Action, result: ActionResult| -> Result<()> {
            match result {
                Ok(changes) => {
                    outcome.tally.add(action);
                    self.observer.applied(action);
                    for change in changes {
                        match change {
                            StateChange::Put(path, record) => writer.put(&path, &record)?,
                            StateChange::Forget(path) => writer.forget(&path)?,
                        }
                    }
                    if writer.full() {
                        self.flush();
                        writer.commit()?;
                    }
                }
                Err(err) => {
                    let problem = Problem { path: action.path().to_string(), message: describe(action, &err) };
                    self.observer.problem(&problem);
                    outcome.problems.push(problem);
                }
            }
            Ok(())
        };
        for phase in plan.phases() {
            let all_copies = phase.iter().all(|a| matches!(a, Action::Copy { .. }));
            if all_copies && phase.len() > 1 && self.workers > 1 {
                self.copy_in_parallel(phase, &mut settle)?;
            } else {
                for action in phase {
                    if self.observer.should_stop() {
                        break;
                    }
                    settle(action, self.run(action))?;
                }
            }
            if self.observer.should_stop() {
                break;
            }
        }
        // Only writes need making durable: a no-op run must not wait for the disk.
        if !plan.is_noop() {
            self.flush();
        }
        writer.commit()?;
        db.flush()?;
        outcome.interrupted = self.observer.should_stop();
        Ok(outcome)
    }

    fn copy_in_parallel(
        &self,
        copies: &[Action],
        settle: &mut dyn FnMut(&Action, ActionResult) -> Result<()>,
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
                    let Some(action) = copies.get(i) else { break };
                    if tx.send((i, self.run(action))).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            let mut result = Ok(());
            for (i, outcome) in rx {
                if result.is_ok() {
                    result = settle(&copies[i], outcome);
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

    /// Runs one action; returns the state changes it implies.
    fn run(&self, action: &Action) -> ActionResult {
        match action {
            Action::Copy { from, path, entry, replaces } => {
                // A large copy an earlier run was cut off in is continued where it stopped.
                let target = self.endpoint(from.other());
                let offset = target.partial(path, entry);
                let reader = self.endpoint(*from).open_from(path, entry, offset)?;
                let mut reader = HashingReader::new(reader);
                let written = target.write(path, &mut reader, entry, replaces.as_deref(), offset)?;
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
                self.endpoint(*side).remove(path, entry)?;
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

fn describe(action: &Action, err: &io::Error) -> String {
    let what = match action {
        Action::Copy { from, .. } => format!("copy {from} -> {}", from.other()),
        Action::Mkdir { side, .. } => format!("mkdir on the {side}"),
        Action::Delete { side, .. } => format!("delete on the {side}"),
        Action::Rename { side, from, .. } => format!("rename {from} on the {side}"),
        Action::Record { .. } | Action::Forget { .. } => "state".to_string(),
    };
    format!("{what}: {err}")
}
