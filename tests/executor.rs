//! The executor alone, with sides in memory: no file system tree, no FTP server.
//!
//! Each test builds two [`MemoryEndpoint`]s, plans from their scans as `engine::sync` does,
//! changes something behind the engine's back or wraps a side in [`Faulty`], applies, and then
//! checks the rule it guards (named in its first comment line): what failed is a problem for its
//! path and is not recorded, nothing is lost, the rest went on, and a rerun converges.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pairsync::core::filter::Filter;
use pairsync::core::model::{Entry, Mtime, Snapshot, State, StateRecord};
use pairsync::core::plan::{hash_requests, plan, Action, Mode, Plan, PlanOptions};
use pairsync::endpoint::testing::{Faulty, MemoryEndpoint, Op};
use pairsync::endpoint::{Endpoint, ErrorKind};
use pairsync::engine::executor::{Executor, Observer, Outcome};
use pairsync::state::{StateDb, BATCH};

/// An mtime of `s` seconds.
fn t(s: i64) -> Mtime {
    s * 1_000_000_000
}

fn sides() -> (MemoryEndpoint, MemoryEndpoint) {
    (MemoryEndpoint::new("mem://source"), MemoryEndpoint::new("mem://destination"))
}

fn state_db() -> (tempfile::TempDir, StateDb) {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = StateDb::open(dir.path(), "pair", ["mem://source", "mem://destination"], false).unwrap();
    (dir, db)
}

fn record(db: &StateDb, path: &str) -> Option<StateRecord> {
    db.load().unwrap().0.get(path).copied()
}

struct Quiet;
impl Observer for Quiet {}

/// Scans both sides, hashes what the planner asks for and plans: what `engine::sync` does
/// between taking the lock and applying (without the safety stops).
fn plan_now(mode: Mode, db: &StateDb, sides: [&dyn Endpoint; 2]) -> Plan {
    let filter = Filter::new([("", ""); 0], true).unwrap();
    let (state, bad) = db.load().unwrap();
    assert_eq!(bad, 0);
    let mut snapshots = sides.map(|side| side.scan(&filter).unwrap().snapshot);
    let options = PlanOptions::default();
    for (side, path) in hash_requests(mode, &state, &snapshots[0], &snapshots[1], &options) {
        let entry = *snapshots[side.index()].get(&path).unwrap();
        if let Ok(hash) = sides[side.index()].hash(&path, &entry) {
            snapshots[side.index()].get_mut(&path).unwrap().hash = Some(hash);
        }
    }
    plan(mode, &state, &snapshots[0], &snapshots[1], &options)
}

fn apply_with(
    plan: &Plan,
    db: &StateDb,
    sides: [&dyn Endpoint; 2],
    workers: usize,
    observer: &dyn Observer,
) -> Outcome {
    Executor { endpoints: sides, observer, workers, durable: true, versions: None }.apply(plan, db).unwrap()
}

fn apply(plan: &Plan, db: &StateDb, sides: [&dyn Endpoint; 2], workers: usize) -> Outcome {
    apply_with(plan, db, sides, workers, &Quiet)
}

fn sync(mode: Mode, db: &StateDb, sides: [&dyn Endpoint; 2], workers: usize) -> Outcome {
    apply(&plan_now(mode, db, sides), db, sides, workers)
}

/// The paths of the problems, in order.
fn problem_paths(outcome: &Outcome) -> Vec<&str> {
    outcome.problems.iter().map(|p| p.path.as_str()).collect()
}

/// A run without faults settles the pair: no problems, both trees equal (content, mtime,
/// mode), no temp file anywhere, and a further plan has nothing left to do.
fn assert_converges(mode: Mode, db: &StateDb, source: &MemoryEndpoint, destination: &MemoryEndpoint) {
    let outcome = sync(mode, db, [source, destination], 2);
    assert!(outcome.problems.is_empty(), "the rerun met problems: {:?}", outcome.problems);
    assert_eq!(source.tree(), destination.tree(), "the sides differ after the rerun");
    assert!(source.temps().is_empty() && destination.temps().is_empty(), "temp files left behind");
    let again = plan_now(mode, db, [source, destination]);
    assert_eq!(again.actions().collect::<Vec<_>>(), Vec::<&Action>::new(), "not settled after the rerun");
}

