//! One run of a pair, as a pipeline of named stages, each a function returning what the next
//! one needs:
//!
//! open -> gate -> filter -> lock + state -> scan -> plan (with the safety check) -> apply |
//! tally -> summary.
//!
//! Nothing is written to a side or to the state before the safety check has passed: the
//! stages before it only read.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Instant;

use crate::core::check::CHECK_FILE_LIMIT;
use crate::core::error::{Error, Result};
use crate::core::exit::ExitCode;
use crate::core::filter::Filter;
use crate::core::model::{Entry, Kind, Side, Snapshot, State, StateRecord};
use crate::core::plan::{self, Conflict, Mode, Plan, PlanOptions};
use crate::core::safety;
use crate::endpoint::spec::{self, EndpointSpec};
use crate::endpoint::{Endpoint, ErrorKind, IssueKind, Scan};
use crate::engine::executor::{Executor, Observer, Outcome, Problem, Tally};
use crate::engine::job::{canonical_sides, pair_id_in, Job};
use crate::engine::scope::{scope_parts, Scope};
use crate::engine::stream;
use crate::engine::versions::Versions;
use crate::state::{Opened, PairLock, StateDb};

/// What a sync did (or, with `dry_run`, would do).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub source: String,
    pub destination: String,
    pub mode: Mode,
    pub dry_run: bool,
    #[serde(flatten)]
    pub tally: Tally,
    pub conflicts: Vec<Conflict>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Warning>,
    pub seconds: f64,
    /// Seconds spent scanning (both sides and the state, at once), planning (with hashing),
    /// and applying.
    pub phases: Phases,
    /// Stopped by a signal before the plan was done; the next run does the rest.
    pub interrupted: bool,
    pub exit_code: u8,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Phases {
    pub scan: f64,
    pub plan: f64,
    pub apply: f64,
}

impl Summary {
    pub fn exit(&self) -> ExitCode {
        // A run stopped by a signal is not in sync either: the next run finishes it.
        if self.problems.is_empty() && !self.interrupted {
            ExitCode::Synced
        } else {
            ExitCode::Problems
        }
    }
}

/// Reports what a sync finds before it acts: notices, the plan (for a dry run).
pub trait Reporter: Observer {
    fn warning(&self, _message: &str) {}
    /// An entry left out of the run (a symbolic link, a special file): a warning that cron
    /// must see too, so shown even where warnings are not.
    fn skipped(&self, message: &str) {
        self.warning(message)
    }
    fn planned(&self, _plan: &Plan) {}
    /// Before [`Reporter::planned`]: the copies (and bytes) that bulk rows left for later will
    /// likely add (see [`crate::engine::stream::Later`]).
    fn expect_later(&self, _copies: u64, _bytes: u64) {}
    /// A batch of the bulk rows left for later was planned: its conflicts (and, for a dry run,
    /// its actions), after the plan given to [`Reporter::planned`].
    fn planned_later(&self, _plan: &Plan) {}
    /// The sides are being listed, each with its live count of entries (see
    /// [`crate::endpoint::Endpoint::scan_progress`]).
    fn scanning(&self, _counts: [Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>; 2]) {}
    /// The listing is done; the plan (and any hashing for it) is being made.
    fn planning(&self) {}
}

/// Copies run on this many threads.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4)
}

/// A warning of a run, as `--json` gives it: the path it is about ("" for the run) and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

/// The warnings of a run: reported as they come (as one line), and kept for the summary.
struct Warnings<'r> {
    reporter: &'r dyn Reporter,
    said: Vec<Warning>,
}

impl Warnings<'_> {
    fn warn(&mut self, message: String) {
        self.reporter.warning(&message);
        self.said.push(Warning { path: String::new(), message });
    }

    /// A warning about `path`, shown as `line`.
    fn warn_at(&mut self, path: &str, message: String, line: &str) {
        self.reporter.warning(line);
        self.said.push(Warning { path: path.to_string(), message });
    }

    /// An entry left out of the run: a warning shown even where warnings are not.
    fn skipped(&mut self, side: Side, path: &str, message: &str) {
        self.reporter.skipped(&format!("{side}: {path}: {message}"));
        self.said.push(Warning { path: path.to_string(), message: format!("{side}: {message}") });
    }
}

