//! One sync of one pair, start to end: checks, lock, scan, plan, safety, apply.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::{EndpointKind, SideConfig};
use crate::core::check::{FileCheck, CHECK_FILE_LIMIT};
use crate::core::error::{Error, Result};
use crate::core::exit::ExitCode;
use crate::core::filter::Filter;
use crate::core::model::{Side, Snapshot, State};
use crate::core::plan::{self, Conflict, Mode, Plan, PlanOptions};
use crate::core::safety;
use crate::endpoint::credentials::{self, Secret};
use crate::endpoint::ftp::{self, FtpOptions, FtpUrl};
use crate::endpoint::local::LocalEndpoint;
use crate::endpoint::{Endpoint, ErrorKind, IssueKind, Scan};
use crate::engine::executor::{Executor, Observer, Problem, Tally};
use crate::state::{pair_id, Opened, PairLock, StateDb};

/// Everything one sync needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Job {
    pub source: String,
    pub destination: String,
    pub mode: Mode,
    pub options: PlanOptions,
    pub filter: Filter,
    pub checks: [Option<FileCheck>; 2],
    pub max_delete: u8,
    pub force: bool,
    pub dry_run: bool,
    pub state_dir: PathBuf,
    /// Where FTP sides get their passwords (besides the URL and ~/.netrc).
    pub auth: [Auth; 2],
    /// Connections to an FTP side at most (parallel transfers).
    pub connections: usize,
    /// Only these paths (relative, as a watcher saw them change) are rescanned and planned:
    /// the entries of their folders, and everything below those that are folders.
    pub scope: Option<Vec<String>>,
}

/// What a scoped run lists: folders to list shallowly (the changed paths' parents), paths to
/// list deeply (the changed paths, where they are folders).
fn scope_parts(paths: &[String]) -> (Vec<String>, Vec<String>) {
    let mut shallow: Vec<String> =
        paths.iter().map(|p| crate::core::model::parent(p).unwrap_or("").to_string()).collect();
    shallow.sort();
    shallow.dedup();
    let mut deep = paths.to_vec();
    deep.sort();
    deep.dedup();
    (shallow, deep)
}

/// The paths a scoped run plans: entries of a shallow folder, the deep paths and everything
/// below them, and the folders on the way to either. Set lookups only: a batch of thousands of
/// paths must not cost thousands of comparisons per record.
struct Scope<'a> {
    shallow: std::collections::HashSet<&'a str>,
    deep: std::collections::HashSet<&'a str>,
    on_the_way: std::collections::HashSet<&'a str>,
}

impl<'a> Scope<'a> {
    fn new(shallow: &'a [String], deep: &'a [String]) -> Scope<'a> {
        let on_the_way = shallow
            .iter()
            .chain(deep)
            .flat_map(|p| crate::core::model::ancestors(p).chain(std::iter::once(p.as_str())))
            .collect();
        Scope {
            shallow: shallow.iter().map(String::as_str).collect(),
            deep: deep.iter().map(String::as_str).collect(),
            on_the_way,
        }
    }

    fn contains(&self, path: &str) -> bool {
        self.shallow.contains(crate::core::model::parent(path).unwrap_or(""))
            || self.on_the_way.contains(path)
            || std::iter::once(path).chain(crate::core::model::ancestors(path)).any(|p| self.deep.contains(p))
    }
}

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
    pub warnings: Vec<String>,
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
    fn planned(&self, _plan: &Plan) {}
}

/// Copies run on this many threads.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4)
}

/// One side of a pair as given: a local folder, or an FTP/FTPS URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// Canonical when it exists.
    Local(PathBuf),
    Ftp(FtpUrl),
}

impl Root {
    /// The side as a URL: for messages, and (both sides) for the pair id. No password.
    pub fn url(&self) -> String {
        match self {
            Root::Local(path) => path.display().to_string(),
            Root::Ftp(url) => url.display(url.user.as_deref().unwrap_or("anonymous")),
        }
    }
}

/// Where an FTP side's password comes from, before ~/.netrc: given outright, or the name of an
/// environment variable holding it.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    /// Do not verify the FTPS server's certificate (explicitly asked for).
    pub insecure_tls: bool,
}