#[test]
fn a_destination_file_changed_since_the_scan_is_not_overwritten() {
    // Guards compare-then-mutate on write: a copy never replaces what the plan did not see.
    for workers in [1, 4] {
        let (src, dst) = sides();
        let (_dir, db) = state_db();
        src.put("a.txt", "one", t(100));
        src.put("b.txt", "one", t(100));
        assert!(sync(Mode::TwoWay, &db, [&src, &dst], workers).problems.is_empty());
        let before = record(&db, "a.txt").unwrap();
        src.put("a.txt", "source edit", t(200));
        src.put("b.txt", "source edit", t(200));
        let plan = plan_now(Mode::TwoWay, &db, [&src, &dst]);
        // Behind the engine's back, between the scan and the apply:
        dst.put("a.txt", "destination edit", t(300));
        let outcome = apply(&plan, &db, [&src, &dst], workers);

        assert_eq!(problem_paths(&outcome), ["a.txt"], "workers {workers}");
        assert!(outcome.problems[0].message.contains("changed since the scan"), "{}", outcome.problems[0]);
        assert_eq!(dst.get("a.txt").unwrap(), b"destination edit");
        assert_eq!(record(&db, "a.txt"), Some(before), "a failed copy changed the record");
        assert_eq!(dst.get("b.txt").unwrap(), b"source edit", "the other path did not go on");
        assert_eq!(record(&db, "b.txt").unwrap().source, src.entry("b.txt").unwrap().observed());
        assert_eq!(outcome.tally.copied, 1);

        // The rerun sees an edit on both sides: a conflict, and both edits are kept.
        assert_converges(Mode::TwoWay, &db, &src, &dst);
        let contents: BTreeSet<Vec<u8>> = dst.tree().keys().filter_map(|p| dst.get(p)).collect();
        assert!(contents.contains(&b"source edit"[..]) && contents.contains(&b"destination edit"[..]));
    }
}

#[test]
fn a_file_that_appeared_at_the_destination_since_the_scan_is_not_overwritten() {
    // Guards compare-then-mutate on a first copy: `replaces: None` means "nothing may be there".
    let (src, dst) = sides();
    let (_dir, db) = state_db();
    src.put("new.txt", "source", t(100));
    src.put("other.txt", "source", t(100));
    let plan = plan_now(Mode::Clone, &db, [&src, &dst]);
    dst.put("new.txt", "someone else's", t(50));
    let outcome = apply(&plan, &db, [&src, &dst], 1);

    assert_eq!(problem_paths(&outcome), ["new.txt"]);
    assert_eq!(dst.get("new.txt").unwrap(), b"someone else's");
    assert_eq!(record(&db, "new.txt"), None);
    assert_eq!(dst.get("other.txt").unwrap(), b"source");
    assert!(record(&db, "other.txt").is_some());
    assert_converges(Mode::Clone, &db, &src, &dst);
}

#[test]
fn a_delete_of_a_file_edited_since_the_scan_is_refused() {
    // Guards compare-then-mutate on delete: an edit made after the scan is never deleted.
    let (src, dst) = sides();
    let (_dir, db) = state_db();
    src.put("gone.txt", "v1", t(100));
    src.put("stays.txt", "v1", t(100));
    assert!(sync(Mode::TwoWay, &db, [&src, &dst], 1).problems.is_empty());
    src.remove_all("gone.txt");
    src.put("stays.txt", "v2", t(200));
    let plan = plan_now(Mode::TwoWay, &db, [&src, &dst]);
    dst.put("gone.txt", "edited meanwhile", t(300));
    let before = record(&db, "gone.txt");
    let outcome = apply(&plan, &db, [&src, &dst], 1);

    assert_eq!(problem_paths(&outcome), ["gone.txt"]);
    assert_eq!(dst.get("gone.txt").unwrap(), b"edited meanwhile");
    assert_eq!(record(&db, "gone.txt"), before, "the record of a refused delete was dropped");
    assert_eq!(dst.get("stays.txt").unwrap(), b"v2");
    // Deleted on one side, edited on the other: the edit is restored on both.
    assert_converges(Mode::TwoWay, &db, &src, &dst);
    assert_eq!(src.get("gone.txt").unwrap(), b"edited meanwhile");
}