/// Both sides, open.
struct Sides {
    specs: [EndpointSpec; 2],
    endpoints: [Box<dyn Endpoint>; 2],
    /// The pair's id, and the first 8 hex digits of it that name its temp files.
    id: String,
}

impl Sides {
    fn get(&self) -> [&dyn Endpoint; 2] {
        [self.endpoints[0].as_ref(), self.endpoints[1].as_ref()]
    }

    fn urls(&self) -> [String; 2] {
        [self.specs[0].url(), self.specs[1].url()]
    }
}

pub fn sync(job: &Job, reporter: &dyn Reporter) -> Result<Summary> {
    let started = Instant::now();
    // Names this run's versions folder (--backup-dir), if it keeps any.
    let stamp = chrono::Local::now().format(crate::core::versions::STAMP_FORMAT).to_string();
    let mut warnings = Warnings { reporter, said: Vec::new() };
    let sides = open(job)?;
    let destination_to_create = gate(job, &sides)?;
    for notice in job.notices.iter().cloned().chain(tls_warnings(job)) {
        warnings.warn(notice);
    }
    let filter = pair_filter(job, &sides)?;
    let filter = filter.as_ref().unwrap_or(&job.filter);
    let _lock = if job.dry_run {
        PairLock::acquire_to_read(&job.state_dir, &sides.id)?
    } else {
        PairLock::acquire(&job.state_dir, &sides.id)?
    };
    let db = open_state(job, &sides, &mut warnings)?;

    let mut phases = Phases::default();
    let mut clock = Instant::now();
    let mut lap = |phase: &mut f64| {
        *phase = clock.elapsed().as_secs_f64();
        clock = Instant::now();
    };
    reporter.scanning([sides.endpoints[0].scan_progress(), sides.endpoints[1].scan_progress()]);
    let scanned = scan(job, &sides, filter, &db, &mut warnings, destination_to_create)?;
    reporter.planning();
    lap(&mut phases.scan);
    let Scanned { leftovers, mut problems, later, .. } = scanned;
    let empty = [false, destination_to_create];
    let (mut state, mut snapshots) = (scanned.state, scanned.snapshots);
    let renames = with_rename_targets(job, &sides, filter, &db, &later, empty, &mut state, &mut snapshots)?;
    let options =
        PlanOptions { conflict_stamp: chrono::Local::now().format("%Y%m%d-%H%M%S").to_string(), ..job.options.clone() };
    let mut plan = plan_and_check(job, &sides, filter, &db, &options, (state, snapshots), scanned.counts)?;
    if !later.folders.is_empty() {
        reporter.expect_later(later.copies, later.bytes);
    }
    reporter.planned(&plan);
    lap(&mut phases.plan);

    let versions = job.backup.clone().map(|backup| Versions::new(backup, stamp));
    let executor = Executor {
        endpoints: sides.get(),
        observer: reporter,
        workers: workers().max(sides.endpoints[0].parallelism()).max(sides.endpoints[1].parallelism()),
        durable: job.mode == Mode::TwoWay,
        versions: versions.as_ref(),
    };
    let mut outcome = if job.dry_run {
        Outcome { tally: Tally::of(&plan), ..Outcome::default() }
    } else {
        executor.apply(&plan, &db)?
    };
    // The plan's memory is given back before the bulk rows are planned; the later pass needs
    // only the folders it made.
    let made: HashSet<String> =
        plan.actions().filter(|a| matches!(a, plan::Action::Mkdir { .. })).map(|a| a.path().to_string()).collect();
    let mut conflicts = std::mem::take(&mut plan.conflicts);
    drop(plan);
    if !later.folders.is_empty() && !outcome.interrupted {
        let failed = problems.iter().chain(&outcome.problems).map(|p| p.path.clone()).collect();
        let run = LaterRun {
            job,
            sides: &sides,
            filter,
            db: &db,
            empty,
            options: &options,
            renames: &renames,
            made,
            reporter,
        };
        run.apply(&later.folders, failed, (!job.dry_run).then_some(&executor), &mut outcome, &mut conflicts)?;
    }
    problems.extend(std::mem::take(&mut outcome.problems));
    if !job.dry_run {
        remove_leftovers(&sides, &leftovers, &mut warnings);
        for warning in versions.map(|v| v.prune(sides.get())).unwrap_or_default() {
            warnings.warn(warning);
        }
    }
    let (tally, interrupted) = (outcome.tally, outcome.interrupted);
    lap(&mut phases.apply);
    let [source, destination] = sides.urls();
    let mut summary = Summary {
        source,
        destination,
        mode: job.mode,
        dry_run: job.dry_run,
        tally,
        conflicts,
        problems,
        warnings: warnings.said,
        seconds: started.elapsed().as_secs_f64(),
        phases,
        interrupted,
        exit_code: 0,
    };
    summary.exit_code = summary.exit().code();
    Ok(summary)
}