/// A side given on the command line or in an item; a password in a URL is returned apart.
fn root_of(flag: &str, given: &str) -> Result<(Root, Option<String>)> {
    if given.starts_with("ftp://") || given.starts_with("ftps://") {
        let (url, password) = FtpUrl::parse(given).map_err(|e| Error::Usage(format!("{flag}: {e}")))?;
        return Ok((Root::Ftp(url), password));
    }
    if given.is_empty() {
        return Err(Error::Usage(format!("{flag}: empty path")));
    }
    let path = Path::new(given);
    let root = match path.canonicalize() {
        Ok(path) => path,
        Err(_) => std::path::absolute(path).map_err(|e| Error::Usage(format!("{flag} {given}: {e}")))?,
    };
    Ok((Root::Local(root), None))
}

/// The pair's two roots; refuses the same folder twice and one local root inside the other.
pub fn roots(source: &str, destination: &str) -> Result<[(Root, Option<String>); 2]> {
    let roots = [root_of("SOURCE", source)?, root_of("DESTINATION", destination)?];
    if roots[0].0.url() == roots[1].0.url() {
        return Err(Error::Usage(format!("source and destination are the same folder: {}", roots[0].0.url())));
    }
    if let (Root::Local(a), Root::Local(b)) = (&roots[0].0, &roots[1].0) {
        for (inner, outer) in [(a, b), (b, a)] {
            if inner.starts_with(outer) {
                return Err(Error::Usage(format!(
                    "{} is inside {}: one root inside the other would sync into itself",
                    inner.display(),
                    outer.display()
                )));
            }
        }
    }
    Ok(roots)
}

/// A side as given, for messages and logs: an FTP URL loses its password.
pub fn shown_url(given: &str) -> String {
    match FtpUrl::parse(given) {
        Ok((url, _)) => url.display(url.user.as_deref().unwrap_or("anonymous")),
        Err(_) => given.to_string(),
    }
}

/// The id of the pair of these roots (its state database's name).
pub fn pair_of(source: &str, destination: &str) -> Result<String> {
    let [(a, _), (b, _)] = roots(source, destination)?;
    Ok(pair_id(&a.url(), &b.url()))
}

/// Opens one side. For FTP: credentials (the URL's password, `auth`, then ~/.netrc), then a
/// login; a server that cannot be reached or refuses the login is [`Error::Unreachable`].
fn open_endpoint(root: &Root, auth: &Auth, tag: &str, connections: usize) -> Result<Box<dyn Endpoint>> {
    let url = match root {
        Root::Local(path) => return Ok(Box::new(LocalEndpoint::new(path.clone(), tag))),
        Root::Ftp(url) => url,
    };
    let side = SideConfig {
        kind: EndpointKind::Ftp,
        server: Some(format!("{}:{}", url.host, url.port)),
        username: url.user.clone(),
        password: auth.password.as_ref().map(|p| p.expose().to_string()),
        password_env: auth.password_env.clone(),
        tls: url.tls,
        ..SideConfig::directory(url.dir.clone())
    };
    let env = |name: &str| std::env::var(name).ok();
    let netrc = credentials::netrc_path(&env);
    let credentials = credentials::resolve(&side, &env, netrc.as_deref())
        .map_err(|e| Error::Usage(format!("{}: {e}", root.url())))?;
    let options =
        FtpOptions { tag: tag.to_string(), connections, tls_verify: !auth.insecure_tls, ..FtpOptions::default() };
    ftp::open(url.clone(), credentials, options)
        .map_err(|e| Error::Unreachable { what: root.url(), source: Box::new(e) })
}