#[test]
fn a_failing_rename_is_a_problem_for_its_path_and_loses_nothing() {
    // Guards per-path problems (DESIGN "apply"): a rename that fails leaves both names' state as
    // it was, keeps the file, and the rest of the plan goes on.
    let (src, plain_dst) = sides();
    let (_dir, db) = state_db();
    src.put("old.txt", "moved content", t(100));
    src.put("other.txt", "v1", t(100));
    assert!(sync(Mode::TwoWay, &db, [&src, &plain_dst], 1).problems.is_empty());
    let old_record = record(&db, "old.txt");
    src.move_to("old.txt", "new.txt");
    src.put("other.txt", "v2", t(200));
    let dst = Faulty::new(plain_dst.clone());
    dst.fail(Op::Rename, "old.txt", ErrorKind::Other);
    let outcome = sync(Mode::TwoWay, &db, [&src, &dst], 1);

    assert_eq!(dst.calls(Op::Rename), ["old.txt -> new.txt"], "the move was not carried as a rename");
    assert_eq!(problem_paths(&outcome), ["new.txt"]);
    assert!(outcome.problems[0].message.contains("injected"), "{}", outcome.problems[0]);
    assert_eq!(plain_dst.get("old.txt").unwrap(), b"moved content");
    assert_eq!(plain_dst.get("new.txt"), None);
    assert_eq!(record(&db, "old.txt"), old_record);
    assert_eq!(record(&db, "new.txt"), None);
    assert_eq!(plain_dst.get("other.txt").unwrap(), b"v2");
    assert_eq!(outcome.tally.renamed, 0);

    dst.heal();
    let rerun = plan_now(Mode::TwoWay, &db, [&src, &plain_dst]);
    assert!(rerun.actions().any(|a| matches!(a, Action::Rename { .. })), "the rerun copies instead of renaming");
    assert_converges(Mode::TwoWay, &db, &src, &plain_dst);
    assert_eq!(record(&db, "old.txt"), None);
}

#[test]
fn a_failing_delete_is_a_problem_for_its_path_and_its_folder_stays() {
    // Guards per-path problems on delete: the file and its folder stay, with their records,
    // and the folder's other deletions and the rest of the plan go on.
    let (src, plain_dst) = sides();
    let (_dir, db) = state_db();
    src.put("d/x.txt", "x", t(100));
    src.put("d/y.txt", "y", t(100));
    src.put("keep.txt", "k", t(100));
    assert!(sync(Mode::TwoWay, &db, [&src, &plain_dst], 1).problems.is_empty());
    src.remove_all("d");
    src.put("z.txt", "new", t(200));
    let dst = Faulty::new(plain_dst.clone());
    dst.fail(Op::Remove, "d/x.txt", ErrorKind::Refused);
    let outcome = sync(Mode::TwoWay, &db, [&src, &dst], 1);

    assert_eq!(problem_paths(&outcome), ["d/x.txt", "d"]);
    assert_eq!(plain_dst.get("d/x.txt").unwrap(), b"x");
    assert_eq!(plain_dst.get("d/y.txt"), None);
    assert!(record(&db, "d/x.txt").is_some() && record(&db, "d").is_some());
    assert_eq!(record(&db, "d/y.txt"), None);
    assert_eq!(plain_dst.get("z.txt").unwrap(), b"new");
    assert!(record(&db, "z.txt").is_some());
    assert_eq!(outcome.tally.deleted, 1);

    dst.heal();
    assert_converges(Mode::TwoWay, &db, &src, &plain_dst);
    assert_eq!(plain_dst.entry("d"), None);
}