/// Stage "open": both sides, canonical and checked to be two different folders, opened. An
/// FTP server that cannot be reached or refuses the login is [`Error::Unreachable`].
fn open(job: &Job) -> Result<Sides> {
    let specs = canonical_sides(&job.sides).map_err(|e| Error::Usage(e.to_string()))?;
    let id = pair_id_in(&job.state_dir, job.mode, [&specs[0].url(), &specs[1].url()]);
    let tag = &id[..8];
    let open_one = |side: Side| {
        let spec = &specs[side.index()];
        spec::open(spec, &job.auth[side.index()], tag, job.connections)
            .map_err(|e| Error::Unreachable { what: spec.url(), source: Box::new(e) })
    };
    let endpoints = [open_one(Side::Source)?, open_one(Side::Destination)?];
    Ok(Sides { specs, endpoints, id })
}

fn tls_warnings(job: &Job) -> impl Iterator<Item = String> + '_ {
    Side::BOTH.into_iter().filter_map(|side| {
        let tls = matches!(&job.sides[side.index()], EndpointSpec::Ftp(url) if url.tls);
        (tls && job.auth[side.index()].insecure_tls).then(|| {
            format!("the {side}'s FTPS certificate is NOT verified (--insecure-tls): the connection can be intercepted")
        })
    })
}

/// Stage "gate": a wrong or missing drive is recognized before anything else looks at it (the
/// file checks), then both roots must be there (a safety stop, or unreachable).
/// Returns true when the destination is a folder a first run would create: a dry run then
/// plans as if it were there, empty.
fn gate(job: &Job, sides: &Sides) -> Result<bool> {
    let endpoints = sides.get();
    for (side, check) in Side::BOTH.into_iter().zip(&job.checks) {
        if let Some(check) = check {
            let found = endpoints[side.index()]
                .read_check_file(&check.path, CHECK_FILE_LIMIT)
                .map_err(|e| Error::Check { side, reason: format!("cannot read {}: {e}", check.path) })?;
            check.judge(side, found.as_deref())?;
        }
    }
    // A first run may create its destination, as rsync does (`sync src /backup/new`); once the
    // pair has state, a missing root is an unmounted drive: a safety stop.
    let mut to_create = false;
    if let EndpointSpec::Local(root) = &sides.specs[1] {
        let first_run = !job.state_dir.join("pairs").join(&sides.id).exists();
        if first_run && !root.exists() && root.parent().is_some_and(Path::is_dir) {
            if job.dry_run {
                to_create = true;
            } else {
                std::fs::create_dir(root).map_err(|e| {
                    Error::Safety(format!("the destination root {} cannot be created: {e}", root.display()))
                })?;
            }
        }
    }
    for (side, endpoint) in Side::BOTH.into_iter().zip(endpoints) {
        if to_create && side == Side::Destination {
            continue;
        }
        endpoint.check_root().map_err(|e| match e.kind() {
            ErrorKind::Unreachable => {
                Error::Unreachable { what: format!("the {side} {}", endpoint.url()), source: Box::new(e) }
            }
            _ => Error::Safety(format!("the {side} root {} is missing or unreadable: {e}", endpoint.url())),
        })?;
    }
    Ok(to_create)
}

