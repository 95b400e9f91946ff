//! What the user sees: progress bars on a terminal, plain lines for cron, `-q` for errors only,
//! `--json` for one summary object, and the log file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::HumanBytes;

use crate::app::out::outln;
use crate::app::progress::{self, Progress};
use crate::core::plan::{Action, Plan};
use crate::engine::executor::{Observer, Problem};
use crate::engine::sync::{Reporter, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub struct Console {
    verbosity: Verbosity,
    json: bool,
    dry_run: bool,
    /// Whether this run draws a progress line (a terminal, Normal verbosity, not --json).
    wants_progress: bool,
    /// The line, from the first phase on.
    progress: std::sync::OnceLock<Progress>,
    log: Option<Mutex<File>>,
    /// Set by a signal handler: the run stops after the current file.
    stop: Option<Arc<AtomicBool>>,
    /// Put before every printed line: the item's name, when several items run.
    prefix: String,
    /// Watch mode: a run that changed nothing (the echo of the tool's own writes) is neither
    /// printed nor logged; its start line waits here until something happens.
    quiet_noops: bool,
    pending_start: Mutex<Option<String>>,
    /// A run of an item already known to be skipped (paused in watch mode) says nothing again.
    quiet_skips: bool,
    /// With `--json` for several items: the summary object goes here, with the item's name,
    /// to be printed in one object with the others'.
    json_sink: Option<(String, JsonSink)>,
    /// With `--json`: the actions as they are applied (with `--dry-run`, the plan's) and the
    /// conflicts, for the summary object.
    actions: Mutex<Vec<serde_json::Value>>,
    /// With `--json`: the warnings said, for a summary built here (`mail`; a sync's summary has
    /// its own).
    warnings: Mutex<Vec<serde_json::Value>>,
    /// Copies and bytes that bulk rows left for later will add to the plan's (for the line).
    later: Mutex<(u64, u64)>,
    /// `mail -r` running on: `--json` prints an object per cycle.
    json_cycles: bool,
    /// Whether anything is printed; not when `pairsync console` owns the terminal (the log file
    /// still gets every line).
    terminal: bool,
}

/// Where the JSON summaries of several items' runs gather.
pub type JsonSink = Arc<Mutex<Vec<serde_json::Value>>>;

/// A log file over this size is moved to `NAME.1` (replacing the older one) when opened.
pub const LOG_CAP: u64 = 4 * 1024 * 1024;

/// Opens a log for appending, rotating it first if it grew past [`LOG_CAP`].
pub fn open_log(path: &Path) -> std::io::Result<File> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= LOG_CAP) {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        std::fs::rename(path, rotated)?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl Console {
    /// A plan's conflicts (always) and, for a dry run, its actions: said, logged, or kept for
    /// `--json`.
    fn report_plan(&self, plan: &Plan) {
        if self.json {
            let mut actions = self.actions.lock().unwrap();
            actions.extend(plan.conflicts.iter().map(|c| {
                serde_json::json!({ "kind": "conflict", "path": c.path, "reason": c.reason, "resolution": c.resolution })
            }));
            if self.dry_run {
                actions.extend(plan.actions().filter_map(action_json));
            }
        }
        for conflict in &plan.conflicts {
            self.log(&conflict.to_string());
            if self.json {
                continue;
            }
            // A conflict is something a person must look at: even -q (cron) shows it, on stderr.
            if self.verbosity > Verbosity::Quiet {
                self.say(&conflict.to_string());
            } else {
                self.complain(&conflict.to_string());
            }
        }
        if self.dry_run && !self.json && self.verbosity > Verbosity::Quiet {
            for action in plan.actions().filter(|a| a.touches_a_side() || self.verbosity == Verbosity::Verbose) {
                self.say(&format!("would {action}"));
            }
        }
    }

    /// `log`: a file to append timestamped lines to.
    pub fn new(verbosity: Verbosity, json: bool, dry_run: bool, log: Option<&Path>) -> std::io::Result<Console> {
        let log = match log {
            Some(path) => Some(Mutex::new(open_log(path)?)),
            None => None,
        };
        let when = progress::when();
        let wants_progress =
            when == progress::When::Always || (verbosity == Verbosity::Normal && !json && !dry_run && when.draws());
        Ok(Console {
            verbosity,
            json,
            dry_run,
            wants_progress,
            progress: std::sync::OnceLock::new(),
            log,
            stop: None,
            prefix: String::new(),
            quiet_noops: false,
            pending_start: Mutex::new(None),
            quiet_skips: false,
            json_sink: None,
            actions: Mutex::new(Vec::new()),
            warnings: Mutex::new(Vec::new()),
            later: Mutex::new((0, 0)),
            json_cycles: false,
            terminal: true,
        })
    }

    /// With `--json`, hands the summary object (with `"item": name`) to `sink` instead of
    /// printing it.
    pub fn with_json_sink(mut self, item: &str, sink: JsonSink) -> Console {
        self.json_sink = Some((item.to_string(), sink));
        self
    }

    fn print_json(&self, mut object: serde_json::Value) {
        match &self.json_sink {
            Some((item, sink)) => {
                if let Some(fields) = object.as_object_mut() {
                    fields.insert("item".into(), item.clone().into());
                }
                sink.lock().unwrap().push(object);
            }
            None => outln!("{object}"),
        }
    }

    /// Stops runs after the current file once `flag` is set.
    pub fn with_stop(mut self, flag: Arc<AtomicBool>) -> Console {
        self.stop = Some(flag);
        self
    }

    /// Runs that change nothing print and log nothing (watch mode).
    pub fn with_quiet_noops(mut self) -> Console {
        self.quiet_noops = true;
        // Watch mode and the daemon: runs come and go (several at once), a line would flicker.
        self.wants_progress = false;
        self
    }

    /// A skipped run prints and logs nothing (its item was already reported paused).
    pub fn with_quiet_skips(mut self) -> Console {
        self.quiet_skips = true;
        self
    }

    /// Prints nothing, not even a progress line: the run goes to the log file only (`pairsync
    /// console` draws the screen).
    pub fn without_terminal(mut self) -> Console {
        self.terminal = false;
        self.wants_progress = false;
        self
    }

    /// Prefixes printed lines with `name: `.
    pub fn with_prefix(mut self, name: &str) -> Console {
        self.prefix = format!("{name}: ");
        // Several items (one after the other, or at once in the daemon): their lines, no bar.
        self.wants_progress = false;
        self
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    pub fn log(&self, line: &str) {
        if let Some(start) = self.pending_start.lock().unwrap().take() {
            self.write_log(&start);
        }
        self.write_log(line);
    }

    fn write_log(&self, line: &str) {
        if let Some(log) = &self.log {
            let stamp = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f %:z");
            let _ = writeln!(log.lock().unwrap(), "{stamp} {line}");
        }
    }

    /// The progress line, started on first use when this run draws one.
    fn progress(&self) -> Option<&Progress> {
        if !self.wants_progress {
            return None;
        }
        Some(
            self.progress
                .get_or_init(|| Progress::start(progress::when() == progress::When::Always, self.stop.clone())),
        )
    }

    /// The line if it is being drawn (never starts it).
    fn drawn(&self) -> Option<&Progress> {
        self.progress.get()
    }

    /// Plain output, hidden behind the progress line while it is drawn.
    fn say(&self, line: &str) {
        if !self.terminal {
            return;
        }
        let prefix = &self.prefix;
        match self.drawn() {
            Some(bar) => bar.suspend(|| outln!("{prefix}{line}")),
            None => outln!("{prefix}{line}"),
        }
    }

    fn complain(&self, line: &str) {
        if !self.terminal {
            return;
        }
        let prefix = &self.prefix;
        match self.drawn() {
            Some(bar) => bar.suspend(|| eprintln!("pairsync: {prefix}{line}")),
            None => eprintln!("pairsync: {prefix}{line}"),
        }
    }

    pub fn started(&self, source: &str, destination: &str) {
        let line = format!("start {source} -> {destination}");
        if self.quiet_noops {
            *self.pending_start.lock().unwrap() = Some(line);
        } else {
            self.log(&line);
        }
    }

    /// A run that ended before syncing (bad input, file check, safety stop, lock).
    pub fn stopped(&self, error: &crate::core::error::Error) {
        if let Some(bar) = self.drawn() {
            bar.finish();
        }
        if self.quiet_skips {
            self.pending_start.lock().unwrap().take();
            return;
        }
        self.log(&format!("skipped: {} (exit {})", error.chain(), error.exit_code().code()));
        if self.json {
            self.print_json(serde_json::json!({ "error": error.chain(), "exit_code": error.exit_code().code() }));
        }
        if self.terminal {
            eprintln!("pairsync: {}{}", self.prefix, error.chain());
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// `--json` prints an object per rolling cycle (`mail -r`, not `-1`), each with its actions.
    pub fn with_json_cycles(mut self, on: bool) -> Console {
        self.json_cycles = on;
        self
    }

    pub fn json_cycles(&self) -> bool {
        self.json && self.json_cycles
    }

    /// Prints `object` (a summary made by the caller: `mail`) as `--json` does, with the
    /// actions applied and the warnings said since the last one.
    pub fn print_summary_json(&self, mut object: serde_json::Value) {
        let actions = std::mem::take(&mut *self.actions.lock().unwrap());
        let warnings = std::mem::take(&mut *self.warnings.lock().unwrap());
        if let Some(fields) = object.as_object_mut() {
            fields.insert("actions".into(), actions.into());
            fields.insert("warnings".into(), warnings.into());
        }
        self.print_json(object);
    }

    pub fn finished(&self, summary: &Summary) {
        if let Some(bar) = self.drawn() {
            bar.finish();
        }
        let t = &summary.tally;
        let nothing = t.copied + t.deleted + t.renamed + t.folders_created == 0
            && summary.problems.is_empty()
            && summary.conflicts.is_empty();
        if self.quiet_noops && nothing {
            self.pending_start.lock().unwrap().take();
            return;
        }
        let line = summary_line(summary);
        self.log(&format!("end {line} (exit {})", summary.exit_code));
        if self.json {
            let mut object = serde_json::to_value(summary).expect("summary serializes");
            let actions = std::mem::take(&mut *self.actions.lock().unwrap());
            if let Some(fields) = object.as_object_mut() {
                fields.insert("actions".into(), actions.into());
            }
            self.print_json(object);
        } else if self.verbosity > Verbosity::Quiet && self.terminal {
            outln!("pairsync: {}{line}", self.prefix);
        }
    }
}

/// An action as `--json` lists it; `None` for what touches no side (a state record).
pub fn action_json(action: &Action) -> Option<serde_json::Value> {
    use serde_json::json;
    Some(match action {
        Action::Copy { from, path, entry, replaces } => json!({
            "kind": "copy", "path": path, "side": from.other(), "from": from, "bytes": entry.size,
            "replaces": replaces.is_some(),
        }),
        Action::Mkdir { side, path } => json!({ "kind": "mkdir", "path": path, "side": side }),
        Action::Delete { side, path, entry } if entry.is_dir() => {
            json!({ "kind": "rmdir", "path": path, "side": side })
        }
        Action::Delete { side, path, entry } => {
            json!({ "kind": "delete", "path": path, "side": side, "bytes": entry.size })
        }
        // With a counterpart a rename carried from the other side; without, a conflicting file
        // set aside under a new name.
        Action::Rename { side, from, to, counterpart, entry } => json!({
            "kind": if counterpart.is_some() { "rename" } else { "set-aside" },
            "path": to, "old_path": from, "side": side, "bytes": entry.size,
        }),
        Action::Record { .. } | Action::Forget { .. } => return None,
    })
}

pub fn summary_line(s: &Summary) -> String {
    let t = &s.tally;
    let (copied, deleted) = if s.dry_run { ("would copy", "would delete") } else { ("copied", "deleted") };
    let stopped = if s.interrupted { " (stopped by a signal; the next run finishes)" } else { "" };
    let kept = match t.versioned {
        0 => String::new(),
        1 => ", kept 1 old version".to_string(),
        n => format!(", kept {n} old versions"),
    };
    format!(
        "{} -> {} ({}): {copied} {} ({}), {deleted} {}, renamed {}{kept}, {} conflicts, {} problems in {:.2} \
         s{stopped}",
        s.source,
        s.destination,
        s.mode,
        t.copied,
        HumanBytes(t.bytes),
        t.deleted,
        t.renamed,
        s.conflicts.len(),
        s.problems.len(),
        s.seconds
    )
}

impl Observer for Console {
    fn should_stop(&self) -> bool {
        self.stop.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    fn applied(&self, action: &Action) {
        if let (Some(bar), Action::Copy { entry, .. }) = (self.drawn(), action) {
            bar.copied(entry.size);
        }
        if self.json && !self.dry_run {
            self.actions.lock().unwrap().extend(action_json(action));
        }
        if action.touches_a_side() {
            if self.verbosity == Verbosity::Verbose && !self.json {
                self.say(&action.to_string());
            }
            self.log(&action.to_string());
        }
    }

    fn problem(&self, problem: &Problem) {
        self.log(&format!("problem {problem}"));
        self.complain(&format!("problem: {problem}"));
    }
}

impl Reporter for Console {
    fn warning(&self, message: &str) {
        if self.json {
            self.warnings.lock().unwrap().push(serde_json::json!({ "path": "", "message": message }));
        }
        self.log(&format!("warning {message}"));
        if self.verbosity > Verbosity::Quiet {
            self.complain(&format!("warning: {message}"));
        }
    }

    fn skipped(&self, message: &str) {
        if self.json {
            self.warnings.lock().unwrap().push(serde_json::json!({ "path": "", "message": message }));
        }
        self.log(&format!("warning {message}"));
        self.complain(&format!("warning: {message}"));
    }

    fn planned(&self, plan: &Plan) {
        self.report_plan(plan);
        if let Some(bar) = self.drawn() {
            let later = *self.later.lock().unwrap();
            let (files, bytes) = plan.actions().fold(later, |(files, bytes), a| match a {
                Action::Copy { entry, .. } => (files + 1, bytes + entry.size),
                _ => (files, bytes),
            });
            if files > 0 {
                bar.copying(files, bytes);
            } else {
                bar.finish();
            }
        }
    }

    fn expect_later(&self, copies: u64, bytes: u64) {
        *self.later.lock().unwrap() = (copies, bytes);
    }

    fn planned_later(&self, plan: &Plan) {
        self.report_plan(plan);
    }

    fn scanning(&self, counts: [Option<Arc<std::sync::atomic::AtomicUsize>>; 2]) {
        if let Some(bar) = self.progress() {
            let [source, destination] = counts;
            bar.scanning(vec![("source", source), ("destination", destination)]);
        }
    }

    fn planning(&self) {
        if let Some(bar) = self.drawn() {
            bar.planning();
        }
    }
}