#[test]
fn a_conflict_whose_set_aside_fails_overwrites_neither_version() {
    // Guards keep-both against a failed set-aside: the winner's copy never takes the name the
    // loser still holds, so both edits survive the run and the rerun keeps both.
    let (src, plain_dst) = sides();
    let (_dir, db) = state_db();
    src.put("doc.txt", "v1", t(100));
    assert!(sync(Mode::TwoWay, &db, [&src, &plain_dst], 1).problems.is_empty());
    let before = record(&db, "doc.txt");
    plain_dst.put("doc.txt", "destination edit", t(200));
    src.put("doc.txt", "newer source edit", t(300));
    let dst = Faulty::new(plain_dst.clone());
    dst.fail(Op::Rename, "doc.txt", ErrorKind::Other);
    let outcome = sync(Mode::TwoWay, &db, [&src, &dst], 1);

    let aside = "doc.conflict-19700101-000000.txt";
    assert_eq!(dst.calls(Op::Rename), [format!("doc.txt -> {aside}")], "the loser was not set aside");
    let problems: BTreeSet<&str> = problem_paths(&outcome).into_iter().collect();
    assert_eq!(problems, BTreeSet::from(["doc.txt", aside]));
    assert_eq!(plain_dst.get("doc.txt").unwrap(), b"destination edit");
    assert_eq!(src.get("doc.txt").unwrap(), b"newer source edit");
    assert_eq!(record(&db, "doc.txt"), before);
    assert_eq!(record(&db, aside), None);

    dst.heal();
    assert_converges(Mode::TwoWay, &db, &src, &plain_dst);
    let contents: BTreeSet<Vec<u8>> = src.tree().keys().filter_map(|p| src.get(p)).collect();
    assert_eq!(contents, BTreeSet::from([b"destination edit".to_vec(), b"newer source edit".to_vec()]));
}

#[test]
fn a_source_changed_while_being_copied_is_not_recorded() {
    // Guards write-during-read: a copy whose source changed under the read leaves the target
    // as it was, records nothing, and is done again (with the new content) by the next run.
    let (plain_src, dst) = sides();
    let (_dir, db) = state_db();
    plain_src.put("busy.log", "first version", t(100));
    plain_src.put("replaced.log", "v1", t(100));
    plain_src.put("calm.txt", "calm", t(100));
    assert!(sync(Mode::TwoWay, &db, [&plain_src, &dst], 1).problems.is_empty());
    let replaced_record = record(&db, "replaced.log");
    plain_src.put("replaced.log", "v2", t(200));
    plain_src.put("busy.log", "second version", t(200));
    plain_src.put("new.log", "new", t(200));
    let src = Faulty::new(plain_src.clone());
    // Changed between the open and the end of the read (the first read runs the hook):
    src.before(Op::Read, "busy.log", |inner| {
        inner.put("busy.log", "rewritten while read", t(300));
    });
    src.before(Op::Read, "new.log", |inner| {
        inner.put("new.log", "grown while it was being read", t(300));
    });
    // Changed between the scan and the open:
    src.before(Op::Open, "replaced.log", |inner| {
        inner.put("replaced.log", "v3", t(300));
    });
    let outcome = sync(Mode::TwoWay, &db, [&src, &dst], 1);

    let mut paths = problem_paths(&outcome);
    paths.sort();
    assert_eq!(paths, ["busy.log", "new.log", "replaced.log"]);
    for problem in &outcome.problems {
        let want = if problem.path == "replaced.log" { "changed since the scan" } else { "changed while being read" };
        assert!(problem.message.contains(want), "{problem}");
    }
    assert_eq!(dst.get("busy.log").unwrap(), b"first version");
    assert_eq!(dst.get("replaced.log").unwrap(), b"v1");
    assert_eq!(dst.get("new.log"), None);
    assert!(dst.temps().is_empty(), "a cut-short copy left its temp file: {:?}", dst.temps());
    assert_eq!(record(&db, "busy.log").unwrap().source.mtime, t(100));
    assert_eq!(record(&db, "replaced.log"), replaced_record);
    assert_eq!(record(&db, "new.log"), None);
    assert_eq!(outcome.tally.copied, 0);

    assert_converges(Mode::TwoWay, &db, &plain_src, &dst);
    assert_eq!(dst.get("busy.log").unwrap(), b"rewritten while read");
}

/// Counts the actions applied and, at chosen ones, notes how many records the database holds
/// and how often each side was flushed.
struct Watch<'a> {
    db: &'a StateDb,
    sides: [&'a MemoryEndpoint; 2],
    applied: AtomicUsize,
    at: &'a [usize],
    seen: Mutex<Vec<(usize, usize, [u64; 2])>>,
}

