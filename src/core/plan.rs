//! The planner: a pure function from (mode, state, source, destination, options) to a [`Plan`].
//!
//! No clock, no filesystem, no database: everything it needs is passed in, so every rule of
//! DESIGN.md "Modes" is tested by a table (tests/planner.rs).
//!
//! Planning is two steps. [`hash_requests`] names the files whose content must be hashed before
//! a decision can be made (a touched file, an edit on both sides, a possible rename); the caller
//! hashes them into the snapshots and then calls [`plan`]. A hash the planner wanted but did not
//! get makes it assume "changed", which can cause a copy or a kept-both conflict, never a loss.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::core::model::{ancestors, inside, parent, Entry, Hash, Kind, Observed, Side, Snapshot, State, StateRecord};
use crate::core::names::named;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One-way simple: new and changed source files are copied; nothing is deleted.
    Simple,
    /// One-way clone: the destination becomes an exact copy of the source.
    Clone,
    /// Two-way: changes on either side are carried to the other.
    TwoWay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The newer file keeps the name; the other is kept beside it as a conflict copy.
    KeepBoth,
    /// The newer file wins; the other is overwritten.
    Newer,
    /// The source's version wins.
    Source,
    /// The destination's version wins.
    Destination,
}

named!(Mode { Simple => "simple", Clone => "clone", TwoWay => "two-way" });
named!(ConflictPolicy { KeepBoth => "keep-both", Newer => "newer", Source => "source", Destination => "destination" });

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub conflict: ConflictPolicy,
    /// Without a state record, two files whose mtimes differ by at most this many nanoseconds
    /// (and whose sizes are equal) are taken as equal.
    pub modify_window_ns: i64,
    /// Compare content by hash, not by size and mtime, wherever sizes are equal.
    pub checksum: bool,
    /// Local time of the run as `YYYYMMDD-HHMMSS`, used in conflict copy names.
    pub conflict_stamp: String,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            conflict: ConflictPolicy::KeepBoth,
            modify_window_ns: 0,
            checksum: false,
            conflict_stamp: "19700101-000000".into(),
        }
    }
}

/// One step of a plan. The executor runs them in order and, for each one that succeeds,
/// commits the state change it implies (see `executor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Copy the file `path` of side `from` to the same path on the other side. `entry` is the
    /// file as scanned (it must still be so when read); `replaces` is what the target holds now.
    /// (Rarely present, so boxed: a plan may hold a hundred thousand copies.)
    Copy { from: Side, path: String, entry: Entry, replaces: Option<Box<Entry>> },
    /// Create the folder `path` on `side`.
    Mkdir { side: Side, path: String },
    /// Remove the file or (empty) folder `path` from `side`; it must still be `entry`.
    Delete { side: Side, path: String, entry: Entry },
    /// Rename `from` to `to` on `side`. With a `counterpart` (the other side's entry at `to`)
    /// this carries a rename made on the other side and records `to` as synced; without one it
    /// sets a conflicting file aside.
    Rename { side: Side, from: String, to: String, entry: Box<Entry>, counterpart: Option<Box<Entry>> },
    /// Both sides already agree: only the state record changes.
    Record { path: String, record: StateRecord },
    /// Neither side has the path any more: drop its state record.
    Forget { path: String },
}

impl Action {
    pub fn path(&self) -> &str {
        match self {
            Action::Copy { path, .. }
            | Action::Mkdir { path, .. }
            | Action::Delete { path, .. }
            | Action::Record { path, .. }
            | Action::Forget { path } => path,
            Action::Rename { to, .. } => to,
        }
    }

    /// True for actions that change a side (not only the state).
    pub fn touches_a_side(&self) -> bool {
        !matches!(self, Action::Record { .. } | Action::Forget { .. })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Copy { from, path, entry, .. } => {
                write!(f, "copy   {from} -> {}: {path} ({} bytes)", from.other(), entry.size)
            }
            Action::Mkdir { side, path } => write!(f, "mkdir  {side}: {path}/"),
            Action::Delete { side, path, entry } => {
                let slash = if entry.is_dir() { "/" } else { "" };
                write!(f, "delete {side}: {path}{slash}")
            }
            Action::Rename { side, from, to, .. } => write!(f, "rename {side}: {from} -> {to}"),
            Action::Record { path, .. } => write!(f, "record {path}"),
            Action::Forget { path } => write!(f, "forget {path}"),
        }
    }
}

/// A path where the two sides disagreed in a way that needed a policy, and what was done.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    pub path: String,
    /// Why this is a conflict, in words a user can read.
    pub reason: String,
    /// What the plan does about it.
    pub resolution: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conflict {}: {}; {}", self.path, self.reason, self.resolution)
    }
}