/// Stage "filter": the job's filter, plus what this pair hides of itself: the state folder
/// inside a root (its files change under the run's feet, and a copy of a live sled database is
/// worse than useless), the versions folder (`--backup-dir`: old versions are never synced or
/// deleted), and a check file given by an absolute path inside its own root (a relative one is
/// in the job's filter already): a drive's marker copied to the other side would vouch for it.
/// `None`: the job's filter as it is.
fn pair_filter(job: &Job, sides: &Sides) -> Result<Option<Filter>> {
    let state_dir = job.state_dir.canonicalize().unwrap_or_else(|_| job.state_dir.clone());
    let state_inside = sides.specs.iter().filter_map(|spec| match spec {
        EndpointSpec::Local(root) => state_dir.strip_prefix(root).ok().filter(|rel| !rel.as_os_str().is_empty()),
        EndpointSpec::Ftp(_) => None,
    });
    let mut patterns: Vec<(&'static str, String)> = state_inside
        .filter_map(|rel| rel.to_str())
        .map(|rel| ("state folder", format!("^{}(/|$)", regex::escape(rel))))
        .collect();
    if let Some(backup) = &job.backup {
        patterns.push(("versions folder", format!("^{}(/|$)", regex::escape(&backup.dir))));
    }
    let markers = job.checks.iter().zip(&sides.specs).filter_map(|(check, spec)| {
        let rel = marker_inside(spec, Path::new(&check.as_ref()?.path))?;
        Some(("file check", format!("^{}$", regex::escape(&rel))))
    });
    patterns.extend(markers);
    if patterns.is_empty() {
        return Ok(None);
    }
    job.filter.with(patterns).map(Some)
}

/// The check file `path` relative to the root of `spec`, when it is an absolute path inside it.
fn marker_inside(spec: &EndpointSpec, path: &Path) -> Option<String> {
    if !path.is_absolute() {
        return None;
    }
    match spec {
        EndpointSpec::Local(root) => {
            // The root is canonical: so must be the folder of the file, to compare.
            let full = path.parent()?.canonicalize().ok()?.join(path.file_name()?);
            Some(full.strip_prefix(root).ok()?.to_str()?.to_string())
        }
        EndpointSpec::Ftp(url) => {
            // By components, so that "//" or "/./" in the check path make no difference.
            let dir = if url.dir.is_empty() { "/" } else { url.dir.as_str() };
            let names: Option<Vec<&str>> = path
                .strip_prefix(dir)
                .ok()?
                .components()
                .filter(|c| *c != std::path::Component::CurDir)
                .map(|c| match c {
                    std::path::Component::Normal(name) => name.to_str(),
                    _ => None,
                })
                .collect();
            Some(names?.join("/")).filter(|rel| !rel.is_empty())
        }
    }
}

/// Stage "state": the pair's database (the lock is held); an unreadable one is a first run.
fn open_state(job: &Job, sides: &Sides, warnings: &mut Warnings) -> Result<StateDb> {
    let urls = sides.urls();
    let (db, opened) = StateDb::open(&job.state_dir, &sides.id, [&urls[0], &urls[1]], job.dry_run)?;
    match &opened {
        Opened::Reset { moved_to: Some(moved_to), why } => warnings.warn(format!(
            "state database could not be read ({why}); moved to {} and starting afresh (a merge, no deletions)",
            moved_to.display()
        )),
        Opened::Reset { moved_to: None, why } => warnings.warn(format!(
            "state database could not be read ({why}); this dry run plans as a first run (a real run would \
             move it aside)"
        )),
        _ => {}
    }
    Ok(db)
}

/// What the scan stage found: both snapshots and the state, with what could not be read left
/// out of all three.
struct Scanned {
    snapshots: [Snapshot; 2],
    state: State,
    /// The pair's size for the safety stops when the scans hold only part of it; `None`: counted
    /// from them at the check.
    counts: Option<safety::Counts>,
    problems: Vec<Problem>,
    /// Temp files left by a killed run of this pair, per side.
    leftovers: [Vec<String>; 2],
    /// Bulk rows left for later (streamed scans only).
    later: stream::Later,
}

/// Stage "scan": both sides and the state at the same time.
fn scan(
    job: &Job,
    sides: &Sides,
    filter: &Filter,
    db: &StateDb,
    warnings: &mut Warnings,
    destination_to_create: bool,
) -> Result<Scanned> {
    let parts = job.scope.as_deref().map(scope_parts);
    // A whole run: folder by folder, unchanged files dropped as they are met. Not with
    // --checksum, which compares the content of unchanged files too.
    if parts.is_none() && !job.options.checksum {
        return streamed(job, sides, filter, db, warnings, destination_to_create);
    }
    let (scans, loaded) = std::thread::scope(|scope| {
        let handles = Side::BOTH.map(|side| {
            let (parts, endpoint) = (&parts, sides.get()[side.index()]);
            // A destination a first run would create (a dry run): there, and empty.
            let empty = destination_to_create && side == Side::Destination;
            scope.spawn(move || match parts {
                _ if empty => Ok(Scan { snapshot: Snapshot::default(), issues: Vec::new(), leftovers: Vec::new() }),
                Some((shallow, deep)) => endpoint.scan_part(filter, shallow, deep),
                None => endpoint.scan(filter),
            })
        });
        let loaded = db.load();
        (handles.map(|h| h.join().expect("scan thread panicked")), loaded)
    });
    let (mut state, bad_records) = loaded?;
    // A scoped run plans only its paths; the safety stops still count the whole pair's files.
    let recorded_files = state.values().filter(|r| r.kind == Kind::File).count();
    if let Some((shallow, deep)) = &parts {
        let scope = Scope::new(shallow, deep);
        state.retain(|path, _| scope.contains(path));
    }
    let mut snapshots: [Snapshot; 2] = Default::default();
    let mut found: [(Vec<crate::endpoint::ScanIssue>, Vec<String>); 2] = Default::default();
    for ((side, scan), snapshot) in Side::BOTH.into_iter().zip(scans).zip(&mut snapshots) {
        let Scan { snapshot: listed, issues, leftovers } =
            scan.map_err(|e| Error::Safety(format!("the {side} root cannot be listed: {e}")))?;
        *snapshot = listed;
        found[side.index()] = (issues, leftovers);
    }
    let counts = parts.map(|_| safety::Counts::scoped(recorded_files));
    Ok(settle(snapshots, state, counts, found, bad_records, warnings, stream::Later::default()))
}

/// The streamed scan (see [`crate::engine::stream`]) of a whole run.
fn streamed(
    job: &Job,
    sides: &Sides,
    filter: &Filter,
    db: &StateDb,
    warnings: &mut Warnings,
    destination_to_create: bool,
) -> Result<Scanned> {
    let empty = [false, destination_to_create];
    let streamed = stream::stream(sides.get(), empty, filter, db, job.mode, hold())?
        .map_err(|(side, e)| Error::Safety(format!("the {side} root cannot be listed: {e}")))?;
    let counts = Some(safety::Counts { files: streamed.files, recorded: streamed.recorded, whole_sides: true });
    let [issues_s, issues_d] = streamed.issues;
    let [left_s, left_d] = streamed.leftovers;
    let found = [(issues_s, left_s), (issues_d, left_d)];
    Ok(settle(streamed.snapshots, streamed.state, counts, found, streamed.bad_records, warnings, streamed.later))
}

/// What the scan reported, said, and what could not be read left out of the run.
fn settle(
    mut snapshots: [Snapshot; 2],
    mut state: State,
    counts: Option<safety::Counts>,
    found: [(Vec<crate::endpoint::ScanIssue>, Vec<String>); 2],
    bad_records: usize,
    warnings: &mut Warnings,
    later: stream::Later,
) -> Scanned {
    if bad_records > 0 {
        warnings.warn(format!("{bad_records} unreadable state records dropped; those paths are compared afresh"));
    }
    let mut problems = Vec::new();
    let mut left_alone: Vec<String> = Vec::new();
    let mut leftovers: [Vec<String>; 2] = Default::default();
    for (side, (issues, left)) in Side::BOTH.into_iter().zip(found) {
        for issue in issues {
            match issue.kind {
                IssueKind::Unreadable | IssueKind::Uncarried => {
                    let problem = Problem { path: issue.path.clone(), message: format!("{side}: {}", issue.message) };
                    warnings.reporter.problem(&problem);
                    problems.push(problem);
                }
                IssueKind::Excluded => {
                    warnings.skipped(side, &issue.path, &issue.message);
                    left_alone.push(issue.path);
                }
                // A name no side can hold (hostile from a server): shown even with -q.
                IssueKind::Skipped => warnings.skipped(side, &issue.path, &issue.message),
            }
        }
        leftovers[side.index()] = left;
    }
    // Whatever could not be read on either side is left out of this run entirely, so that
    // nothing in it looks deleted.
    for path in problems.iter().map(|p| &p.path).chain(&left_alone) {
        exclude(path, &mut state, &mut snapshots);
    }
    Scanned { snapshots, state, counts, problems, leftovers, later }
}

/// Stage "plan": hashes what the planner asks for, plans, and runs the safety check. Only once
/// that has passed are the records of ignored paths dropped from the database.
fn plan_and_check(
    job: &Job,
    sides: &Sides,
    filter: &Filter,
    db: &StateDb,
    options: &PlanOptions,
    (mut state, mut snapshots): (State, [Snapshot; 2]),
    counts: Option<safety::Counts>,
) -> Result<Plan> {
    // An ignored path is invisible, its record too. The record is dropped, not just hidden:
    // kept, it would turn a delete made while the path was ignored into a deletion on the
    // other side once the rule is lifted. Without it the path is merged afresh.
    // Records hidden only by --no-recursive are kept in the database, though: a deeper run
    // later must still see what was synced there, or deletions made meanwhile come undone.
    let ignored: Vec<String> = state
        .iter()
        .filter(|(path, record)| filter.hides_by_pattern(path, record.kind))
        .map(|(p, _)| p.clone())
        .collect();
    state.retain(|path, record| !filter.hides(path, record.kind));
    let plan = hash_and_plan(job.mode, sides, options, &state, &mut snapshots);
    if !job.force {
        let counts = counts.unwrap_or_else(|| safety::Counts::of(&state, [&snapshots[0], &snapshots[1]]));
        safety::check(&plan, counts, job.max_delete)?;
    }
    if !ignored.is_empty() && !job.dry_run {
        db.forget_all(&ignored)?;
    }
    Ok(plan)
}

/// Hashes what the planner asks for, and plans.
fn hash_and_plan(
    mode: Mode,
    sides: &Sides,
    options: &PlanOptions,
    state: &State,
    snapshots: &mut [Snapshot; 2],
) -> Plan {
    let wanted = plan::hash_requests(mode, state, &snapshots[0], &snapshots[1], options);
    hash_into(&wanted, sides.get(), snapshots);
    plan::plan(mode, state, &snapshots[0], &snapshots[1], options)
}

/// Bulk rows held at most by a streamed scan before it keeps only their folders (see
/// [`stream::Later`]); `PAIRSYNC_STREAM_HOLD` sets it, for tests of the bulk path on small trees.
fn hold() -> usize {
    std::env::var("PAIRSYNC_STREAM_HOLD").ok().and_then(|v| v.parse().ok()).unwrap_or(HOLD)
}

/// See [`hold`]: about 5 MB of rows.
const HOLD: usize = 20_000;

/// Rows planned and applied at a time, of the bulk rows left for later.
const BATCH: usize = 4096;

/// Rows of a batch of the later pass, and the folders they are in with those folders' own
/// entries on each side.
type Batch = (Vec<stream::Row>, BTreeMap<String, [Option<Entry>; 2]>);

/// Files created on a side that may be the new names of files deleted there (see
/// [`plan::rename_sizes`]) are never bulk rows: when bulk rows were left for later, the folders
/// holding them are listed again for those, which join the plan. Returns the sizes, which the
/// later pass leaves out.
#[allow(clippy::too_many_arguments)]
fn with_rename_targets(
    job: &Job,
    sides: &Sides,
    filter: &Filter,
    db: &StateDb,
    later: &stream::Later,
    empty: [bool; 2],
    state: &mut State,
    snapshots: &mut [Snapshot; 2],
) -> Result<[HashSet<u64>; 2]> {
    if later.folders.is_empty() {
        return Ok(Default::default());
    }
    let sizes = plan::rename_sizes(job.mode, state, &snapshots[0], &snapshots[1]);
    if sizes.iter().all(HashSet::is_empty) {
        return Ok(sizes);
    }
    let mut found: Vec<stream::Row> = Vec::new();
    let wanted = |row: &stream::Row| rename_target(row, &sizes);
    // (What cannot be read now is said by the later pass, which meets it again.)
    let each = &mut |_: &stream::BulkFolder, _, rows| {
        found.extend(rows);
        Ok(true)
    };
    stream::relist(sides.get(), empty, filter, db, job.mode, &later.folders, &wanted, each, &mut Vec::new())?;
    for row in found {
        for side in Side::BOTH {
            if let Some(entry) = row.entries[side.index()] {
                snapshots[side.index()].insert(row.path.clone(), entry);
            }
        }
    }
    Ok(sizes)
}

/// A new file on one side with the size of a file deleted there: maybe its new name.
fn rename_target(row: &stream::Row, sizes: &[HashSet<u64>; 2]) -> bool {
    row.record.is_none()
        && Side::BOTH.into_iter().any(|side| {
            row.entries[side.other().index()].is_none()
                && row.entries[side.index()].is_some_and(|e| sizes[side.index()].contains(&e.size))
        })
}

/// The bulk rows a streamed scan left for later (see [`stream::Later`]): listed again folder by
/// folder, planned and applied (or, for a dry run, tallied) a batch at a time, once the rest of
/// the plan is done. Their plans copy and record, and never delete: the safety check made
/// before anything was done covers them.
struct LaterRun<'a> {
    job: &'a Job,
    sides: &'a Sides,
    filter: &'a Filter,
    db: &'a StateDb,
    empty: [bool; 2],
    options: &'a PlanOptions,
    /// See [`with_rename_targets`]: rows that are in the plan already.
    renames: &'a [HashSet<u64>; 2],
    /// Folders the plan made (for what it moved or copied into new folders).
    made: HashSet<String>,
    reporter: &'a dyn Reporter,
}