impl Observer for Watch<'_> {
    fn applied(&self, _action: &Action) {
        let k = self.applied.fetch_add(1, Ordering::SeqCst) + 1;
        if self.at.contains(&k) {
            let records = self.db.load().unwrap().0.len();
            self.seen.lock().unwrap().push((k, records, self.sides.map(|s| s.flushes())));
        }
    }
}

/// `folders` folders of `per_folder` small files each, on `side`.
fn many(side: &MemoryEndpoint, folders: usize, per_folder: usize) -> Vec<String> {
    let mut paths = Vec::new();
    for f in 0..folders {
        for n in 0..per_folder {
            let path = format!("f{f:02}/file{n:04}.txt");
            side.put(&path, format!("{f}/{n}"), t(1000 + n as i64));
            paths.push(path);
        }
    }
    paths
}

#[test]
fn records_are_committed_in_batches_as_the_run_goes_each_after_a_flush() {
    // Guards bounded state batches (DESIGN "State") and "commit only what is durable": a run of
    // more than one batch commits each full batch as it goes, after flushing both sides.
    let (src, dst) = sides();
    let (_dir, db) = state_db();
    let files = many(&src, 10, 250); // 2,500 copies and 10 folders: two full batches and a rest
    let plan = plan_now(Mode::TwoWay, &db, [&src, &dst]);
    let actions = plan.actions().count();
    assert_eq!(actions, 2510);
    assert!(actions > 2 * BATCH);
    let at = [1, BATCH, BATCH + 1, 2 * BATCH, 2 * BATCH + 1, actions];
    let watch = Watch { db: &db, sides: [&src, &dst], applied: AtomicUsize::new(0), at: &at, seen: Mutex::default() };
    let outcome = apply_with(&plan, &db, [&src, &dst], 4, &watch);

    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    // When action k is reported, the batches of the actions before it are committed.
    let want: Vec<(usize, usize, [u64; 2])> = at
        .iter()
        .map(|&k| {
            let batches = (k - 1) / BATCH;
            (k, batches * BATCH, [batches as u64; 2])
        })
        .collect();
    assert_eq!(*watch.seen.lock().unwrap(), want);
    let (state, _) = db.load().unwrap();
    assert_eq!(state.len(), actions, "not every action was recorded");
    assert!(files.iter().all(|f| state.get(f).is_some()));
    // Two full batches and the rest, each after one flush of each side.
    assert_eq!([src.flushes(), dst.flushes()], [3, 3]);
    assert_converges(Mode::TwoWay, &db, &src, &dst);
}

#[test]
fn after_failures_amid_a_large_run_every_success_and_no_failure_is_recorded() {
    // Guards "records only from what was applied" across batch boundaries: with failures on
    // both sides of a batch commit, a path is recorded exactly when its copy landed.
    for workers in [1, 4] {
        let (src, plain_dst) = sides();
        let (_dir, db) = state_db();
        let files = many(&src, 10, 250);
        let dst = Faulty::new(plain_dst.clone());
        // Around the first and second batch commits (10 mkdirs come first), by path...
        let failing: BTreeSet<String> = files
            .iter()
            .enumerate()
            .filter(|(i, _)| (985..1005).contains(i) || (1988..1992).contains(i))
            .map(|(_, f)| f.clone())
            .collect();
        let by_path = failing.clone();
        dst.fail_when(Op::Write, ErrorKind::Other, move |call| by_path.contains(call.paths[0]));
        // ...and one by count, whichever path it falls on.
        dst.fail_nth(Op::Write, 1500);
        let outcome = sync(Mode::TwoWay, &db, [&src, &dst], workers);

        let (state, _) = db.load().unwrap();
        let missing: BTreeSet<&str> = files.iter().filter(|f| plain_dst.get(f).is_none()).map(String::as_str).collect();
        assert_eq!(missing.len(), failing.len() + 1, "workers {workers}");
        assert!(failing.iter().all(|f| missing.contains(f.as_str())));
        let problems: BTreeSet<&str> = problem_paths(&outcome).into_iter().collect();
        assert_eq!(problems, missing, "a problem for each failed copy, and only those");
        for file in &files {
            assert_eq!(state.get(file).is_some(), plain_dst.get(file).is_some(), "{file}: record and copy disagree");
        }
        assert_eq!(outcome.tally.copied, files.len() - missing.len());

        dst.heal();
        assert_converges(Mode::TwoWay, &db, &src, &plain_dst);
    }
}