/// The actions to run, in order, and the conflicts met. Actions are kept by phase (see
/// `Phases`) rather than copied into one list, which would hold them twice at the peak.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    phases: Vec<Vec<Action>>,
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    /// A plan made elsewhere (the mail planner): `phases` run in order; a phase of copies only
    /// runs its copies in parallel.
    pub fn from_phases(phases: Vec<Vec<Action>>, conflicts: Vec<Conflict>) -> Plan {
        Plan { phases: phases.into_iter().filter(|phase| !phase.is_empty()).collect(), conflicts }
    }

    /// Every action, in the order they must run.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.phases.iter().flatten()
    }

    /// The actions by phase: each phase runs after the one before; copies form one phase.
    pub fn phases(&self) -> &[Vec<Action>] {
        &self.phases
    }

    /// Number of files (not folders) the plan deletes on `side`.
    pub fn deletions(&self, side: Side) -> usize {
        self.actions()
            .filter(|a| matches!(a, Action::Delete { side: s, entry, .. } if *s == side && !entry.is_dir()))
            .count()
    }

    /// True when applying the plan would change neither side.
    pub fn is_noop(&self) -> bool {
        !self.actions().any(|a| a.touches_a_side())
    }

    /// The folders this plan creates on `side` and then only fills with new files: at least 2
    /// and at most `limits.files` copies, each under `limits.file_size` bytes and together at
    /// most `limits.bytes`, and no other action inside. An endpoint where every rename is a
    /// round trip can create such a folder under a temp name, fill it, and move it into place
    /// once (see `Executor`). Returns each folder with the action creating it and its number
    /// of copies.
    pub fn staged_folders(&self, side: Side, limits: StageLimits) -> HashMap<&str, (&Action, usize)> {
        struct Fill<'a> {
            mkdir: &'a Action,
            files: usize,
            bytes: u64,
            other: bool,
        }
        let mut folders: HashMap<&str, Fill> = self
            .actions()
            .filter_map(|a| match a {
                Action::Mkdir { side: s, path } if *s == side => {
                    Some((path.as_str(), Fill { mkdir: a, files: 0, bytes: 0, other: false }))
                }
                _ => None,
            })
            .collect();
        if folders.is_empty() {
            return HashMap::new();
        }
        for action in self.actions() {
            if let Action::Copy { from, path, entry, replaces: None } = action {
                if *from != side && entry.size < limits.file_size {
                    if let Some(fill) = parent(path).and_then(|p| folders.get_mut(p)) {
                        fill.files += 1;
                        fill.bytes += entry.size;
                        continue;
                    }
                }
            }
            // Anything else inside a folder (a subfolder, a rename, a large file) rules it out.
            let paths = match action {
                Action::Rename { from, to, .. } => [Some(from.as_str()), Some(to.as_str())],
                other => [Some(other.path()), None],
            };
            for path in paths.into_iter().flatten() {
                // A folder's own creation is not something inside it.
                let own = matches!(action, Action::Mkdir { side: s, .. } if *s == side);
                for folder in ancestors(path).chain((!own).then_some(path)) {
                    if let Some(fill) = folders.get_mut(folder) {
                        fill.other = true;
                    }
                }
            }
        }
        folders
            .into_iter()
            .filter(|(_, f)| !f.other && (2..=limits.files).contains(&f.files) && f.bytes <= limits.bytes)
            .map(|(path, f)| (path, (f.mkdir, f.files)))
            .collect()
    }
}

/// Bounds on a staged folder (see [`Plan::staged_folders`]): what a run killed before the
/// folder is moved into place loses, and files that are better resumed one by one.
#[derive(Debug, Clone, Copy)]
pub struct StageLimits {
    pub files: usize,
    pub bytes: u64,
    pub file_size: u64,
}

/// How one side's entry at a path compares with that side's part of the state record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// No record and no entry.
    Absent,
    /// No record, an entry.
    Created,
    /// Same size and mtime as recorded (or same content, with --checksum).
    Unchanged,
    /// New mtime, same content: only the record needs updating.
    Touched,
    /// Different content, or a file became a folder or the reverse.
    Modified,
    /// Recorded, gone now.
    Deleted,
}

impl Change {
    fn is_unchanged(self) -> bool {
        matches!(self, Change::Unchanged | Change::Touched)
    }
}

/// The content hash the record stands for: its own, or the hash of a side that has not changed
/// since the record was written (a first-run match records no hash).
fn record_hash(record: &StateRecord, source: Option<&Entry>, destination: Option<&Entry>) -> Option<Hash> {
    record.hash.or_else(|| {
        [(Side::Source, source), (Side::Destination, destination)].into_iter().find_map(|(side, entry)| {
            let entry = entry?;
            let seen = record.side(side);
            (entry.kind == Kind::File && entry.size == seen.size && entry.mtime == seen.mtime)
                .then_some(entry.hash)
                .flatten()
        })
    })
}

/// How a file compares with its own side's previous observation.
fn file_change(entry: &Entry, seen: Observed, recorded: Option<Hash>) -> Change {
    if entry.size != seen.size {
        return Change::Modified;
    }
    match (entry.hash, recorded) {
        (Some(now), Some(then)) if now != then => Change::Modified,
        (Some(_), Some(_)) if entry.mtime != seen.mtime => Change::Touched,
        (Some(_), Some(_)) => Change::Unchanged,
        _ if entry.mtime == seen.mtime => Change::Unchanged,
        _ => Change::Modified,
    }
}

/// Content equality of two files when it is known: `None` when it would take a hash we lack.
fn known_equal(a: &Entry, b: &Entry) -> Option<bool> {
    if a.size != b.size {
        return Some(false);
    }
    match (a.hash, b.hash) {
        (Some(x), Some(y)) => Some(x == y),
        _ => None,
    }
}

/// One path with what each side and the state hold there: the unit every planning pass walks.
#[derive(Clone, Copy)]
struct Row<'a> {
    path: &'a str,
    sides: [Option<&'a Entry>; 2],
    record: Option<&'a StateRecord>,
}

