//! Watch mode: live sync. Each item is synced in full first; then every change notify (inotify)
//! reports on a local side is synced within moments, each batch as a run scoped to the paths
//! that changed: the same planner, state and safety as a full run, without rescanning the rest.
//!
//! - Debounce: a batch runs once its item has been quiet for `quiet`, and at least every
//!   `max_delay` while changes keep coming.
//! - A full run happens at start, when the kernel's event queue overflowed, every `rescan`, and,
//!   for items with an FTP side (nothing to watch there), every `poll`.
//! - When the inotify watch limit is exhausted the item falls back to polling, with a warning
//!   naming fs.inotify.max_user_watches.
//! - The tool's own writes raise events too; they lead to one scoped run that finds nothing to
//!   do, never to a loop. Its temp files are not even looked at.
//! - A file check that stops holding (a drive unplugged) pauses the item, with a log line; it is
//!   retried every `poll` and resumes when the check holds again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use crate::app::items::{self, RunOptions};
use crate::app::out::outln;
use crate::config::{EndpointKind, Item};
use crate::core::debounce::Debounce;
use crate::core::exit::ExitCode;

#[derive(Debug, Clone)]
pub struct WatchSettings {
    pub quiet: Duration,
    pub max_delay: Duration,
    pub rescan: Duration,
    pub poll: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            quiet: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            rescan: Duration::from_secs(3600),
            poll: Duration::from_secs(60),
        }
    }
}

/// A batch of more changed paths than this is synced as a full run.
const MAX_SCOPE: usize = 2000;

enum Seen {
    /// Item index, relative path that changed.
    Path(usize, String),
    /// The item's events were lost (queue overflow): rescan it all.
    Rescan(usize),
}

/// One watched item.
struct Watched {
    item: Item,
    /// Changed paths (relative) not yet synced, and when they are due.
    changes: Debounce<String>,
    full_due: Instant,
    /// Its file check did not hold at the last try.
    paused: bool,
    /// Sides watched by polling (FTP, or the watch limit was reached): full runs every `poll`.
    polled: bool,
    _watchers: Vec<Box<dyn Watcher + Send>>,
}

fn local_root(side: &crate::config::SideConfig) -> Option<PathBuf> {
    (side.kind == EndpointKind::Directory)
        .then(|| Path::new(&side.directory).canonicalize().unwrap_or_else(|_| PathBuf::from(&side.directory)))
}

/// The path below `root`, '/'-separated; `None` outside it, for the root itself, or for one of
/// the tool's temp files.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?.to_str()?.replace(std::path::MAIN_SEPARATOR, "/");
    // A temp file or folder of any pair (the same rule as the scans'), or anything in one.
    let temp = rel.split('/').any(|name| crate::endpoint::temp_owner(name, "").is_some());
    (!rel.is_empty() && !temp).then_some(rel)
}