#[test]
fn a_staged_folder_with_a_failed_write_gets_only_the_written_files() {
    // Guards staged folders (Endpoint::commit_staged): a copy into one that fails is a problem,
    // the files written are moved into place and recorded, the failed one is not recorded.
    let src = MemoryEndpoint::new("mem://source");
    let plain_dst = MemoryEndpoint::new("mem://destination").staging();
    let (_dir, db) = state_db();
    for name in ["a", "b", "c"] {
        src.put(&format!("new/{name}"), name, t(100));
    }
    let dst = Faulty::new(plain_dst.clone());
    dst.fail_when(Op::WriteStaged, ErrorKind::Other, |call| call.paths[0].ends_with("/b"));
    let outcome = sync(Mode::TwoWay, &db, [&src, &dst], 2);

    assert_eq!(dst.calls(Op::MkdirStaged), ["new"], "the folder was not staged");
    assert_eq!(problem_paths(&outcome), ["new/b"]);
    assert_eq!(plain_dst.get("new/a").unwrap(), b"a");
    assert_eq!(plain_dst.get("new/c").unwrap(), b"c");
    assert_eq!(plain_dst.get("new/b"), None);
    assert!(plain_dst.temps().is_empty(), "the temp folder stayed: {:?}", plain_dst.temps());
    assert!(record(&db, "new").is_some() && record(&db, "new/a").is_some() && record(&db, "new/c").is_some());
    assert_eq!(record(&db, "new/b"), None);

    dst.heal();
    assert_converges(Mode::TwoWay, &db, &src, &plain_dst);
}

#[test]
fn a_staged_folder_whose_name_was_taken_meanwhile_is_not_moved_there() {
    // Guards compare-then-mutate on a staged commit: a folder that appeared at the name since
    // the scan is left as it is, and nothing of the staged one is recorded.
    let src = MemoryEndpoint::new("mem://source");
    let plain_dst = MemoryEndpoint::new("mem://destination").staging();
    let (_dir, db) = state_db();
    for name in ["a", "b"] {
        src.put(&format!("new/{name}"), name, t(100));
    }
    let dst = Faulty::new(plain_dst.clone());
    dst.before(Op::CommitStaged, "new", |inner| {
        inner.put("new/theirs", "made meanwhile", t(150));
    });
    let outcome = sync(Mode::TwoWay, &db, [&src, &dst], 1);

    assert_eq!(problem_paths(&outcome), ["new"]);
    assert_eq!(plain_dst.get("new/theirs").unwrap(), b"made meanwhile");
    assert_eq!(plain_dst.get("new/a"), None);
    assert!(plain_dst.temps().is_empty(), "the temp folder stayed: {:?}", plain_dst.temps());
    for path in ["new", "new/a", "new/b"] {
        assert_eq!(record(&db, path), None, "{path}");
    }
    assert_eq!(outcome.tally, Default::default());

    assert_converges(Mode::TwoWay, &db, &src, &plain_dst);
    assert_eq!(src.get("new/theirs").unwrap(), b"made meanwhile");
}

