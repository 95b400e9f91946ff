//! Named items (the seed's "Sync Now"): an item of the config file run as a pair, its log
//! file, and its last-run record, which `list` shows.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::app::report::{summary_line, Console, Verbosity};
use crate::config::job::{job, shown};
use crate::config::Item;
use crate::core::error::Error;
use crate::core::exit::ExitCode;
use crate::core::plan::{Action, Plan};
use crate::engine::executor::{Observer, Problem};
use crate::engine::job::Job;
use crate::engine::sync::{sync, Reporter};

/// Where an item logs: its `log` field, or `<state dir>/logs/<name>.log`.
pub fn log_path(item: &Item, state_dir: &Path) -> PathBuf {
    item.log.clone().unwrap_or_else(|| state_dir.join("logs").join(format!("{}.log", item.name)))
}

/// How an item's last run ended, kept in `<state dir>/items/<name>.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LastRun {
    /// Local time, RFC 3339.
    pub started: String,
    pub seconds: f64,
    pub exit_code: u8,
    /// The summary line, or why the run was skipped.
    pub result: String,
}

fn last_run_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("items").join(format!("{name}.json"))
}

pub fn last_run(state_dir: &Path, name: &str) -> Option<LastRun> {
    let text = std::fs::read_to_string(last_run_path(state_dir, name)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the record atomically (temp file, then rename).
fn record_last_run(state_dir: &Path, name: &str, run: &LastRun) -> std::io::Result<()> {
    let path = last_run_path(state_dir, name);
    std::fs::create_dir_all(path.parent().expect("under the state dir"))?;
    let temp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::write(&temp, serde_json::to_vec(run).expect("serializes"))?;
    std::fs::rename(&temp, &path)
}

/// Appends one timestamped line to an item's log.
pub fn log_line(item: &Item, state_dir: &Path, line: &str) {
    if let Ok(console) = Console::new(Verbosity::Quiet, false, false, Some(&log_path(item, state_dir))) {
        console.log(line);
    }
}

/// Forgets an item's last run (`delete --purge-state`).
pub fn forget_last_run(state_dir: &Path, name: &str) {
    let _ = std::fs::remove_file(last_run_path(state_dir, name));
}

/// How `run` and the daemon print and stop a run.
#[derive(Clone)]
pub struct RunOptions {
    pub verbosity: Verbosity,
    pub json: bool,
    /// Prefix printed lines with the item's name (several items in one command).
    pub prefixed: bool,
    pub stop: Option<Arc<AtomicBool>>,
    /// Runs that change nothing print and log nothing (watch mode).
    pub quiet_noops: bool,
    /// A skipped run prints and logs nothing (a paused item, already reported).
    pub quiet_skips: bool,
    /// `--json` for several items: each summary goes here (see [`crate::app::report::JsonSink`]).
    pub json_sink: Option<crate::app::report::JsonSink>,
    /// `run --dry-run`: print the plan, change nothing, log and record nothing.
    pub dry_run: bool,
    /// `run --force`: pass the empty-side and max-delete safety stops.
    pub force: bool,
    /// `pairsync console`: its screen, told all the run reports besides the log file. Nothing
    /// is printed then: the screen owns the terminal.
    pub screen: Option<Arc<dyn Reporter + Send>>,
}

impl RunOptions {
    /// Plain runs at `verbosity`: no JSON, no prefix, no stop flag, nothing silenced.
    pub fn new(verbosity: Verbosity) -> RunOptions {
        RunOptions {
            verbosity,
            json: false,
            prefixed: false,
            stop: None,
            quiet_noops: false,
            quiet_skips: false,
            json_sink: None,
            dry_run: false,
            force: false,
            screen: None,
        }
    }
}

/// Syncs an item now: logs to its log file, records its last run, returns its exit code.
pub fn run(item: &Item, state_dir: &Path, options: &RunOptions) -> ExitCode {
    run_scoped(item, state_dir, options, None)
}

/// The same, planning only `scope` (the paths a watcher saw change) when given.
pub fn run_scoped(item: &Item, state_dir: &Path, options: &RunOptions, scope: Option<Vec<String>>) -> ExitCode {
    let log = log_path(item, state_dir);
    // A dry run leaves the state folder as it was: no log line there, no last-run record.
    let log_file = (!options.dry_run).then_some(log.as_path());
    let console = match Console::new(options.verbosity, options.json, options.dry_run, log_file) {
        Ok(console) => console,
        Err(e) => {
            let message = format!("log file {}: {e}", log.display());
            match &options.screen {
                Some(screen) => screen.warning(&message),
                None => eprintln!("pairsync: {}: {message}", item.name),
            }
            if let Some(sink) = &options.json_sink {
                let object =
                    serde_json::json!({ "item": item.name, "error": message, "exit_code": ExitCode::Usage.code() });
                sink.lock().unwrap().push(object);
            }
            return ExitCode::Usage;
        }
    };
    let console = if options.prefixed { console.with_prefix(&item.name) } else { console };
    let console = if options.quiet_noops { console.with_quiet_noops() } else { console };
    let console = if options.quiet_skips { console.with_quiet_skips() } else { console };
    let console = match &options.json_sink {
        Some(sink) => console.with_json_sink(&item.name, sink.clone()),
        None => console,
    };
    let console = match &options.stop {
        Some(flag) => console.with_stop(flag.clone()),
        None => console,
    };
    let console = if options.screen.is_some() { console.without_terminal() } else { console };
    let (source, destination) = (shown(&item.source), shown(&item.destination));
    console.started(&format!("item {} {source}", item.name), &destination);
    let started = chrono::Local::now();
    let job = job(item, state_dir).map(|job| Job { scope, dry_run: options.dry_run, force: options.force, ..job });
    let both;
    let reporter: &dyn Reporter = match &options.screen {
        Some(screen) => {
            both = Both(&console, screen.as_ref());
            &both
        }
        None => &console,
    };
    let (exit, result) = match job.and_then(|job| sync(&job, reporter)) {
        Ok(summary) => {
            console.finished(&summary);
            (summary.exit(), summary_line(&summary))
        }
        Err(error) => {
            console.stopped(&error);
            (error.exit_code(), error.chain())
        }
    };
    let record = LastRun {
        started: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        seconds: (chrono::Local::now() - started).num_milliseconds() as f64 / 1000.0,
        exit_code: exit.code(),
        result,
    };
    if options.dry_run {
        return exit;
    }
    if let Err(e) = record_last_run(state_dir, &item.name, &record) {
        console.log(&format!("warning cannot record the last run: {e}"));
    }
    exit
}

/// The console and a screen, told the same.
struct Both<'a>(&'a Console, &'a (dyn Reporter + Send));

impl Observer for Both<'_> {
    fn applied(&self, action: &Action) {
        self.0.applied(action);
        self.1.applied(action);
    }

    fn problem(&self, problem: &Problem) {
        self.0.problem(problem);
        self.1.problem(problem);
    }

    fn should_stop(&self) -> bool {
        self.0.should_stop() || self.1.should_stop()
    }
}

impl Reporter for Both<'_> {
    fn warning(&self, message: &str) {
        self.0.warning(message);
        self.1.warning(message);
    }

    fn skipped(&self, message: &str) {
        self.0.skipped(message);
        self.1.skipped(message);
    }

    fn planned(&self, plan: &Plan) {
        self.0.planned(plan);
        self.1.planned(plan);
    }

    fn expect_later(&self, copies: u64, bytes: u64) {
        self.0.expect_later(copies, bytes);
        self.1.expect_later(copies, bytes);
    }

    fn planned_later(&self, plan: &Plan) {
        self.0.planned_later(plan);
        self.1.planned_later(plan);
    }

    fn scanning(&self, counts: [Option<Arc<std::sync::atomic::AtomicUsize>>; 2]) {
        self.0.scanning(counts.clone());
        self.1.scanning(counts);
    }

    fn planning(&self) {
        self.0.planning();
        self.1.planning();
    }
}

/// A config error as a usage error (exit 2), its message unchanged.
pub fn config_error(e: crate::config::ConfigError) -> Error {
    Error::Usage(e.to_string())
}
