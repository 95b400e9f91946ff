//! Sync Now for `pairsync console`: the items of one Sync Now run one after another on a thread
//! of their own, each exactly as `pairsync run` runs it ([`items::run`]: its log file, its
//! last-run record, its pair's lock), with the console's screen as a second reporter that keeps
//! the live progress. A stop asked for an item ends its run after the current file (as SIGTERM
//! does) and keeps it from starting if it is still queued.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::state::{Live, Phase};
use crate::app::items::{self, RunOptions};
use crate::app::report::Verbosity;
use crate::config::Item;
use crate::core::exit::ExitCode;
use crate::core::plan::{Action, Plan};
use crate::engine::executor::Observer;
use crate::engine::sync::Reporter;

/// Where a run stands, as its reporter learns it.
#[derive(Debug, Default)]
struct Progress {
    queued: AtomicBool,
    /// The live counts of entries listed, while scanning.
    scanning: Mutex<Vec<Arc<AtomicUsize>>>,
    planning: AtomicBool,
    planned: AtomicBool,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    actions_total: AtomicU64,
    actions_done: AtomicU64,
    /// The exit code once finished.
    exit: Mutex<Option<ExitCode>>,
}

/// The screen's reporter for one item's run: it only counts.
struct Screen {
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
}

impl Observer for Screen {
    fn applied(&self, action: &Action) {
        match action {
            Action::Copy { entry, .. } => {
                self.progress.bytes_done.fetch_add(entry.size, Ordering::Relaxed);
            }
            action if action.touches_a_side() => {
                self.progress.actions_done.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl Reporter for Screen {
    fn scanning(&self, counts: [Option<Arc<AtomicUsize>>; 2]) {
        *self.progress.scanning.lock().unwrap() = counts.into_iter().flatten().collect();
    }

    fn planning(&self) {
        self.progress.planning.store(true, Ordering::Relaxed);
    }

    fn planned(&self, plan: &Plan) {
        let (mut bytes, mut actions) = (0, 0);
        for action in plan.actions() {
            match action {
                Action::Copy { entry, .. } => bytes += entry.size,
                action if action.touches_a_side() => actions += 1,
                _ => {}
            }
        }
        self.progress.bytes_total.fetch_add(bytes, Ordering::Relaxed);
        self.progress.actions_total.fetch_add(actions, Ordering::Relaxed);
        self.progress.planned.store(true, Ordering::Relaxed);
    }

    /// The later pass's copies count in bytes, as the plan's do; its other actions are added
    /// batch by batch.
    fn expect_later(&self, _copies: u64, bytes: u64) {
        self.progress.bytes_total.store(bytes, Ordering::Relaxed);
    }

    fn planned_later(&self, plan: &Plan) {
        let actions = plan.actions().filter(|a| a.touches_a_side() && !matches!(a, Action::Copy { .. })).count();
        self.progress.actions_total.fetch_add(actions as u64, Ordering::Relaxed);
    }
}

/// One item's run: its progress and its stop flag.
struct Slot {
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
}

impl Slot {
    fn live(&self) -> Live {
        let p = &self.progress;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let phase = if let Some(exit) = *p.exit.lock().unwrap() {
            Phase::Done(exit)
        } else if p.queued.load(Ordering::Relaxed) {
            Phase::Queued
        } else if p.planned.load(Ordering::Relaxed) {
            Phase::Applying {
                bytes_done: load(&p.bytes_done),
                bytes_total: load(&p.bytes_total),
                actions_done: load(&p.actions_done),
                actions_total: load(&p.actions_total),
            }
        } else if p.planning.load(Ordering::Relaxed) {
            Phase::Planning
        } else {
            let entries = p.scanning.lock().unwrap().iter().map(|n| n.load(Ordering::Relaxed) as u64).sum();
            Phase::Scanning { entries }
        };
        Live { phase, stopping: self.stop.load(Ordering::Relaxed) }
    }
}

/// The console's runs.
pub struct Runner {
    state_dir: PathBuf,
    slots: Arc<Mutex<BTreeMap<String, Slot>>>,
    threads: Vec<JoinHandle<()>>,
    /// Runs that panicked, said once.
    failures: Arc<Mutex<Vec<String>>>,
}

impl Runner {
    pub fn new(state_dir: PathBuf) -> Runner {
        Runner { state_dir, slots: Arc::default(), threads: Vec::new(), failures: Arc::default() }
    }

    /// Runs `items` one after another in the background (the caller leaves out items that run).
    pub fn start(&mut self, items: Vec<Item>) {
        let mut queue = Vec::new();
        {
            let mut slots = self.slots.lock().unwrap();
            for item in items {
                let progress = Arc::new(Progress { queued: AtomicBool::new(true), ..Progress::default() });
                let stop = Arc::new(AtomicBool::new(false));
                slots.insert(item.name.clone(), Slot { progress: progress.clone(), stop: stop.clone() });
                queue.push((item, progress, stop));
            }
        }
        let state_dir = self.state_dir.clone();
        let slots = self.slots.clone();
        let failures = self.failures.clone();
        let thread = std::thread::Builder::new().name("console-run".into()).spawn(move || {
            for (item, progress, stop) in queue {
                // Stopped while queued: not started, as `run` starts no item after a signal.
                if stop.load(Ordering::SeqCst) {
                    slots.lock().unwrap().remove(&item.name);
                    continue;
                }
                progress.queued.store(false, Ordering::Relaxed);
                let screen = Screen { progress: progress.clone(), stop: stop.clone() };
                let options = RunOptions {
                    stop: Some(stop),
                    screen: Some(Arc::new(screen)),
                    ..RunOptions::new(Verbosity::Quiet)
                };
                // A bug in a run must not take the console (and the other runs) down with it.
                let run = std::panic::catch_unwind(AssertUnwindSafe(|| items::run(&item, &state_dir, &options)));
                let exit = run.unwrap_or_else(|panic| {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    failures.lock().unwrap().push(format!("{}: the run panicked (a bug): {why}", item.name));
                    ExitCode::Usage
                });
                *progress.exit.lock().unwrap() = Some(exit);
            }
        });
        // A thread that cannot be started leaves its items queued forever: say so instead.
        match thread {
            Ok(thread) => self.threads.push(thread),
            Err(_) => self.slots.lock().unwrap().retain(|_, slot| !slot.progress.queued.load(Ordering::Relaxed)),
        }
    }

    /// Asks the runs of `names` to stop after the current file.
    pub fn stop(&self, names: &[String]) {
        let slots = self.slots.lock().unwrap();
        for name in names {
            if let Some(slot) = slots.get(name) {
                slot.stop.store(true, Ordering::SeqCst);
            }
        }
    }

    pub fn stop_all(&self) {
        for slot in self.slots.lock().unwrap().values() {
            slot.stop.store(true, Ordering::SeqCst);
        }
    }

    /// The live state of every run, finished ones included.
    pub fn live(&mut self) -> BTreeMap<String, Live> {
        self.threads.retain(|thread| !thread.is_finished());
        self.slots.lock().unwrap().iter().map(|(name, slot)| (name.clone(), slot.live())).collect()
    }

    /// The runs that panicked since the last call.
    pub fn failures(&self) -> Vec<String> {
        std::mem::take(&mut *self.failures.lock().unwrap())
    }

    /// Whether a run is queued or going on.
    pub fn busy(&mut self) -> bool {
        self.threads.retain(|thread| !thread.is_finished());
        !self.threads.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SideConfig;

    fn wait(runner: &mut Runner) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while runner.busy() {
            assert!(std::time::Instant::now() < deadline, "the runs never ended");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_sync_now_runs_each_item_as_run_does() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst, state) = (dir.path().join("src"), dir.path().join("dst"), dir.path().join("state"));
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("a/one.txt"), "one").unwrap();
        let path = |p: &std::path::Path| p.display().to_string();
        let mut item = Item::new("docs", SideConfig::directory(path(&src)), SideConfig::directory(path(&dst)));
        item.mode = crate::core::plan::Mode::Clone;
        let mut broken = item.clone();
        broken.name = "broken".into();
        broken.source.directory = path(&dir.path().join("missing"));
        let mut runner = Runner::new(state.clone());
        runner.start(vec![item, broken]);
        wait(&mut runner);
        let live = runner.live();
        assert_eq!(live["docs"], Live { phase: Phase::Done(ExitCode::Synced), stopping: false });
        assert_eq!(live["broken"].phase, Phase::Done(ExitCode::SafetyStop));
        assert_eq!(std::fs::read_to_string(dst.join("a/one.txt")).unwrap(), "one");
        // As `pairsync run` leaves them: a last-run record and a log for each.
        assert_eq!(items::last_run(&state, "docs").unwrap().exit_code, 0);
        let log = std::fs::read_to_string(state.join("logs/docs.log")).unwrap();
        assert!(log.contains("start item docs") && log.contains("(exit 0)"), "{log}");
    }

    #[test]
    fn a_queued_item_that_is_stopped_never_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = |p: &str| dir.path().join(p).display().to_string();
        // Enough files that the first run is still going when the stop comes.
        std::fs::create_dir_all(path("src")).unwrap();
        for n in 0..300 {
            std::fs::write(dir.path().join(format!("src/{n}.txt")), "x").unwrap();
        }
        let first = Item::new("first", SideConfig::directory(path("src")), SideConfig::directory(path("one")));
        let second = Item::new("second", SideConfig::directory(path("src")), SideConfig::directory(path("two")));
        let mut runner = Runner::new(dir.path().join("state"));
        runner.start(vec![first, second]);
        runner.stop_all();
        wait(&mut runner);
        assert!(!runner.live().contains_key("second"));
        assert!(!std::path::Path::new(&path("two")).exists());
    }
}
