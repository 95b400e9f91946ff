//! The daemon: runs every scheduled item at its due time in local time, each run on its own
//! thread and never two runs of one item at once. SIGTERM and SIGINT let the running syncs
//! finish their current file and commit their state, then it exits 0; SIGHUP rereads the config
//! (the schedules, and the watched items, which start over).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Local};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::app::commands;
use crate::app::items::{self, RunOptions};
use crate::app::out::outln;
use crate::app::report::Verbosity;
use crate::app::watch::WatchSettings;
use crate::config::Item;
use crate::core::error::{Error, Result};
use crate::core::exit::ExitCode;
use crate::core::schedule::Schedule;

enum Event {
    Signal(i32),
    Finished(String, ExitCode),
}

/// The wall clock is looked at again at least this often: the monotonic clock a wait is
/// measured on stands still while the machine sleeps, and the wall clock may be set.
const MAX_WAIT: Duration = Duration::from_secs(30);

struct Scheduled {
    item: Item,
    schedule: Schedule,
    due: DateTime<Local>,
}

/// The config's items: the scheduled ones with their next due time, and those to watch. Read
/// once, so that a reread config is taken whole or not at all.
fn load(config_flag: Option<PathBuf>, quiet: bool, now: &DateTime<Local>) -> Result<(Vec<Scheduled>, Vec<Item>)> {
    let config = commands::load(config_flag, quiet)?;
    let items = config.items().map_err(items::config_error)?;
    if items.is_empty() {
        return Err(Error::Usage(format!("no items in {}", config.path().display())));
    }
    if !quiet && !items.iter().any(|item| item.watch || item.schedule.is_some()) {
        // Not an error: schedules may be added and the daemon told by SIGHUP.
        eprintln!(
            "pairsync daemon: warning: no item of {} has a schedule or watch = true; nothing runs until one does \
             (then SIGHUP)",
            config.path().display()
        );
    }
    let watched = items.iter().filter(|item| item.watch).cloned().collect();
    Ok((scheduled(items, now)?, watched))
}

fn scheduled(items: Vec<Item>, now: &DateTime<Local>) -> Result<Vec<Scheduled>> {
    let mut out = Vec::new();
    for item in items {
        let Some(spec) = item.schedule.as_deref() else { continue };
        let schedule: Schedule =
            spec.parse().map_err(|e: crate::core::schedule::ScheduleError| Error::Usage(e.to_string()))?;
        let due = schedule.next_after(now);
        out.push(Scheduled { item, schedule, due });
    }
    Ok(out)
}

/// `pairsync watch`: the named (or all) items, live, until SIGTERM or SIGINT. SIGHUP rereads
/// the config: the watch starts over with the items as they are now (a full run each).
pub fn watch(
    config_flag: Option<PathBuf>,
    state_dir: &Path,
    selection: (&[String], bool),
    verbosity: Verbosity,
    settings: &WatchSettings,
) -> Result<ExitCode> {
    let quiet = verbosity == Verbosity::Quiet;
    let choose = || {
        let config = commands::load(config_flag.clone(), quiet)?;
        commands::select(&config, selection.0, None, selection.1)
    };
    let mut chosen = choose()?;
    let (terminate, reread) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::Usage(format!("cannot handle signals: {e}")))?;
    let handle = signals.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let (flags, stop_for_signals) = ((terminate.clone(), reread.clone()), stop.clone());
    let listener = std::thread::spawn(move || {
        for signal in signals.forever() {
            let flag = if signal == SIGHUP { &flags.1 } else { &flags.0 };
            flag.store(true, Ordering::SeqCst);
            // Either way the current watch ends, its running sync after the current file.
            stop_for_signals.store(true, Ordering::SeqCst);
        }
    });
    let options =
        RunOptions { prefixed: true, stop: Some(stop.clone()), quiet_noops: true, ..RunOptions::new(verbosity) };
    let code = loop {
        let code = crate::app::watch::run(chosen.clone(), state_dir, &options, settings);
        if terminate.load(Ordering::SeqCst) || !reread.swap(false, Ordering::SeqCst) {
            break code;
        }
        // Cleared before anything else: a signal from now on sets it again, and the next watch
        // then ends at once, so that neither a SIGTERM nor another SIGHUP is lost.
        stop.store(false, Ordering::SeqCst);
        if terminate.load(Ordering::SeqCst) {
            break code;
        }
        match choose() {
            Ok(now) => {
                chosen = now;
                if !quiet {
                    outln!("pairsync watch: config reread; watching {} items", chosen.len());
                }
            }
            Err(e) => eprintln!("pairsync watch: config not reread, keeping the old one: {e}"),
        }
    };
    handle.close();
    let _ = listener.join();
    // Stopped by a signal, the watch itself ends well; what its runs found is in their logs.
    Ok(if code == ExitCode::Usage { code } else { ExitCode::Synced })
}

/// The daemon's watched items (`watch = true`), synced live on a thread of their own, with a
/// stop flag of their own so that a reread config can replace them.
struct Watching {
    thread: JoinHandle<ExitCode>,
    stop: Arc<AtomicBool>,
}