impl<'a> Row<'a> {
    fn entry(&self, side: Side) -> Option<&'a Entry> {
        self.sides[side.index()]
    }

    /// How `side`'s entry compares with the record.
    fn change(&self, side: Side) -> Change {
        let entry = self.entry(side);
        let Some(record) = self.record else {
            return if entry.is_some() { Change::Created } else { Change::Absent };
        };
        match entry {
            None => Change::Deleted,
            Some(e) if e.kind != record.kind => Change::Modified,
            Some(e) if e.kind == Kind::Dir => Change::Unchanged,
            Some(e) => {
                let hash = record_hash(record, self.sides[0], self.sides[1]);
                file_change(e, record.side(side), hash)
            }
        }
    }

    /// A file deleted on `side` since the record while the other side kept it unchanged:
    /// maybe the old name of a rename made on `side`.
    fn deleted_on(&self, side: Side) -> bool {
        self.record.is_some_and(|r| r.kind == Kind::File)
            && self.entry(side).is_none()
            && self.entry(side.other()).is_some_and(|e| e.kind == Kind::File)
            && self.change(side.other()).is_unchanged()
    }

    /// A file created on `side` (no record, absent on the other side): maybe a new name.
    fn created_on(&self, side: Side) -> bool {
        self.record.is_none()
            && self.entry(side).is_some_and(|e| e.kind == Kind::File)
            && self.entry(side.other()).is_none()
    }
}

struct Inputs<'a> {
    mode: Mode,
    state: &'a State,
    sides: [&'a Snapshot; 2],
    options: &'a PlanOptions,
}

impl<'a> Inputs<'a> {
    fn entry(&self, side: Side, path: &str) -> Option<&'a Entry> {
        self.sides[side.index()].get(path)
    }

    /// Every path of both snapshots and the state, once, in sorted order: one linear merge
    /// of the three sorted maps, so that no pass has to look a path up.
    fn rows(&self) -> Vec<Row<'a>> {
        let mut state = self.state.iter().peekable();
        let mut source = self.sides[0].iter().peekable();
        let mut destination = self.sides[1].iter().peekable();
        let mut rows = Vec::with_capacity(self.state.len().max(self.sides[0].len()));
        loop {
            let next =
                [state.peek().map(|(k, _)| k), source.peek().map(|(k, _)| k), destination.peek().map(|(k, _)| k)]
                    .into_iter()
                    .flatten()
                    .min();
            let Some(path) = next.map(|p| p.as_str()) else { break };
            let record = state.next_if(|(k, _)| *k == path).map(|(_, r)| r);
            let s = source.next_if(|(k, _)| *k == path).map(|(_, e)| e);
            let d = destination.next_if(|(k, _)| *k == path).map(|(_, e)| e);
            rows.push(Row { path, sides: [s, d], record });
        }
        rows
    }

    /// Two files with no usable record: equal when the content is known equal, or (without
    /// --checksum) when sizes match and mtimes are within the modify window.
    fn equal_without_record(&self, a: &Entry, b: &Entry) -> bool {
        if let Some(equal) = known_equal(a, b) {
            return equal;
        }
        !self.options.checksum && (a.mtime - b.mtime).abs() <= self.options.modify_window_ns
    }

    /// Sides on which a rename can be carried over in this mode.
    fn rename_sides(&self) -> &'static [Side] {
        match self.mode {
            Mode::TwoWay => &Side::BOTH,
            Mode::Clone => &[Side::Source],
            Mode::Simple => &[],
        }
    }
}

/// Rows of files deleted on `side` (see [`Row::deleted_on`]), by their recorded size there.
fn deleted_by_size(rows: &[Row], side: Side) -> HashMap<u64, Vec<usize>> {
    let mut by_size: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if row.deleted_on(side) {
            by_size.entry(row.record.expect("deleted rows have a record").side(side).size).or_default().push(i);
        }
    }
    by_size
}

/// The sizes a file created on each side must have to be the new name of a file deleted there
/// (see [`plan`]'s rename detection): a file created with any other size is no rename.
pub fn rename_sizes(mode: Mode, state: &State, source: &Snapshot, destination: &Snapshot) -> [HashSet<u64>; 2] {
    let options = PlanOptions::default();
    let inputs = Inputs { mode, state, sides: [source, destination], options: &options };
    let rows = inputs.rows();
    let mut sizes: [HashSet<u64>; 2] = Default::default();
    for &side in inputs.rename_sides() {
        // Looser than `deleted_on`, which needs hashes not made yet: the other side may be
        // only touched.
        let deleted = rows.iter().filter_map(|row| match row.record {
            Some(record) if record.kind == Kind::File && row.entry(side).is_none() => {
                row.entry(side.other()).is_some_and(|e| e.kind == Kind::File).then_some(record.side(side).size)
            }
            _ => None,
        });
        sizes[side.index()] = deleted.collect();
    }
    sizes
}