impl LaterRun<'_> {
    /// Adds what was done (or would be) to `outcome` and `conflicts`. Folders at or below a
    /// path in `failed` (a problem of the run so far: a folder that could not be read or made)
    /// are left for the next run.
    fn apply(
        &self,
        folders: &[stream::BulkFolder],
        mut failed: Vec<String>,
        executor: Option<&Executor>,
        outcome: &mut Outcome,
        conflicts: &mut Vec<Conflict>,
    ) -> Result<()> {
        let left_out = |failed: &[String], path: &str| {
            failed.iter().any(|f| f.is_empty() || f == path || crate::core::model::is_inside(path, f))
        };
        let folders: Vec<stream::BulkFolder> =
            folders.iter().filter(|f| !left_out(&failed, &f.path)).cloned().collect();
        let said: HashSet<String> = failed.iter().cloned().collect();
        let wanted = |row: &stream::Row| !rename_target(row, self.renames);
        let mut batch: Batch = Default::default();
        // Never more rows at once than the run holds.
        let batch_size = hold().clamp(1, BATCH);
        let mut unread = Vec::new();
        let (sides, filter, db, mode) = (self.sides.get(), self.filter, self.db, self.job.mode);
        let each = &mut |folder: &stream::BulkFolder, own: [Option<Entry>; 2], rows| {
            if self.reporter.should_stop() {
                outcome.interrupted = true;
                return Ok(false);
            }
            // Below a folder a batch could not make (or fill): the next run.
            if left_out(&failed, &folder.path) {
                return Ok(true);
            }
            // A new folder is on the other side when the plan made it. (Its listing there
            // cannot say: some servers list a missing folder as an empty one.)
            let own = match folder.place {
                stream::Place::Both => [Some(Entry::dir()); 2],
                stream::Place::New(side) => {
                    let Some(here) = own[side.index()].filter(Entry::is_dir) else {
                        return Ok(true); // gone since: nothing to make or fill
                    };
                    let there = self.made.contains(&folder.path).then(Entry::dir);
                    let mut own = [there; 2];
                    own[side.index()] = Some(here);
                    own
                }
            };
            if !folder.path.is_empty() {
                batch.1.insert(folder.path.clone(), own);
            }
            batch.0.extend(rows);
            if batch.0.len() >= batch_size {
                let before = outcome.problems.len();
                self.run_batch(std::mem::take(&mut batch), executor, outcome, conflicts)?;
                failed.extend(outcome.problems[before..].iter().map(|p| p.path.clone()));
            }
            Ok(!outcome.interrupted)
        };
        stream::relist(sides, self.empty, filter, db, mode, &folders, &wanted, each, &mut unread)?;
        // What could not be read now (and was not said already) is a problem of this run.
        for (side, issue) in unread {
            if !said.contains(&issue.path) {
                let problem = Problem { path: issue.path, message: format!("{side}: {}", issue.message) };
                self.reporter.problem(&problem);
                outcome.problems.push(problem);
            }
        }
        // (A batch of new empty folders only is still one: they are made.)
        let something = !batch.0.is_empty() || !batch.1.is_empty();
        if !outcome.interrupted && something {
            self.run_batch(batch, executor, outcome, conflicts)?;
        }
        Ok(())
    }

    /// Plans one batch, with its folders as their sides hold them now (a new folder is made
    /// with its files) and the folders above them as folders both sides hold, recorded; applies
    /// or tallies it; `outcome.interrupted` says whether the run was asked to stop.
    fn run_batch(
        &self,
        (rows, folders): Batch,
        executor: Option<&Executor>,
        outcome: &mut Outcome,
        conflicts: &mut Vec<Conflict>,
    ) -> Result<()> {
        let above: BTreeSet<String> = folders
            .keys()
            .flat_map(|f| crate::core::model::ancestors(f))
            .filter(|f| !folders.contains_key(*f))
            .map(str::to_string)
            .collect();
        let above = above.into_iter().map(|path| (path, [Some(Entry::dir()); 2]));
        let folders = above.chain(folders).map(|(path, own)| {
            // A folder both sides hold is recorded (nothing to do); a new one is made.
            let record = own.iter().all(Option::is_some).then(StateRecord::dir);
            stream::Row { path, entries: own, record }
        });
        let (mut snapshots, state) = stream::Row::inputs(folders.chain(rows));
        let mut plan = hash_and_plan(self.job.mode, self.sides, self.options, &state, &mut snapshots);
        // The safety check counted no deletion of these: a plan with one is a bug, not applied.
        if let Some(delete) = plan.actions().find(|a| matches!(a, plan::Action::Delete { .. })) {
            return Err(Error::Safety(format!(
                "internal error: a later batch would {delete}; nothing of it was applied"
            )));
        }
        self.reporter.planned_later(&plan);
        match executor {
            None => outcome.tally.merge(&Tally::of(&plan)),
            Some(executor) => {
                let done = executor.apply(&plan, self.db)?;
                outcome.tally.merge(&done.tally);
                outcome.problems.extend(done.problems);
                outcome.interrupted = done.interrupted;
            }
        }
        conflicts.append(&mut plan.conflicts);
        Ok(())
    }
}