/// Watches `items` until `stop` is set. Returns the worst exit code of the runs.
pub fn run(items: Vec<Item>, state_dir: &Path, options: &RunOptions, settings: &WatchSettings) -> ExitCode {
    let stop = options.stop.clone().unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    let say = |line: &str| {
        if options.verbosity > crate::app::report::Verbosity::Quiet {
            outln!("pairsync watch: {line}");
        }
    };
    let (tx, rx) = mpsc::channel::<Seen>();
    let mut watched: Vec<Watched> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let mut watchers: Vec<Box<dyn Watcher + Send>> = Vec::new();
        let mut polled = false;
        for side in [&item.source, &item.destination] {
            let Some(root) = local_root(side) else {
                polled = true; // FTP: polled
                continue;
            };
            let (tx, root_for_events) = (tx.clone(), root.clone());
            let handler = move |event: notify::Result<notify::Event>| match event {
                Ok(event) if event.need_rescan() => {
                    let _ = tx.send(Seen::Rescan(index));
                }
                // Opening or reading (our own scans list folders) changes nothing: counted, those
                // events would keep the watcher rescanning forever.
                Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
                Ok(event) => {
                    for path in event.paths {
                        if let Some(rel) = relative(&root_for_events, &path) {
                            let _ = tx.send(Seen::Path(index, rel));
                        }
                    }
                }
                Err(_) => {
                    let _ = tx.send(Seen::Rescan(index));
                }
            };
            match notify::recommended_watcher(handler.clone())
                .and_then(|mut w| w.watch(&root, RecursiveMode::Recursive).map(|()| w))
            {
                Ok(w) => watchers.push(Box::new(w)),
                Err(e) => {
                    let why = if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                        "the inotify watch limit is reached (raise fs.inotify.max_user_watches)".to_string()
                    } else {
                        e.to_string()
                    };
                    eprintln!(
                        "pairsync watch: {}: cannot watch {} ({why}); polling instead",
                        item.name,
                        root.display()
                    );
                    let config = notify::Config::default().with_poll_interval(settings.max_delay);
                    match notify::PollWatcher::new(handler, config)
                        .and_then(|mut w| w.watch(&root, RecursiveMode::Recursive).map(|()| w))
                    {
                        Ok(w) => watchers.push(Box::new(w)),
                        Err(_) => polled = true,
                    }
                }
            }
        }
        watched.push(Watched {
            item,
            changes: Debounce::new(settings.quiet, settings.max_delay),
            full_due: Instant::now(),
            paused: false,
            polled,
            _watchers: watchers,
        });
    }
    say(&format!("watching {} items", watched.len()));

    let mut worst = ExitCode::Synced;
    let mut sync = |w: &mut Watched, scope: Option<Vec<String>>| {
        // A paused item's skipped runs say nothing: its pause was reported once.
        let options = RunOptions { quiet_skips: w.paused, ..options.clone() };
        let code = items::run_scoped(&w.item, state_dir, &options, scope);
        let announce = |line: &str| {
            say(&format!("{}: {line}", w.item.name));
            items::log_line(&w.item, state_dir, line);
        };
        match code {
            ExitCode::CheckFailed if !w.paused => {
                announce(&format!("paused: its file check does not hold; retried every {} s", settings.poll.as_secs()));
                w.paused = true;
                // Retried by full runs every `poll` from now on (the next one may be an hour away).
                w.full_due = w.full_due.min(Instant::now() + settings.poll);
            }
            ExitCode::CheckFailed => {}
            _ if w.paused => {
                announce("resumed: its file check holds again");
                w.paused = false;
            }
            _ => {}
        }
        worst = worst.merge(if code == ExitCode::CheckFailed { ExitCode::Synced } else { code });
        code
    };
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for w in watched.iter_mut() {
            let full_every = if w.polled || w.paused { settings.poll.min(settings.rescan) } else { settings.rescan };
            if now >= w.full_due {
                // The full run covers whatever changed.
                w.changes.clear();
                sync(w, None);
                w.full_due = Instant::now() + full_every;
            } else if !w.paused {
                if let Some(changed) = w.changes.take(now) {
                    // A batch this large (a burst, the echo of a big copy) is cheaper, and the
                    // same, as a full run.
                    let scope = (changed.len() <= MAX_SCOPE).then(|| changed.into_iter().collect());
                    sync(w, scope);
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        // Sleep until the next thing is due, or an event or a signal comes.
        let now = Instant::now();
        // A paused item's burst waits for its next full run, so its passed deadline must not
        // wake the loop: it would spin at full speed until then.
        let next = watched
            .iter()
            .flat_map(|w| [Some(w.full_due), (!w.paused).then(|| w.changes.deadline()).flatten()])
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        // Bounded so that a stop request is seen within a moment even when nothing happens.
        let wait = next.saturating_duration_since(now).min(Duration::from_millis(500));
        match rx.recv_timeout(wait) {
            Ok(seen) => {
                let mut take = |seen: Seen| match seen {
                    Seen::Path(i, rel) => watched[i].changes.touch(Instant::now(), rel),
                    Seen::Rescan(i) => {
                        if watched[i].full_due > Instant::now() {
                            eprintln!(
                                "pairsync watch: {}: events were lost (queue overflow); full rescan",
                                watched[i].item.name
                            );
                        }
                        watched[i].full_due = Instant::now();
                    }
                };
                take(seen);
                // Drain what else is queued without waiting.
                while let Ok(more) = rx.try_recv() {
                    take(more);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    say("stopped");
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_on_temp_files_and_folders_are_not_changes() {
        let root = Path::new("/r");
        let rel = |p: &str| relative(root, Path::new(p));
        assert_eq!(rel("/r/a/b.txt").as_deref(), Some("a/b.txt"));
        assert_eq!(rel("/r/.pairsync-notes.tmp").as_deref(), Some(".pairsync-notes.tmp"));
        assert_eq!(rel("/r/a/.pairsync-0123abcd-7-1.tmp"), None);
        assert_eq!(rel("/r/a/.pairsync-deadbeef-7-1.tmp/f"), None);
        assert_eq!(rel("/r"), None);
        assert_eq!(rel("/elsewhere/x"), None);
    }
}