/// The files whose content hash [`plan`] needs to decide correctly, as (side, path).
///
/// - a file whose size is as recorded but whose mtime is not (touched, or an edit that kept the
///   size), and the unchanged other side when the record holds no hash to compare with;
/// - a file changed on both sides to the same size (maybe the same edit twice);
/// - two files with no record, equal in size, whose mtimes differ by more than the window;
/// - a file created on one side with the size of a file deleted there (maybe a rename);
/// - with `checksum`, every file present on both sides with equal sizes, and every recorded one.
pub fn hash_requests(
    mode: Mode,
    state: &State,
    source: &Snapshot,
    destination: &Snapshot,
    options: &PlanOptions,
) -> Vec<(Side, String)> {
    let inputs = Inputs { mode, state, sides: [source, destination], options };
    let rows = inputs.rows();
    let mut wanted: Vec<(Side, String)> = Vec::new();
    let mut want = |side: Side, row: &Row| {
        if row.entry(side).is_some_and(|e| e.kind == Kind::File && e.hash.is_none()) {
            wanted.push((side, row.path.to_string()));
        }
    };
    for row in &rows {
        let [s, d] = row.sides;
        match row.record {
            Some(record) if record.kind == Kind::File => {
                let mut changed = [false; 2];
                for side in Side::BOTH {
                    let Some(e) = row.entry(side).filter(|e| e.kind == Kind::File) else { continue };
                    let seen = record.side(side);
                    changed[side.index()] = e.size != seen.size || e.mtime != seen.mtime;
                    if e.size == seen.size && (options.checksum || e.mtime != seen.mtime) {
                        want(side, row);
                        if record.hash.is_none() {
                            want(side.other(), row);
                        }
                    }
                }
                if changed == [true, true] && s.zip(d).is_some_and(|(s, d)| s.size == d.size) {
                    want(Side::Source, row);
                    want(Side::Destination, row);
                }
            }
            _ => {
                if let (Some(a), Some(b)) = (s, d) {
                    if a.kind == Kind::File
                        && b.kind == Kind::File
                        && a.size == b.size
                        && (options.checksum || (a.mtime - b.mtime).abs() > options.modify_window_ns)
                    {
                        want(Side::Source, row);
                        want(Side::Destination, row);
                    }
                }
            }
        }
    }
    for &side in inputs.rename_sides() {
        let deleted = deleted_by_size(&rows, side);
        if deleted.is_empty() {
            continue;
        }
        for row in rows.iter().filter(|row| row.created_on(side)) {
            if let Some(candidates) = deleted.get(&row.entry(side).expect("created").size) {
                want(side, row);
                for &old in candidates {
                    if rows[old].record.is_some_and(|r| r.hash.is_none()) {
                        want(side.other(), &rows[old]);
                    }
                }
            }
        }
    }
    wanted.sort();
    wanted.dedup();
    wanted
}

/// How a subtree below a path is decided once its root was settled one way.
#[derive(Debug, Clone, Copy)]
enum Subtree {
    /// Mirrored from this side (after a folder won a type conflict, or a folder replaced it).
    From(Side),
    /// Left alone (simple mode met a file where a folder is, and never deletes).
    Skip,
}

/// The actions of a plan, by the phase they run in. The order makes every action's
/// precondition hold: conflicting files are set aside before anything takes their name; files
/// go before folders are made where they stood; parents are made before what moves into them;
/// folders are removed (deepest first) only after their content was deleted or moved out;
/// copies land last, when every parent exists.
#[derive(Default)]
struct Phases {
    set_aside: Vec<Action>,
    delete_files: Vec<Action>,
    mkdirs: Vec<Action>,
    moves: Vec<Action>,
    delete_dirs: Vec<Action>,
    copies: Vec<Action>,
    records: Vec<Action>,
}

struct Planner<'a> {
    inputs: Inputs<'a>,
    phases: Phases,
    conflicts: Vec<Conflict>,
    /// Rows already settled by rename detection.
    handled: Vec<bool>,
    subtrees: HashMap<String, Subtree>,
    /// Folders with something created or modified below them, per side.
    dirty: [HashSet<&'a str>; 2],
    /// Conflict copy names given out by this plan.
    taken: HashSet<String>,
}

/// Computes the plan that brings `source` and `destination` in sync under `mode`.
///
/// `state` holds the last synced observation of each path; snapshots carry the hashes that
/// [`hash_requests`] asked for.
pub fn plan(mode: Mode, state: &State, source: &Snapshot, destination: &Snapshot, options: &PlanOptions) -> Plan {
    let inputs = Inputs { mode, state, sides: [source, destination], options };
    let rows = inputs.rows();
    let mut planner = Planner {
        inputs,
        phases: Phases::default(),
        conflicts: Vec::new(),
        handled: vec![false; rows.len()],
        subtrees: HashMap::new(),
        dirty: [HashSet::new(), HashSet::new()],
        taken: HashSet::new(),
    };
    if mode == Mode::TwoWay {
        planner.mark_dirty(&rows);
    }
    planner.carry_renames(&rows);
    for (i, row) in rows.iter().enumerate() {
        if !planner.handled[i] {
            planner.visit(row);
        }
    }
    planner.keep_parents();
    planner.finish()
}