#[test]
fn a_hand_made_stale_plan_changes_nothing() {
    // Guards that every mutating action compares first: a plan made from snapshots that no
    // longer hold (a copy, a delete and a rename of entries changed since) mutates nothing.
    let (src, dst) = sides();
    let (_dir, db) = state_db();
    src.put("copy.txt", "now", t(200));
    dst.put("delete.txt", "now", t(200));
    dst.put("rename.txt", "now", t(250));
    // What an earlier scan saw: copy.txt new on the source; delete.txt deleted there; and
    // rename.txt moved there to moved.txt (same content hash).
    let then = Entry::file(4, t(100));
    let moved = Entry { hash: Some([7; 32]), ..Entry::file(3, t(200)) };
    let source: Snapshot =
        [("copy.txt", then), ("moved.txt", moved)].map(|(p, e)| (p.to_string(), e)).into_iter().collect();
    let destination: Snapshot = [("delete.txt", then), ("rename.txt", Entry::file(3, t(200)))]
        .map(|(p, e)| (p.to_string(), e))
        .into_iter()
        .collect();
    let state: State = [
        ("delete.txt", StateRecord::synced(&then, &then, None)),
        ("rename.txt", StateRecord::synced(&moved, &moved, moved.hash)),
    ]
    .map(|(p, r)| (p.to_string(), r))
    .into_iter()
    .collect();
    let plan = plan(Mode::TwoWay, &state, &source, &destination, &PlanOptions::default());
    let shown: Vec<String> = plan.actions().map(|a| a.to_string()).collect();
    assert_eq!(
        shown,
        [
            "delete destination: delete.txt",
            "rename destination: rename.txt -> moved.txt",
            "copy   source -> destination: copy.txt (4 bytes)"
        ]
    );
    let before = (src.tree(), dst.tree());
    let outcome = apply(&plan, &db, [&src, &dst], 1);

    assert_eq!((src.tree(), dst.tree()), before, "a stale plan changed a side");
    assert_eq!(problem_paths(&outcome), ["delete.txt", "moved.txt", "copy.txt"]);
    assert!(outcome.problems.iter().all(|p| p.message.contains("changed since the scan")), "{:?}", outcome.problems);
    let (recorded, _) = db.load().unwrap();
    assert!(recorded.is_empty(), "a failed action was recorded: {recorded:?}");
}

#[test]
fn copies_going_both_ways_never_wait_on_each_others_connections() {
    // Guards against a run that never ends. A copy holds its source's connection (the open
    // reader) while it takes its target's; two copies going opposite ways between sides of one
    // connection each (two FTP sides at --connections 1) must not each hold what the other
    // waits for. Before a side's first write, a hook waits until either that side has a reader
    // open too (copies both ways at once: each write then waits for the other's reader, for
    // good) or another copy waits for the reading side's connection (one way at a time).
    let src = Arc::new(Faulty::new(MemoryEndpoint::new("mem://source").holding()));
    let dst = Arc::new(Faulty::new(MemoryEndpoint::new("mem://destination").holding()));
    for (side, names) in [(src.inner(), ["a.txt", "c.txt"]), (dst.inner(), ["b.txt", "d.txt"])] {
        for name in names {
            side.put(name, name, t(100));
        }
    }
    let (dir, db) = state_db();
    let plan = plan_now(Mode::TwoWay, &db, [&*src, &*dst]);
    let shown: Vec<String> = plan.actions().map(|a| a.to_string()).collect();
    assert_eq!(
        shown,
        [
            "copy   source -> destination: a.txt (5 bytes)",
            "copy   destination -> source: b.txt (5 bytes)",
            "copy   source -> destination: c.txt (5 bytes)",
            "copy   destination -> source: d.txt (5 bytes)",
        ],
        "the test needs copies of both ways, interleaved, in one phase"
    );
    assert_eq!(plan.phases().len(), 1);
    fn meet(target: &MemoryEndpoint, reading: &MemoryEndpoint) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while target.readers_open() == 0 && reading.waiting() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (s, d) = (src.inner().clone(), dst.inner().clone());
    dst.before_when(Op::Write, |_| true, move |target| meet(target, &s));
    src.before_when(Op::Write, |_| true, move |target| meet(target, &d));

    let (done, outcome) = std::sync::mpsc::channel();
    let sides = (Arc::clone(&src), Arc::clone(&dst));
    std::thread::spawn(move || {
        let outcome = apply(&plan, &db, [&*sides.0, &*sides.1], 2);
        let _ = done.send((outcome, db));
    });
    let (outcome, db) = outcome
        .recv_timeout(Duration::from_secs(60))
        .expect("the copies waited on each other's connections: the run never ended");
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(outcome.tally.copied, 4);
    assert_eq!(src.inner().tree(), dst.inner().tree());
    assert_converges(Mode::TwoWay, &db, src.inner(), dst.inner());
    drop(dir);
}