pub fn sync(job: &Job, reporter: &dyn Reporter) -> Result<Summary> {
    let started = Instant::now();
    let [(source, source_pw), (destination, destination_pw)] = roots(&job.source, &job.destination)?;
    let urls = [source.url(), destination.url()];
    let id = pair_id(&urls[0], &urls[1]);
    let tag = &id[..8];
    let mut early_warnings = Vec::new();
    let mut auths = job.auth.clone();
    for (side, (password, auth)) in Side::BOTH.into_iter().zip([source_pw, destination_pw].into_iter().zip(&mut auths))
    {
        if let Some(password) = password {
            early_warnings.push(format!(
                "the {side} URL holds a password; it works, but ~/.netrc or an item's password_env keeps it out of \
                 shell history and process lists"
            ));
            auth.password.get_or_insert(Secret::new(password));
        }
    }
    for (side, (root, auth)) in Side::BOTH.into_iter().zip([&source, &destination].into_iter().zip(&auths)) {
        if matches!(root, Root::Ftp(url) if url.tls) && auth.insecure_tls {
            early_warnings.push(format!(
                "the {side}'s FTPS certificate is NOT verified (--insecure-tls): the connection can be intercepted"
            ));
        }
    }
    let opened = [
        open_endpoint(&source, &auths[0], tag, job.connections)?,
        open_endpoint(&destination, &auths[1], tag, job.connections)?,
    ];
    let endpoints: [&dyn Endpoint; 2] = [opened[0].as_ref(), opened[1].as_ref()];
    let workers = workers().max(endpoints[0].parallelism()).max(endpoints[1].parallelism());

    // A wrong or missing drive is recognized before anything else looks at it.
    for (side, check) in Side::BOTH.into_iter().zip(&job.checks) {
        if let Some(check) = check {
            let found = endpoints[side.index()]
                .read_check_file(&check.path, CHECK_FILE_LIMIT)
                .map_err(|e| Error::Check { side, reason: format!("cannot read {}: {e}", check.path) })?;
            check.judge(side, found.as_deref())?;
        }
    }
    for (side, endpoint) in Side::BOTH.into_iter().zip(endpoints) {
        endpoint.check_root().map_err(|e| match e.kind() {
            ErrorKind::Unreachable => {
                Error::Unreachable { what: format!("the {side} {}", endpoint.url()), source: Box::new(e) }
            }
            _ => Error::Safety(format!("the {side} root {} is missing or unreadable: {e}", endpoint.url())),
        })?;
    }

    let mut warnings = Vec::new();
    let mut warn = |message: String| {
        reporter.warning(&message);
        warnings.push(message);
    };
    for message in early_warnings {
        warn(message);
    }

    // The state folder (databases, logs) inside a root is never synced: its files change
    // under the run's feet, and copying a live sled database elsewhere is worse than useless.
    let state_dir = job.state_dir.canonicalize().unwrap_or_else(|_| job.state_dir.clone());
    let inside_roots = [&source, &destination].into_iter().filter_map(|root| match root {
        Root::Local(path) => state_dir.strip_prefix(path).ok().filter(|rel| !rel.as_os_str().is_empty()),
        Root::Ftp(_) => None,
    });
    let mut patterns: Vec<(&'static str, String)> = inside_roots
        .filter_map(|rel| rel.to_str())
        .map(|rel| ("state folder", format!("^{}(/|$)", regex::escape(rel))))
        .collect();
    // So is a check file given by an absolute path inside its own root (a relative one is in
    // the job's filter already): a drive's marker copied to the other side would vouch for it.
    let markers = job.checks.iter().zip([&source, &destination]).filter_map(|(check, root)| {
        let path = Path::new(&check.as_ref()?.path);
        let rel = match root {
            Root::Local(root) if path.is_absolute() => {
                // The root is canonical: so must be the folder of the file, to compare.
                let full = path.parent()?.canonicalize().ok()?.join(path.file_name()?);
                full.strip_prefix(root).ok()?.to_str()?.to_string()
            }
            Root::Ftp(url) if path.is_absolute() => {
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
                Some(names?.join("/")).filter(|rel| !rel.is_empty())?
            }
            _ => return None,
        };
        Some(("file check", format!("^{}$", regex::escape(&rel))))
    });
    patterns.extend(markers);
    let own_filter;
    let filter = if patterns.is_empty() {
        &job.filter
    } else {
        own_filter = job.filter.with(patterns)?;
        &own_filter
    };

    let _lock = PairLock::acquire(&job.state_dir, &id)?;
    let (db, opened) = StateDb::open(&job.state_dir, &id, [&urls[0], &urls[1]], job.dry_run)?;
    match &opened {
        Opened::Reset { moved_to: Some(moved_to), why } => warn(format!(
            "state database could not be read ({why}); moved to {} and starting afresh (a merge, no deletions)",
            moved_to.display()
        )),
        Opened::Reset { moved_to: None, why } => warn(format!(
            "state database could not be read ({why}); this dry run plans as a first run (a real run would \
             move it aside)"
        )),
        _ => {}
    }

    // Scan both sides and load the state at the same time.
    let mut phases = Phases::default();
    let mut clock = Instant::now();
    let mut lap = |phase: &mut f64| {
        *phase = clock.elapsed().as_secs_f64();
        clock = Instant::now();
    };
    let parts = job.scope.as_deref().map(scope_parts);
    let (scans, loaded) = std::thread::scope(|scope| {
        let handles = endpoints.map(|endpoint| {
            let parts = &parts;
            scope.spawn(move || match parts {
                Some((shallow, deep)) => endpoint.scan_part(filter, shallow, deep),
                None => endpoint.scan(filter),
            })
        });
        let loaded = db.load();
        (handles.map(|h| h.join().expect("scan thread panicked")), loaded)
    });
    lap(&mut phases.scan);
    let (mut state, bad_records) = loaded?;
    // A scoped run plans only its paths; the safety stops still count the whole pair's files.
    let recorded_files = state.values().filter(|r| r.kind == crate::core::model::Kind::File).count();
    if let Some((shallow, deep)) = &parts {
        let scope = Scope::new(shallow, deep);
        state.retain(|path, _| scope.contains(path));
    }
    if bad_records > 0 {
        warn(format!("{bad_records} unreadable state records dropped; those paths are compared afresh"));
    }
    let mut problems = Vec::new();
    let mut snapshots: [Snapshot; 2] = Default::default();
    let mut left_alone: Vec<String> = Vec::new();
    let mut all_leftovers: [Vec<String>; 2] = Default::default();
    for ((side, scan), snapshot) in Side::BOTH.into_iter().zip(scans).zip(&mut snapshots) {
        let Scan { snapshot: found, issues, leftovers } =
            scan.map_err(|e| Error::Safety(format!("the {side} root cannot be listed: {e}")))?;
        *snapshot = found;
        for issue in issues {
            match issue.kind {
                IssueKind::Unreadable => {
                    let problem = Problem { path: issue.path.clone(), message: format!("{side}: {}", issue.message) };
                    reporter.problem(&problem);
                    problems.push(problem);
                }
                IssueKind::Excluded => {
                    warn(format!("{side}: {}: {}", issue.path, issue.message));
                    left_alone.push(issue.path);
                }
                IssueKind::Skipped => warn(format!("{side}: {}: {}", issue.path, issue.message)),
            }
        }
        all_leftovers[side.index()] = leftovers;
    }
    // Whatever could not be read on either side is left out of this run entirely, so that
    // nothing in it looks deleted.
    for path in problems.iter().map(|p| &p.path).chain(&left_alone) {
        exclude(path, &mut state, &mut snapshots);
    }
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
    if !ignored.is_empty() && !job.dry_run {
        db.forget_all(&ignored)?;
    }

    let options =
        PlanOptions { conflict_stamp: chrono::Local::now().format("%Y%m%d-%H%M%S").to_string(), ..job.options.clone() };
    let wanted = plan::hash_requests(job.mode, &state, &snapshots[0], &snapshots[1], &options);
    hash_into(&wanted, endpoints, &mut snapshots);
    let plan = plan::plan(job.mode, &state, &snapshots[0], &snapshots[1], &options);
    if !job.force {
        let whole = job.scope.is_some().then_some(recorded_files);
        safety::check(&plan, &state, [&snapshots[0], &snapshots[1]], job.max_delete, whole)?;
    }
    reporter.planned(&plan);
    lap(&mut phases.plan);
    // Applying needs only the plan: free the rest before the copies start.
    drop((state, snapshots));

    let mut interrupted = false;
    let tally = if job.dry_run {
        Tally::of(&plan)
    } else {
        let executor = Executor { endpoints, observer: reporter, workers, durable: job.mode == Mode::TwoWay };
        let outcome = executor.apply(&plan, &db)?;
        problems.extend(outcome.problems);
        interrupted = outcome.interrupted;
        outcome.tally
    };
    // Leftovers of a killed run are removed once applying is done: a large copy it left half
    // done has been continued from its temp file by now (and is gone), the rest is stale.
    if !job.dry_run {
        for (side, leftovers) in Side::BOTH.into_iter().zip(&all_leftovers) {
            for leftover in leftovers {
                match endpoints[side.index()].remove_leftover(leftover) {
                    Err(e) if e.kind() != ErrorKind::NotFound => {
                        warn(format!("{side}: cannot remove leftover temp file {leftover}: {e}"))
                    }
                    _ => {}
                }
            }
        }
    }
    lap(&mut phases.apply);
    let mut summary = Summary {
        source: urls[0].clone(),
        destination: urls[1].clone(),
        mode: job.mode,
        dry_run: job.dry_run,
        tally,
        conflicts: plan.conflicts,
        problems,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
        phases,
        interrupted,
        exit_code: 0,
    };
    summary.exit_code = summary.exit().code();
    Ok(summary)
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