impl<'a> Planner<'a> {
    fn entry(&self, side: Side, path: &str) -> Option<&'a Entry> {
        self.inputs.entry(side, path)
    }

    fn mark_dirty(&mut self, rows: &[Row<'a>]) {
        for row in rows {
            for side in Side::BOTH {
                if matches!(row.change(side), Change::Created | Change::Modified) {
                    for dir in ancestors(row.path) {
                        if !self.dirty[side.index()].insert(dir) {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// A file deleted on one side and a new file with the same content there is a rename:
    /// carry it as a rename on the other side instead of a delete and a copy.
    fn carry_renames(&mut self, rows: &[Row<'a>]) {
        for &side in self.inputs.rename_sides() {
            let deleted = deleted_by_size(rows, side);
            if deleted.is_empty() {
                continue;
            }
            let other = side.other();
            let mut by_hash: HashMap<Hash, Vec<usize>> = HashMap::new();
            for old in deleted.into_values().flatten() {
                let row = &rows[old];
                if let Some(hash) =
                    record_hash(row.record.expect("deleted rows have a record"), row.sides[0], row.sides[1])
                {
                    by_hash.entry(hash).or_default().push(old);
                }
            }
            for candidates in by_hash.values_mut() {
                candidates.sort_unstable_by(|a, b| b.cmp(a)); // pop() takes the first in path order
            }
            // (A row created on one side can never be one the other side's pass settled.)
            for (new, row) in rows.iter().enumerate().filter(|(_, row)| row.created_on(side)) {
                let entry = row.entry(side).expect("created");
                let Some(old) = entry.hash.and_then(|h| by_hash.get_mut(&h)).and_then(Vec::pop) else {
                    continue;
                };
                let moved = *rows[old].entry(other).expect("rename candidate exists on the other side");
                self.phases.moves.push(Action::Rename {
                    side: other,
                    from: rows[old].path.to_string(),
                    to: row.path.to_string(),
                    entry: Box::new(moved),
                    counterpart: Some(Box::new(*entry)),
                });
                self.handled[old] = true;
                self.handled[new] = true;
            }
        }
    }

    fn subtree(&self, path: &str) -> Option<Subtree> {
        if self.subtrees.is_empty() {
            return None;
        }
        ancestors(path).find_map(|dir| self.subtrees.get(dir).copied())
    }

    fn visit(&mut self, row: &Row<'a>) {
        match (self.subtree(row.path), self.inputs.mode) {
            (Some(Subtree::Skip), _) => {}
            (Some(Subtree::From(side)), _) => self.one_way(row, side, true),
            (None, Mode::Simple) => self.one_way(row, Side::Source, false),
            (None, Mode::Clone) => self.one_way(row, Side::Source, true),
            (None, Mode::TwoWay) => self.two_way(row),
        }
    }

    /// One-way: make side `from.other()` hold what `from` holds. `mirror` deletes what `from`
    /// lacks and overwrites edits made on the target (clone); without it (simple) nothing on
    /// the target is deleted and a target edit is overwritten only by a new source edit.
    fn one_way(&mut self, row: &Row<'a>, from: Side, mirror: bool) {
        let (path, to, record) = (row.path, from.other(), row.record);
        match (row.entry(from), row.entry(to)) {
            (None, None) => self.forget(row),
            (Some(f), None) => self.create(from, path, f),
            (None, Some(t)) if mirror => self.delete(to, path, t),
            (None, Some(_)) => self.forget(row),
            (Some(f), Some(t)) => match (f.kind, t.kind) {
                (Kind::Dir, Kind::Dir) => {
                    if record.is_none_or(|r| r.kind != Kind::Dir) {
                        self.record(path, StateRecord::dir());
                    }
                }
                (Kind::File, Kind::File) => {
                    let (cf, ct) = match record.filter(|r| r.kind == Kind::File) {
                        Some(_) => (row.change(from), row.change(to)),
                        None if self.inputs.equal_without_record(f, t) => return self.record_pair(row),
                        None => (Change::Modified, Change::Modified),
                    };
                    if cf.is_unchanged() && ct.is_unchanged() {
                        // Neither side's content changed; a touch only refreshes the record.
                        if cf == Change::Touched || ct == Change::Touched {
                            self.record_pair(row);
                        }
                    } else if known_equal(f, t) == Some(true) {
                        // Changed, but both now hold the same bytes.
                        self.record_pair(row);
                    } else if mirror || cf == Change::Modified {
                        self.copy(from, path, f, Some(*t));
                    }
                    // else: simple mode, only the destination was edited: keep that edit.
                }
                (Kind::Dir, Kind::File) if mirror => {
                    self.delete(to, path, t);
                    self.mkdir(to, path);
                }
                (Kind::File, Kind::Dir) if mirror => {
                    self.subtrees.insert(path.to_string(), Subtree::From(from));
                    self.delete(to, path, t);
                    self.copy(from, path, f, None);
                }
                _ => {
                    self.subtrees.insert(path.to_string(), Subtree::Skip);
                    self.conflicts.push(Conflict {
                        path: path.to_string(),
                        reason: format!("a {} on the source, a {} on the destination", kind_name(f), kind_name(t)),
                        resolution: "skipped: simple mode never deletes on the destination".into(),
                    });
                }
            },
        }
    }

    fn two_way(&mut self, row: &Row<'a>) {
        let path = row.path;
        let [s, d] = row.sides;
        let (cs, cd) = (row.change(Side::Source), row.change(Side::Destination));
        match (s, d) {
            (None, None) => self.forget(row),
            (Some(e), None) | (None, Some(e)) => {
                let (here, c_here) = if s.is_some() { (Side::Source, cs) } else { (Side::Destination, cd) };
                let there = here.other();
                match c_here {
                    // New on one side only: carry it over.
                    Change::Created => self.create(here, path, e),
                    // Deleted on the other side, untouched here: carry the delete (a folder
                    // that still has a survivor inside is kept by keep_parents).
                    Change::Unchanged | Change::Touched => self.delete(here, path, e),
                    // Deleted on the other side, edited here: an edit is never lost.
                    _ => {
                        self.conflicts.push(Conflict {
                            path: path.to_string(),
                            reason: format!("deleted on the {there}, changed on the {here}"),
                            resolution: format!("the {here}'s version is restored on the {there}"),
                        });
                        self.create(here, path, e);
                    }
                }
            }
            (Some(s), Some(d)) => match (s.kind, d.kind) {
                (Kind::Dir, Kind::Dir) => {
                    if row.record.is_none_or(|r| r.kind != Kind::Dir) {
                        self.record(path, StateRecord::dir());
                    }
                }
                (Kind::File, Kind::File) => match row.record.filter(|r| r.kind == Kind::File) {
                    None if self.inputs.equal_without_record(s, d) => self.record_pair(row),
                    None => {
                        let reason = if row.record.is_some() {
                            "a folder was replaced by different files on both sides"
                        } else {
                            "created on both sides with different contents"
                        };
                        self.content_conflict(path, s, d, reason)
                    }
                    Some(_) => match (cs.is_unchanged(), cd.is_unchanged()) {
                        (true, true) => {
                            if cs == Change::Touched || cd == Change::Touched {
                                self.record_pair(row);
                            }
                        }
                        // Changed on one side only: carry it over.
                        (false, true) => self.copy(Side::Source, path, s, Some(*d)),
                        (true, false) => self.copy(Side::Destination, path, d, Some(*s)),
                        // Changed on both: the same edit twice is only recorded.
                        (false, false) if known_equal(s, d) == Some(true) => self.record_pair(row),
                        (false, false) => self.content_conflict(path, s, d, "changed on both sides"),
                    },
                },
                _ => self.type_change(row, s, d),
            },
        }
    }

    /// One side holds a file and the other a folder.
    fn type_change(&mut self, row: &Row<'a>, s: &'a Entry, d: &'a Entry) {
        let path = row.path;
        let Some(record) = row.record else {
            return self.type_conflict(path, s, d, "a file on one side, a folder on the other");
        };
        // Exactly one side still has the recorded kind; the other replaced it.
        let (changed, kept) =
            if s.kind != record.kind { (Side::Source, Side::Destination) } else { (Side::Destination, Side::Source) };
        let kept_edited = match record.kind {
            Kind::Dir => self.dirty[kept.index()].contains(path),
            Kind::File => !row.change(kept).is_unchanged(),
        };
        if kept_edited {
            let new_kind = kind_name(row.entry(changed).expect("both sides have the path"));
            let reason = format!("replaced by a {new_kind} on the {changed}, changed on the {kept}");
            return self.type_conflict(path, s, d, &reason);
        }
        // Only one side changed the type: carry the new type over.
        self.replace(changed, path, s, d);
    }

    /// Makes side `winner.other()` hold `winner`'s file or folder at `path`, whatever it holds.
    fn replace(&mut self, winner: Side, path: &str, s: &Entry, d: &Entry) {
        let loser = winner.other();
        let (w, l) = if winner == Side::Source { (*s, *d) } else { (*d, *s) };
        self.subtrees.insert(path.to_string(), Subtree::From(winner));
        self.delete(loser, path, &l);
        match w.kind {
            Kind::Dir => self.mkdir(loser, path),
            Kind::File => self.copy(winner, path, &w, None),
        }
    }

    fn type_conflict(&mut self, path: &str, s: &Entry, d: &Entry, reason: &str) {
        let (file_side, dir_side) =
            if s.kind == Kind::File { (Side::Source, Side::Destination) } else { (Side::Destination, Side::Source) };
        let resolution = match self.inputs.options.conflict {
            // A folder has no meaningful age, so "newer" keeps both here too.
            ConflictPolicy::KeepBoth | ConflictPolicy::Newer => {
                let file = if file_side == Side::Source { *s } else { *d };
                let aside = self.set_aside(file_side, path, file);
                self.mkdir(file_side, path);
                self.subtrees.insert(path.to_string(), Subtree::From(dir_side));
                format!("kept both: the folder keeps the name, the {file_side}'s file is saved as {aside}")
            }
            ConflictPolicy::Source | ConflictPolicy::Destination => {
                let winner = self.policy_winner(s, d);
                self.replace(winner, path, s, d);
                let kind = kind_name(if winner == Side::Source { s } else { d });
                format!("the {winner}'s {kind} replaces the {}'s", winner.other())
            }
        };
        self.conflicts.push(Conflict { path: path.to_string(), reason: reason.to_string(), resolution });
    }

    fn content_conflict(&mut self, path: &str, s: &Entry, d: &Entry, reason: &str) {
        let winner = self.policy_winner(s, d);
        let loser = winner.other();
        let (w, l) = if winner == Side::Source { (s, d) } else { (d, s) };
        let resolution = if self.inputs.options.conflict == ConflictPolicy::KeepBoth {
            let aside = self.set_aside(loser, path, *l);
            self.copy(winner, path, w, None);
            format!("kept both: the {winner}'s version keeps the name, the {loser}'s is saved as {aside}")
        } else {
            self.copy(winner, path, w, Some(*l));
            format!("the {winner}'s version overwrites the {loser}'s")
        };
        self.conflicts.push(Conflict { path: path.to_string(), reason: reason.to_string(), resolution });
    }

    /// The side whose version wins under the policy; for keep-both and newer, the newer file
    /// (the source on a tie).
    fn policy_winner(&self, s: &Entry, d: &Entry) -> Side {
        match self.inputs.options.conflict {
            ConflictPolicy::Source => Side::Source,
            ConflictPolicy::Destination => Side::Destination,
            ConflictPolicy::KeepBoth | ConflictPolicy::Newer => {
                if d.mtime > s.mtime {
                    Side::Destination
                } else {
                    Side::Source
                }
            }
        }
    }

    /// Renames `side`'s file at `path` to a free conflict name and copies it to the other side
    /// under that name. Returns the name.
    fn set_aside(&mut self, side: Side, path: &str, entry: Entry) -> String {
        let aside = (0..)
            .map(|n| conflict_name(path, &self.inputs.options.conflict_stamp, n))
            .find(|name| {
                !self.taken.contains(name)
                    && !self.inputs.state.contains_key(name)
                    && Side::BOTH.iter().all(|&s| self.entry(s, name).is_none())
            })
            .expect("some conflict name is free");
        self.taken.insert(aside.clone());
        self.phases.set_aside.push(Action::Rename {
            side,
            from: path.to_string(),
            to: aside.clone(),
            entry: Box::new(entry),
            counterpart: None,
        });
        self.phases.copies.push(Action::Copy { from: side, path: aside.clone(), entry, replaces: None });
        aside
    }

    fn create(&mut self, from: Side, path: &str, entry: &Entry) {
        match entry.kind {
            Kind::Dir => self.mkdir(from.other(), path),
            Kind::File => self.copy(from, path, entry, None),
        }
    }

    fn copy(&mut self, from: Side, path: &str, entry: &Entry, replaces: Option<Entry>) {
        let replaces = replaces.map(Box::new);
        self.phases.copies.push(Action::Copy { from, path: path.to_string(), entry: *entry, replaces });
    }

    fn mkdir(&mut self, side: Side, path: &str) {
        self.phases.mkdirs.push(Action::Mkdir { side, path: path.to_string() });
    }

    fn delete(&mut self, side: Side, path: &str, entry: &Entry) {
        let action = Action::Delete { side, path: path.to_string(), entry: *entry };
        match entry.kind {
            Kind::File => self.phases.delete_files.push(action),
            Kind::Dir => self.phases.delete_dirs.push(action),
        }
    }

    fn record(&mut self, path: &str, record: StateRecord) {
        self.phases.records.push(Action::Record { path: path.to_string(), record });
    }

    /// Both sides hold the same content: record them as they are now (if that is news).
    fn record_pair(&mut self, row: &Row) {
        let (s, d) = (row.sides[0].expect("a file on both sides"), row.sides[1].expect("a file on both sides"));
        let hash = row.record.and_then(|r| record_hash(r, Some(s), Some(d)));
        let record = StateRecord::synced(s, d, s.hash.or(d.hash).or(hash));
        if row.record != Some(&record) {
            self.record(row.path, record);
        }
    }

    fn forget(&mut self, row: &Row) {
        if row.record.is_some() {
            self.phases.records.push(Action::Forget { path: row.path.to_string() });
        }
    }

    /// Everything that survives the plan on a side keeps its parent folders there: a folder
    /// delete with a survivor inside is dropped, and a missing parent is made.
    fn keep_parents(&mut self) {
        for side in Side::BOTH {
            let snapshot = self.inputs.sides[side.index()];
            let mut removed: HashSet<String> = HashSet::new();
            let mut created: Vec<String> = Vec::new();
            for action in self.phases.all() {
                match action {
                    Action::Delete { side: s, path, .. } if *s == side => {
                        removed.insert(path.clone());
                    }
                    Action::Rename { side: s, from, to, .. } if *s == side => {
                        removed.insert(from.clone());
                        created.push(to.clone());
                    }
                    Action::Mkdir { side: s, path } if *s == side => created.push(path.clone()),
                    Action::Copy { from, path, .. } if *from != side => created.push(path.clone()),
                    _ => {}
                }
            }
            // A folder deleted here that still holds a survivor is kept.
            let mut kept: HashSet<String> = HashSet::new();
            for action in &self.phases.delete_dirs {
                let Action::Delete { side: s, path, .. } = action else { continue };
                // A folder that holds what the pair does not sync (ignored entries, links) can
                // never be emptied: it is kept, or every run would fail to delete it.
                let holds_unsynced = snapshot.get(path).is_some_and(|e| e.holds_unsynced);
                if *s == side && (holds_unsynced || inside(snapshot, path).any(|(child, _)| !removed.contains(child))) {
                    kept.insert(path.clone());
                }
            }
            let mut exists: HashSet<String> = created.iter().cloned().collect();
            for path in &created {
                for dir in ancestors(path) {
                    if exists.contains(dir) {
                        break;
                    }
                    let present = snapshot.get(dir).is_some_and(Entry::is_dir);
                    if present && removed.contains(dir) {
                        kept.insert(dir.to_string());
                    } else if !present {
                        self.phases.mkdirs.push(Action::Mkdir { side, path: dir.to_string() });
                    }
                    exists.insert(dir.to_string());
                }
            }
            // A kept folder keeps its own parents too.
            let mut more: Vec<String> = kept.iter().flat_map(|p| ancestors(p).map(str::to_string)).collect();
            while let Some(dir) = more.pop() {
                if removed.contains(&dir) && kept.insert(dir.clone()) {
                    more.extend(ancestors(&dir).map(str::to_string));
                }
            }
            self.phases
                .delete_dirs
                .retain(|a| !matches!(a, Action::Delete { side: s, path, .. } if *s == side && kept.contains(path)));
        }
    }

    fn finish(self) -> Plan {
        let Phases { set_aside, delete_files, mut mkdirs, moves, mut delete_dirs, copies, records } = self.phases;
        mkdirs.sort_by(|a, b| a.path().cmp(b.path()));
        mkdirs.dedup();
        delete_dirs.sort_by(|a, b| b.path().cmp(a.path()));
        let phases = [set_aside, delete_files, mkdirs, moves, delete_dirs, copies, records];
        Plan { phases: phases.into_iter().filter(|p| !p.is_empty()).collect(), conflicts: self.conflicts }
    }
}

impl Phases {
    fn all(&self) -> impl Iterator<Item = &Action> {
        self.set_aside
            .iter()
            .chain(&self.delete_files)
            .chain(&self.mkdirs)
            .chain(&self.moves)
            .chain(&self.delete_dirs)
            .chain(&self.copies)
    }
}

fn kind_name(entry: &Entry) -> &'static str {
    match entry.kind {
        Kind::File => "file",
        Kind::Dir => "folder",
    }
}

/// `dir/NAME.EXT` -> `dir/NAME.conflict-STAMP[-N].EXT`; a name without an extension (or a dot
/// file such as `.bashrc`) gets the suffix at its end.
pub fn conflict_name(path: &str, stamp: &str, n: u32) -> String {
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    let suffix = if n == 0 { format!("conflict-{stamp}") } else { format!("conflict-{stamp}-{n}") };
    match name.rfind('.').filter(|&i| i > 0) {
        Some(i) => format!("{dir}{}.{suffix}{}", &name[..i], &name[i..]),
        None => format!("{dir}{name}.{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: StageLimits = StageLimits { files: 3, bytes: 100, file_size: 50 };

    fn mkdir(side: Side, path: &str) -> Action {
        Action::Mkdir { side, path: path.into() }
    }

    fn copy(path: &str, size: u64) -> Action {
        Action::Copy { from: Side::Source, path: path.into(), entry: Entry::file(size, 0), replaces: None }
    }

    /// The folders staged on the destination for a plan of these actions.
    fn staged(actions: Vec<Action>) -> Vec<(String, usize)> {
        let plan = Plan { phases: vec![actions], conflicts: vec![] };
        let mut folders: Vec<_> =
            plan.staged_folders(Side::Destination, LIMITS).into_iter().map(|(p, (_, n))| (p.to_string(), n)).collect();
        folders.sort();
        folders
    }

    #[test]
    fn staged_folders() {
        use Side::{Destination as D, Source as S};
        type Case = (&'static str, Vec<Action>, Vec<(&'static str, usize)>);
        let cases: Vec<Case> = vec![
            ("new folder with small new files", vec![mkdir(D, "a"), copy("a/1", 1), copy("a/2", 2)], vec![("a", 2)]),
            ("one file gains nothing", vec![mkdir(D, "a"), copy("a/1", 1)], vec![]),
            (
                "more files than the limit",
                vec![mkdir(D, "a"), copy("a/1", 1), copy("a/2", 1), copy("a/3", 1), copy("a/4", 1)],
                vec![],
            ),
            (
                "more bytes than the limit",
                vec![mkdir(D, "a"), copy("a/1", 49), copy("a/2", 49), copy("a/3", 49)],
                vec![],
            ),
            ("a file to resume one by one", vec![mkdir(D, "a"), copy("a/1", 1), copy("a/2", 50)], vec![]),
            ("created on the other side", vec![mkdir(S, "a"), copy("a/1", 1), copy("a/2", 2)], vec![]),
            ("not created by the plan", vec![copy("a/1", 1), copy("a/2", 2)], vec![]),
            (
                "a new subfolder rules out its parent only",
                vec![
                    mkdir(D, "a"),
                    mkdir(D, "a/b"),
                    copy("a/1", 1),
                    copy("a/2", 1),
                    copy("a/b/3", 1),
                    copy("a/b/4", 1),
                ],
                vec![("a/b", 2)],
            ),
            (
                "a rename into it",
                vec![
                    mkdir(D, "a"),
                    Action::Rename {
                        side: D,
                        from: "x".into(),
                        to: "a/x".into(),
                        entry: Box::new(Entry::file(1, 0)),
                        counterpart: None,
                    },
                    copy("a/1", 1),
                    copy("a/2", 1),
                ],
                vec![],
            ),
            (
                "a copy that replaces something",
                vec![
                    mkdir(D, "a"),
                    copy("a/1", 1),
                    Action::Copy {
                        from: S,
                        path: "a/2".into(),
                        entry: Entry::file(1, 0),
                        replaces: Some(Box::new(Entry::file(2, 0))),
                    },
                ],
                vec![],
            ),
            (
                "a copy the other way",
                vec![
                    mkdir(D, "a"),
                    copy("a/1", 1),
                    Action::Copy { from: D, path: "a/2".into(), entry: Entry::file(1, 0), replaces: None },
                ],
                vec![],
            ),
            (
                "two folders",
                vec![mkdir(D, "a"), mkdir(D, "b"), copy("a/1", 1), copy("a/2", 1), copy("b/1", 1), copy("b/2", 1)],
                vec![("a", 2), ("b", 2)],
            ),
        ];
        for (name, actions, want) in cases {
            let want: Vec<(String, usize)> = want.into_iter().map(|(p, n)| (p.to_string(), n)).collect();
            assert_eq!(staged(actions), want, "{name}");
        }
    }

    #[test]
    fn conflict_names() {
        assert_eq!(conflict_name("a/report.txt", "20261122-101500", 0), "a/report.conflict-20261122-101500.txt");
        assert_eq!(conflict_name("Makefile", "S", 2), "Makefile.conflict-S-2");
        assert_eq!(conflict_name("d/.bashrc", "S", 0), "d/.bashrc.conflict-S");
        assert_eq!(conflict_name("x.tar.gz", "S", 1), "x.tar.conflict-S-1.gz");
    }
}