/// Leftovers of a killed run are removed once applying is done: a large copy it left half
/// done has been continued from its temp file by now (and is gone), the rest is stale.
fn remove_leftovers(sides: &Sides, leftovers: &[Vec<String>; 2], warnings: &mut Warnings) {
    for (side, leftovers) in Side::BOTH.into_iter().zip(leftovers) {
        for leftover in leftovers {
            match sides.endpoints[side.index()].remove_leftover(leftover) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    let message = format!("{side}: cannot remove leftover temp file: {e}");
                    warnings.warn_at(
                        leftover,
                        message,
                        &format!("{side}: cannot remove leftover temp file {leftover}: {e}"),
                    )
                }
                _ => {}
            }
        }
    }
}

/// Leaves `path` and everything below it out of the state and both snapshots.
fn exclude(path: &str, state: &mut State, snapshots: &mut [Snapshot; 2]) {
    // The root itself ("") stands for everything: a root listing not fully understood leaves
    // the whole tree out, since the line that did not parse may have been any of it.
    let out = |key: &str| path.is_empty() || key == path || crate::core::model::is_inside(key, path);
    state.retain(|key, _| !out(key));
    for snapshot in snapshots.iter_mut() {
        snapshot.retain(|key, _| !out(key));
    }
}

/// Hashes the requested files into the snapshots, on a few threads. A file that cannot be
/// hashed keeps no hash: the planner then assumes it changed.
fn hash_into(wanted: &[(Side, String)], endpoints: [&dyn Endpoint; 2], snapshots: &mut [Snapshot; 2]) {
    if wanted.is_empty() {
        return;
    }
    let chunk = wanted.len().div_ceil(workers());
    let hashed: Vec<(Side, &String, blake3::Hash)> = std::thread::scope(|scope| {
        let snapshots = &*snapshots;
        let handles: Vec<_> = wanted
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|(side, path)| {
                            let entry = snapshots[side.index()].get(path)?;
                            let hash = endpoints[side.index()].hash(path, entry).ok()?;
                            Some((*side, path, blake3::Hash::from_bytes(hash)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("hash thread panicked")).collect()
    });
    for (side, path, hash) in hashed {
        if let Some(entry) = snapshots[side.index()].get_mut(path) {
            entry.hash = Some(*hash.as_bytes());
        }
    }
}