impl Watching {
    /// Watches `watched` on a new thread, once `previous` (told to stop now) has ended: the
    /// scheduler never waits for a watch to finish its current file.
    fn start(
        watched: Vec<Item>,
        previous: Option<Watching>,
        state_dir: &Path,
        options: &RunOptions,
        settings: &WatchSettings,
    ) -> Option<Watching> {
        if let Some(previous) = &previous {
            previous.stop.store(true, Ordering::SeqCst);
        }
        if watched.is_empty() && previous.is_none() {
            return None;
        }
        if !watched.is_empty() && options.verbosity > Verbosity::Quiet {
            outln!("pairsync daemon: watching {} items", watched.len());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let options = RunOptions { quiet_noops: true, stop: Some(stop.clone()), ..options.clone() };
        let (state_dir, settings) = (state_dir.to_path_buf(), settings.clone());
        // With nothing to watch the thread only waits for the previous watch to end (joined
        // when the daemon stops, so that no sync is cut off mid-file).
        let thread = std::thread::spawn(move || {
            if let Some(previous) = previous {
                previous.stop();
            }
            if watched.is_empty() {
                return ExitCode::Synced;
            }
            crate::app::watch::run(watched, &state_dir, &options, &settings)
        });
        Some(Watching { thread, stop })
    }

    /// Ends the watch; its running sync stops after the current file.
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

pub fn run(
    config_flag: Option<PathBuf>,
    state_dir: &Path,
    verbosity: Verbosity,
    settings: &WatchSettings,
) -> Result<ExitCode> {
    let quiet = verbosity == Verbosity::Quiet;
    let say = |line: &str| {
        if !quiet {
            outln!("pairsync daemon: {line}");
        }
    };
    let (mut items, watched) = load(config_flag.clone(), quiet, &Local::now())?;
    let (tx, rx) = mpsc::channel::<Event>();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::Usage(format!("cannot handle signals: {e}")))?;
    let signal_handle = signals.handle();
    let signal_tx = tx.clone();
    let signal_thread = std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal_tx.send(Event::Signal(signal)).is_err() {
                break;
            }
        }
    });
    say(&format!("started; {} scheduled items", items.len()));
    for s in &items {
        say(&format!("{}: next run {}", s.item.name, s.due.format("%Y-%m-%d %H:%M:%S %:z")));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let options = RunOptions { prefixed: true, stop: Some(stop.clone()), ..RunOptions::new(verbosity) };
    // Items with watch = true are also synced live, on their own thread.
    let mut watching = Watching::start(watched, None, state_dir, &options, settings);
    let mut running: HashSet<String> = HashSet::new();
    let mut workers: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        let now = Local::now();
        for s in items.iter_mut().filter(|s| s.due <= now) {
            // A run missed while the machine slept (or while the previous run went on) happens
            // once: the next due time is counted from now, not from the one missed.
            s.due = s.schedule.next_after(&now);
            if running.contains(&s.item.name) {
                say(&format!("{}: still running, this run is skipped", s.item.name));
                continue;
            }
            say(&format!("{}: run", s.item.name));
            running.insert(s.item.name.clone());
            let (item, options, tx, state_dir) = (s.item.clone(), options.clone(), tx.clone(), state_dir.to_path_buf());
            let handle = std::thread::spawn(move || {
                let code = items::run(&item, &state_dir, &options);
                let _ = tx.send(Event::Finished(item.name.clone(), code));
            });
            if let Some(old) = workers.insert(s.item.name.clone(), handle) {
                let _ = old.join();
            }
        }
        let next = items.iter().map(|s| s.due).min();
        let wait = next.map_or(MAX_WAIT, |due| (due - Local::now()).to_std().unwrap_or(Duration::ZERO).min(MAX_WAIT));
        match rx.recv_timeout(wait) {
            Ok(Event::Signal(SIGHUP)) => match load(config_flag.clone(), quiet, &Local::now()) {
                Ok((reloaded, watched)) => {
                    items = reloaded;
                    say(&format!("config reread; {} scheduled items", items.len()));
                    // The watched items start over as the config now has them.
                    watching = Watching::start(watched, watching.take(), state_dir, &options, settings);
                }
                Err(e) => eprintln!("pairsync daemon: config not reread, keeping the old one: {e}"),
            },
            Ok(Event::Signal(_)) => break,
            Ok(Event::Finished(name, code)) => {
                running.remove(&name);
                say(&format!("{name}: finished (exit {})", code.code()));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    say("stopping: letting running syncs finish their current file");
    stop.store(true, Ordering::SeqCst);
    if let Some(watching) = &watching {
        watching.stop.store(true, Ordering::SeqCst);
    }
    for (_, handle) in workers {
        let _ = handle.join();
    }
    if let Some(watching) = watching {
        watching.stop();
    }
    signal_handle.close();
    let _ = signal_thread.join();
    say("stopped");
    Ok(ExitCode::Synced)
}
