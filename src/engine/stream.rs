//! Stage "scan", folder by folder: both sides and the state are read one folder at a time,
//! and a file that both sides hold exactly as the state recorded them is counted and dropped
//! there, so memory follows the largest folder and the number of changes, not the tree.
//!
//! The planner then gets what can matter to it: every folder (as the sides and the state hold
//! them) and every file that is new, changed, deleted or unrecorded on either side. A file
//! unchanged on both sides produces no action whatever else happens (a folder deleted around
//! it makes it absent on that side, so not unchanged), and rename detection pairs deleted and
//! created files, which are all kept. The safety stops count the whole pair from the totals.
//!
//! Each side is listed by a worker thread, or one per connection of an FTP side (folders go
//! round them in turn, answers come back in the order asked); the state is read by key (it is
//! stored per folder); the three meet per folder.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc;

use crate::core::filter::Filter;
use crate::core::model::{is_inside, Entry, Kind, Side, Snapshot, State, StateRecord};
use crate::core::plan::Mode;
use crate::endpoint::{Endpoint, EndpointError, IssueKind, Result as EndpointResult, Scan, ScanIssue};
use crate::state::StateDb;

/// What the streamed scan keeps and counts.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Folders, and files not unchanged, per side (bulk rows left for later excepted).
    pub snapshots: [Snapshot; 2],
    /// Their records (and those of paths no side holds any more).
    pub state: State,
    /// Every file each side holds, dropped ones included.
    pub files: [usize; 2],
    /// Every file record.
    pub recorded: usize,
    pub issues: [Vec<ScanIssue>; 2],
    pub leftovers: [Vec<String>; 2],
    /// Folders whose records did not decode.
    pub bad_records: usize,
    /// The bulk rows left for later, when there were too many to hold.
    pub later: Later,
}

/// Bulk rows (see [`bulk`]) left to be listed again, planned and applied folder by folder once
/// the rest of the plan is done: a run with more of them than it holds (a first run, a large
/// new tree) keeps only their folders.
#[derive(Debug, Default)]
pub struct Later {
    /// The folders holding them, in the order they were met.
    pub folders: Vec<BulkFolder>,
    /// Copies they will likely make, and their bytes (for a progress line).
    pub copies: u64,
    pub bytes: u64,
}

/// A folder holding bulk rows, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkFolder {
    pub path: String,
    pub place: Place,
}

/// Where a folder stands, for the rows inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A folder on both sides, as are all the folders above it.
    Both,
    /// A folder new on this side only (no record, nothing on the other side), in a folder
    /// that is on both sides or new there too: all it holds is new, and copied over.
    New(Side),
}

/// One path of a folder, as both sides and the state hold it.
#[derive(Debug, Clone)]
pub struct Row {
    pub path: String,
    pub entries: [Option<Entry>; 2],
    pub record: Option<StateRecord>,
}

/// A held row, and whether it is a bulk row.
struct Kept {
    row: Row,
    bulk: bool,
}

/// Folders asked of the workers ahead of the one being merged.
const IN_FLIGHT: usize = 64;

/// A file both sides hold as the record says: nothing to do for it.
fn unchanged(source: Option<&Entry>, destination: Option<&Entry>, record: Option<&StateRecord>) -> bool {
    match (source, destination, record) {
        (Some(s), Some(d), Some(r)) => {
            s.kind == Kind::File
                && d.kind == Kind::File
                && r.kind == Kind::File
                && s.observed() == r.source
                && d.observed() == r.destination
        }
        _ => false,
    }
}

/// True when a file new on `side` is copied to the other side in `mode` (not deleted there, as
/// a clone does with what only its destination holds, nor left alone, as simple mode does).
fn carried(mode: Mode, side: Side) -> bool {
    side == Side::Source || mode == Mode::TwoWay
}

/// A bulk row: a file whose plan needs nothing from outside its own path, so that it can be
/// planned and applied apart from the rest and after it. It is a file on both sides (copied,
/// recorded or a conflict kept both: never a deletion), or a new file on one side carried to
/// the other, in a folder at a `place` where no folder above changes type or is deleted. A new
/// file may still be the new name of a renamed one: [`relist`] leaves out those whose size
/// some deleted file has.
pub fn bulk(mode: Mode, place: Place, entries: [Option<&Entry>; 2], record: Option<&StateRecord>) -> bool {
    let file = |entry: Option<&Entry>| entry.is_some_and(|e| e.kind == Kind::File);
    if record.is_some_and(|r| r.kind != Kind::File) {
        return false;
    }
    let new_on = |side: Side| {
        record.is_none()
            && file(entries[side.index()])
            && entries[side.other().index()].is_none()
            && carried(mode, side)
    };
    match place {
        Place::Both => (file(entries[0]) && file(entries[1])) || Side::BOTH.into_iter().any(new_on),
        Place::New(side) => new_on(side),
    }
}

/// Where a folder of a folder at `place` stands; `None`: its rows are never bulk rows.
pub fn child_place(
    mode: Mode,
    place: Place,
    entries: [Option<&Entry>; 2],
    record: Option<&StateRecord>,
) -> Option<Place> {
    let dir = |entry: Option<&Entry>| entry.is_some_and(Entry::is_dir);
    let new_on = |side: Side| {
        record.is_none() && dir(entries[side.index()]) && entries[side.other().index()].is_none() && carried(mode, side)
    };
    match place {
        Place::Both if dir(entries[0]) && dir(entries[1]) => Some(Place::Both),
        Place::Both => Side::BOTH.into_iter().find(|&side| new_on(side)).map(Place::New),
        Place::New(side) => new_on(side).then_some(Place::New(side)),
    }
}

/// The listing workers of both sides, answering folders in the order asked. A side gets a
/// worker for each connection it takes at once (an FTP server's listings are round trips, so
/// several are in flight; a local side has one): folders go round its workers in turn, and
/// answers are taken back in the same turn.
struct Listers {
    /// Per side, each worker's inbox (a folder, and whether the side holds it: if not, it is
    /// not asked, and holds nothing) and outbox.
    workers: [Vec<Worker>; 2],
    /// Per side, how many folders were asked and answered.
    asked: [usize; 2],
    answered: [usize; 2],
}

type Worker = (mpsc::Sender<(String, bool)>, mpsc::Receiver<EndpointResult<Scan>>);

impl Listers {
    fn spawn<'s, 'e: 's>(
        scope: &'s std::thread::Scope<'s, 'e>,
        sides: [&'e dyn Endpoint; 2],
        empty: [bool; 2],
        filter: &'e Filter,
    ) -> Listers {
        let workers = Side::BOTH.map(|side| {
            let endpoint = sides[side.index()];
            let nothing = empty[side.index()];
            let count = if nothing { 1 } else { endpoint.parallelism().clamp(1, IN_FLIGHT) };
            (0..count)
                .map(|_| {
                    let (ask, asked) = mpsc::channel::<(String, bool)>();
                    let (tell, told) = mpsc::channel::<EndpointResult<Scan>>();
                    scope.spawn(move || {
                        let mut list = endpoint.folder_lister();
                        for (folder, there) in asked {
                            let listing = if nothing || !there {
                                Ok(Scan { snapshot: Snapshot::default(), issues: Vec::new(), leftovers: Vec::new() })
                            } else {
                                list(filter, &folder)
                            };
                            if tell.send(listing).is_err() {
                                break;
                            }
                        }
                    });
                    (ask, told)
                })
                .collect()
        });
        Listers { workers, asked: [0; 2], answered: [0; 2] }
    }

    fn ask(&mut self, folder: &str, there: [bool; 2]) {
        for side in Side::BOTH {
            let (workers, asked) = (&self.workers[side.index()], &mut self.asked[side.index()]);
            let (ask, _) = &workers[*asked % workers.len()];
            ask.send((folder.to_string(), there[side.index()])).expect("the worker waits");
            *asked += 1;
        }
    }

    fn answer(&mut self, side: Side) -> EndpointResult<Scan> {
        let (workers, answered) = (&self.workers[side.index()], &mut self.answered[side.index()]);
        let (_, told) = &workers[*answered % workers.len()];
        *answered += 1;
        told.recv().expect("the worker answers")
    }
}

/// A path directly in a folder, as each side's listing and the state hold it.
type Child<'a> = (&'a String, [Option<&'a Entry>; 2], Option<&'a StateRecord>);

/// The paths directly in `folder` that the listings or the state hold, in order: the three
/// (each sorted) merged in one pass.
fn children<'a>(folder: &str, listed: &'a [Snapshot; 2], state: &'a State) -> Vec<Child<'a>> {
    let inside = |path: &str| match folder {
        "" => !path.is_empty() && !path.contains('/'),
        _ => path.strip_prefix(folder).and_then(|p| p.strip_prefix('/')).is_some_and(|name| !name.contains('/')),
    };
    let mut sides = listed.each_ref().map(|s| s.iter().filter(|(p, _)| inside(p)).peekable());
    let mut records = state.iter().filter(|(p, _)| inside(p)).peekable();
    let mut out = Vec::with_capacity(listed[0].len().max(listed[1].len()));
    loop {
        let heads = [sides[0].peek().map(|h| h.0), sides[1].peek().map(|h| h.0), records.peek().map(|h| h.0)];
        let Some(path) = heads.into_iter().flatten().min() else { break };
        let entries = [0, 1].map(|i| sides[i].next_if(|(p, _)| *p == path).map(|(_, e)| e));
        let record = records.next_if(|(p, _)| *p == path).map(|(_, r)| r);
        out.push((path, entries, record));
    }
    out
}

/// Reads both sides (`empty`: a side known to hold nothing, a destination a first run would
/// create) and the state, folder by folder from the root. Once more than `hold` bulk rows
/// (see [`bulk`]) are met, they are no longer held: only their folders are, in
/// [`Streamed::later`]. An error is the side that could not be listed at all, with its error.
pub fn stream(
    sides: [&dyn Endpoint; 2],
    empty: [bool; 2],
    filter: &Filter,
    db: &StateDb,
    mode: Mode,
    hold: usize,
) -> crate::core::error::Result<Result<Streamed, (Side, EndpointError)>> {
    std::thread::scope(|scope| {
        let mut listers = Listers::spawn(scope, sides, empty, filter);
        let mut out = Streamed::default();
        let mut kept: Vec<Kept> = Vec::new();
        // Where each folder's row is in `kept`, to set what its own listing learns of it.
        let mut folder_at: HashMap<String, usize> = HashMap::new();
        let (mut held, mut spilled) = (0usize, false);
        // Folders to read, and those asked of both workers already (answered in that order):
        // a few are kept in flight so that neither side waits for the other's folder.
        // Each with where it stands, and the sides that hold it: only those are asked.
        let mut folders: Vec<(String, Option<Place>, [bool; 2])> = vec![(String::new(), Some(Place::Both), [true; 2])];
        let mut in_flight: VecDeque<(String, Option<Place>, [bool; 2])> = VecDeque::new();
        loop {
            while in_flight.len() < IN_FLIGHT {
                let Some((next, place, there)) = folders.pop() else { break };
                listers.ask(&next, there);
                in_flight.push_back((next, place, there));
            }
            let Some((folder, mut place, there)) = in_flight.pop_front() else { break };
            let (state, bad) = db.load_folders([folder.as_str()])?;
            out.bad_records += bad;
            let mut listed: [Snapshot; 2] = Default::default();
            // Paths of this folder a listing could not read or left out: none of them is a
            // bulk row or a place for bulk rows (held, they are left out of the run).
            let mut flagged: HashSet<String> = HashSet::new();
            for side in Side::BOTH {
                let scan = match listers.answer(side) {
                    Ok(scan) => scan,
                    Err(e) if folder.is_empty() => return Ok(Err((side, e))),
                    // A folder that vanished or broke since its parent was listed: its side
                    // holds nothing there this run (scan_part reports what it could not read).
                    Err(e) => {
                        out.issues[side.index()].push(ScanIssue {
                            path: folder.clone(),
                            message: format!("cannot read: {e}"),
                            kind: IssueKind::Unreadable,
                        });
                        place = None;
                        continue;
                    }
                };
                // A folder its parent's listing showed, listed without its own entry, could not
                // be read (or is no longer a folder): never taken for an empty one, whose
                // files would look deleted.
                let unlisted =
                    there[side.index()] && !folder.is_empty() && !scan.snapshot.get(&folder).is_some_and(Entry::is_dir);
                let said = scan.issues.iter().any(|i| i.path == folder);
                if unlisted && !said {
                    out.issues[side.index()].push(ScanIssue {
                        path: folder.clone(),
                        message: "cannot read: not listed as a folder (unreadable, or changed since its parent was \
                                  listed)"
                            .into(),
                        kind: IssueKind::Unreadable,
                    });
                }
                if unlisted || said {
                    place = None;
                }
                flagged.extend(scan.issues.iter().map(|i| i.path.clone()));
                out.issues[side.index()].extend(scan.issues);
                out.leftovers[side.index()].extend(scan.leftovers);
                // The folder's own entry, as its listing saw it (whether it holds something
                // left out, which keeps it from being deleted).
                if let (Some(entry), Some(&at)) = (scan.snapshot.get(&folder), folder_at.get(&folder)) {
                    if let Some(kept) = kept[at].row.entries[side.index()].as_mut().filter(|_| entry.is_dir()) {
                        *kept = *entry;
                    }
                }
                listed[side.index()] = scan.snapshot;
            }
            if let Some(new @ Place::New(_)) = place {
                // Made by the later pass, with its files: where folders are staged (FTP), it is
                // filled under a temp name and moved into place there.
                out.later.folders.push(BulkFolder { path: folder.clone(), place: new });
            }
            for (path, entries, record) in children(&folder, &listed, &state) {
                for side in Side::BOTH {
                    if entries[side.index()].is_some_and(|e| e.kind == Kind::File) {
                        out.files[side.index()] += 1;
                    }
                }
                // A record the filter hides is dropped before planning: not the pair's.
                if record.is_some_and(|r| r.kind == Kind::File && !filter.hides(path, Kind::File)) {
                    out.recorded += 1;
                }
                let folder_here =
                    entries.iter().flatten().any(|e| e.is_dir()) || record.is_some_and(|r| r.kind == Kind::Dir);
                if !folder_here && unchanged(entries[0], entries[1], record) {
                    continue;
                }
                let place = place.filter(|_| !flagged.contains(path.as_str()));
                let is_bulk = !folder_here && place.is_some_and(|p| bulk(mode, p, entries, record));
                if is_bulk {
                    out.later.note(&folder, place.expect("a bulk row has a place"), entries);
                    if spilled {
                        continue;
                    }
                    held += 1;
                }
                // A new folder is a bulk row too: the later pass makes it.
                let mut is_bulk = is_bulk;
                if folder_here {
                    let inner = place.and_then(|p| child_place(mode, p, entries, record));
                    folders.push((path.clone(), inner, entries.map(|e| e.is_some_and(Entry::is_dir))));
                    if matches!(inner, Some(Place::New(_))) {
                        is_bulk = true;
                        if spilled {
                            continue;
                        }
                    } else {
                        folder_at.insert(path.clone(), kept.len());
                    }
                }
                let row = Row { path: path.clone(), entries: entries.map(|e| e.copied()), record: record.copied() };
                kept.push(Kept { row, bulk: is_bulk });
            }
            if !spilled && held > hold {
                // Too many to hold: from now on only their folders are kept.
                spilled = true;
                kept.retain(|k| !k.bulk);
                folder_at = kept
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| k.row.entries.iter().flatten().any(Entry::is_dir))
                    .map(|(i, k)| (k.row.path.clone(), i))
                    .collect();
            }
        }
        drop(listers);
        if !spilled {
            out.later = Later::default();
        }
        (out.snapshots, out.state) = Row::inputs(kept.into_iter().map(|k| k.row));
        Ok(Ok(out))
    })
}

impl Row {
    /// Rows (each path once) as the planner's inputs: both snapshots and the state.
    pub fn inputs(rows: impl IntoIterator<Item = Row>) -> ([Snapshot; 2], State) {
        let mut sides: [Vec<(String, Entry)>; 2] = Default::default();
        let mut records = Vec::new();
        for row in rows {
            for side in Side::BOTH {
                if let Some(entry) = row.entries[side.index()] {
                    sides[side.index()].push((row.path.clone(), entry));
                }
            }
            if let Some(record) = row.record {
                records.push((row.path, record));
            }
        }
        let [source, destination] = sides;
        ([Snapshot::from_unique(source), Snapshot::from_unique(destination)], State::from_unique(records))
    }
}

impl Place {
    /// The sides that hold a folder at this place: a new folder is only on its side.
    fn sides(self) -> [bool; 2] {
        match self {
            Place::Both => [true; 2],
            Place::New(side) => Side::BOTH.map(|s| s == side),
        }
    }
}

impl Later {
    /// A bulk row of `folder` met.
    fn note(&mut self, folder: &str, place: Place, entries: [Option<&Entry>; 2]) {
        if self.folders.last().is_none_or(|last| last.path != folder) {
            self.folders.push(BulkFolder { path: folder.to_string(), place });
        }
        // A file on one side only is copied; one on both sides is when they differ.
        let copied = match entries {
            [Some(e), None] | [None, Some(e)] => Some(e),
            [Some(s), Some(d)] if !s.same_metadata(d) => Some(s),
            _ => None,
        };
        if let Some(entry) = copied {
            self.copies += 1;
            self.bytes += entry.size;
        }
    }
}

/// What [`relist`] hands each folder to: the folder, its own entry on each side, its rows.
pub type EachFolder<'a> = dyn FnMut(&BulkFolder, [Option<Entry>; 2], Vec<Row>) -> crate::core::error::Result<bool> + 'a;

/// Lists each of `folders` again (both sides and the state) and hands `each` its bulk rows that
/// `wanted` accepts, not unchanged, and not at or below a path the listings could not read
/// (said by the first pass, or by the next run). `each` returning false stops.
#[allow(clippy::too_many_arguments)]
pub fn relist(
    sides: [&dyn Endpoint; 2],
    empty: [bool; 2],
    filter: &Filter,
    db: &StateDb,
    mode: Mode,
    folders: &[BulkFolder],
    wanted: &dyn Fn(&Row) -> bool,
    each: &mut EachFolder,
    unread: &mut Vec<(Side, ScanIssue)>,
) -> crate::core::error::Result<()> {
    std::thread::scope(|scope| {
        let mut listers = Listers::spawn(scope, sides, empty, filter);
        let mut asked = 0;
        for (at, folder) in folders.iter().enumerate() {
            while asked < folders.len() && asked < at + IN_FLIGHT {
                // A new folder is listed where it is: the other side holds nothing new there.
                listers.ask(&folders[asked].path, folders[asked].place.sides());
                asked += 1;
            }
            let (state, _) = db.load_folders([folder.path.as_str()])?;
            let mut listed: [Snapshot; 2] = Default::default();
            let mut unreadable: HashSet<String> = HashSet::new();
            for side in Side::BOTH {
                match listers.answer(side) {
                    Ok(scan) => {
                        // As in the first pass: a folder listed without its own entry is not
                        // taken for an empty one.
                        let own = folder.path.is_empty() || scan.snapshot.get(&folder.path).is_some_and(Entry::is_dir);
                        if folder.place.sides()[side.index()] && !own {
                            unreadable.insert(folder.path.clone());
                        }
                        for issue in scan.issues {
                            unreadable.insert(issue.path.clone());
                            if matches!(issue.kind, IssueKind::Unreadable | IssueKind::Uncarried) {
                                unread.push((side, issue));
                            }
                        }
                        listed[side.index()] = scan.snapshot;
                    }
                    Err(e) => {
                        unreadable.insert(folder.path.clone());
                        let message = format!("cannot read: {e}");
                        unread.push((
                            side,
                            ScanIssue { path: folder.path.clone(), message, kind: IssueKind::Unreadable },
                        ));
                    }
                }
            }
            let out = |path: &str| unreadable.iter().any(|u| u == path || u.is_empty() || is_inside(path, u));
            let rows: Vec<Row> = children(&folder.path, &listed, &state)
                .into_iter()
                .filter(|(path, _, _)| !out(path))
                .filter_map(|(path, entries, record)| {
                    let take = bulk(mode, folder.place, entries, record) && !unchanged(entries[0], entries[1], record);
                    take.then(|| Row {
                        path: path.clone(),
                        entries: entries.map(|e| e.copied()),
                        record: record.copied(),
                    })
                })
                .filter(|row| wanted(row))
                .collect();
            let own = Side::BOTH.map(|side| listed[side.index()].get(&folder.path).copied());
            if !each(folder, own, rows)? {
                break;
            }
        }
        drop(listers);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Observed;

    #[test]
    fn only_a_file_both_sides_hold_as_recorded_is_unchanged() {
        let file = |size, mtime| Entry::file(size, mtime);
        let record = |s: (u64, i64), d: (u64, i64)| StateRecord {
            kind: Kind::File,
            source: Observed { size: s.0, mtime: s.1 },
            destination: Observed { size: d.0, mtime: d.1 },
            hash: None,
        };
        let r = record((1, 10), (1, 20));
        assert!(unchanged(Some(&file(1, 10)), Some(&file(1, 20)), Some(&r)));
        assert!(!unchanged(Some(&file(1, 11)), Some(&file(1, 20)), Some(&r)), "touched on the source");
        assert!(!unchanged(Some(&file(2, 10)), Some(&file(1, 20)), Some(&r)), "edited");
        assert!(!unchanged(None, Some(&file(1, 20)), Some(&r)), "deleted");
        assert!(!unchanged(Some(&file(1, 10)), Some(&file(1, 20)), None), "no record: a merge");
        assert!(!unchanged(Some(&Entry::dir()), Some(&file(1, 20)), Some(&r)), "now a folder");
    }

    use std::sync::{Arc, Mutex};

    use crate::endpoint::testing::{Faulty, MemoryEndpoint, Op};
    use crate::endpoint::ErrorKind;

    /// Both sides hold `d/f1` and `d/f2`, recorded as synced; `src` is the source as given.
    fn synced_pair(src: &dyn Endpoint, dst: &MemoryEndpoint, state: &std::path::Path) -> StateDb {
        let (db, _) = StateDb::open(state, "pair", ["mem:/src", "mem:/dst"], false).unwrap();
        let mut writer = db.writer();
        writer.put("d", &StateRecord::dir()).unwrap();
        for name in ["d/f1", "d/f2"] {
            let entry = dst.put(name, name, 1_000);
            let seen = src.stat(name).unwrap().unwrap();
            writer.put(name, &StateRecord::synced(&seen, &entry, None)).unwrap();
        }
        writer.commit().unwrap();
        db
    }

    fn unreadable(streamed: &Streamed, side: Side) -> Vec<String> {
        let issues = streamed.issues[side.index()].iter();
        issues.filter(|i| i.kind == IssueKind::Unreadable).map(|i| i.path.clone()).collect()
    }

    /// A source holding `d/f1` and `d/f2` behind `faulty`'s faults, a destination holding them
    /// too, and a state saying both were synced; streams the pair holding at most `hold` rows.
    fn stream_synced_pair(hold: usize, faulty: impl FnOnce(&Faulty<MemoryEndpoint>)) -> Streamed {
        let dir = tempfile::tempdir().unwrap();
        let src = MemoryEndpoint::new("mem:/src");
        for name in ["d/f1", "d/f2"] {
            src.put(name, name, 1_000);
        }
        let dst = MemoryEndpoint::new("mem:/dst");
        let db = synced_pair(&src, &dst, dir.path());
        let src = Faulty::new(src);
        faulty(&src);
        let filter = Filter::new(Vec::<(&str, &str)>::new(), true).unwrap();
        stream([&src, &dst], [false; 2], &filter, &db, Mode::TwoWay, hold).unwrap().unwrap()
    }

    #[test]
    fn folders_listed_on_several_connections_are_answered_in_the_order_asked() {
        // A side of 3 connections gets 3 listing workers, each folder going to the next in
        // turn: every listing must still meet its own folder's state and the other side's.
        let streamed = |connections: [usize; 2]| {
            let dir = tempfile::tempdir().unwrap();
            let sides = connections.map(|n| MemoryEndpoint::new("mem:/side").with_connections(n));
            let (db, _) = StateDb::open(dir.path(), "pair", ["mem:/src", "mem:/dst"], false).unwrap();
            let mut writer = db.writer();
            for a in 0..7 {
                for b in 0..3 {
                    // Folders a/b on both sides; a file in each, changed on one side in some.
                    let path = format!("f{a}/g{b}/file");
                    let old = [0, 1].map(|i| sides[i].put(&path, "old", 1_000));
                    for folder in [format!("f{a}"), format!("f{a}/g{b}")] {
                        writer.put(&folder, &StateRecord::dir()).unwrap();
                    }
                    writer.put(&path, &StateRecord::synced(&old[0], &old[1], None)).unwrap();
                    if (a + b) % 3 == 0 {
                        sides[1].put(&path, "new!", 2_000);
                    }
                }
                sides[a % 2].put(&format!("f{a}/only"), "x", 3_000);
            }
            writer.commit().unwrap();
            // Which threads list each side (a fault that never fires, to look at every listing).
            let sides = sides.map(Faulty::new);
            let threads: [Arc<Mutex<HashSet<std::thread::ThreadId>>>; 2] = Default::default();
            for (side, seen) in sides.iter().zip(&threads) {
                let seen = seen.clone();
                side.fail_when(Op::Scan, ErrorKind::Other, move |_| {
                    seen.lock().unwrap().insert(std::thread::current().id());
                    false
                });
            }
            let filter = Filter::new(Vec::<(&str, &str)>::new(), true).unwrap();
            let streamed = stream([&sides[0], &sides[1]], [false; 2], &filter, &db, Mode::TwoWay, usize::MAX);
            let streamed = streamed.unwrap().unwrap();
            assert!(streamed.issues.iter().all(Vec::is_empty), "{:?}", streamed.issues);
            assert_eq!(threads.map(|t| t.lock().unwrap().len()), connections, "listing workers");
            let paths = |s: &Snapshot| s.iter().map(|(p, e)| format!("{p} {}", e.size)).collect::<Vec<_>>();
            (streamed.snapshots.each_ref().map(paths), streamed.files, streamed.recorded)
        };
        let one = streamed([1, 1]);
        for (side, listed) in [(0, "f0/g0/file 3"), (1, "f0/g0/file 4"), (1, "f1/only 1"), (0, "f6/g0/file 3")] {
            assert!(one.0[side].contains(&listed.to_string()), "{listed}: {:?}", one.0);
        }
        assert!(!one.0[0].contains(&"f0/g1/file 3".to_string()), "unchanged, dropped: {:?}", one.0);
        assert_eq!((one.1, one.2), ([25, 24], 21));
        for connections in [[3, 1], [1, 4], [3, 2]] {
            assert_eq!(streamed(connections), one, "{connections:?}");
        }
    }

    #[test]
    fn a_folder_whose_listing_fails_is_unreadable_never_empty() {
        for hold in [0, usize::MAX] {
            let streamed = stream_synced_pair(hold, |src| {
                src.fail(Op::Scan, "d", ErrorKind::Other);
            });
            assert_eq!(unreadable(&streamed, Side::Source), ["d"], "hold {hold}");
        }
    }

    #[test]
    fn a_folder_gone_between_its_parents_listing_and_its_own_is_unreadable_never_empty() {
        // Listed by the root's listing, then gone (or unreachable) when listed itself: the
        // listing of "d" has no entry for "d".
        let streamed = stream_synced_pair(0, |src| {
            src.before(Op::Scan, "d", |inner: &MemoryEndpoint| inner.remove_all("d"));
        });
        assert_eq!(unreadable(&streamed, Side::Source), ["d"]);
        assert!(streamed.later.folders.is_empty(), "nothing in it is a bulk row: {:?}", streamed.later);
    }

    fn record(kind: Kind) -> StateRecord {
        StateRecord { kind, source: Observed::default(), destination: Observed::default(), hash: None }
    }

    #[test]
    fn bulk_rows_are_files_planned_from_their_own_path_alone() {
        use Mode::{Clone, Simple, TwoWay};
        use Place::{Both, New};
        use Side::{Destination as D, Source as S};
        let (f, d) = (Entry::file(1, 1), Entry::dir());
        let (rf, rd) = (record(Kind::File), record(Kind::Dir));
        type Case = (&'static str, Mode, Place, [Option<Entry>; 2], Option<StateRecord>, bool);
        let cases: Vec<Case> = vec![
            ("on both sides, recorded", TwoWay, Both, [Some(f), Some(f)], Some(rf), true),
            ("on both sides, never synced", Clone, Both, [Some(f), Some(f)], None, true),
            ("new on the source", Simple, Both, [Some(f), None], None, true),
            ("new on the destination, two-way", TwoWay, Both, [None, Some(f)], None, true),
            ("new on the destination, clone: deleted there", Clone, Both, [None, Some(f)], None, false),
            ("new on the destination, simple: left alone", Simple, Both, [None, Some(f)], None, false),
            ("deleted on the source", TwoWay, Both, [None, Some(f)], Some(rf), false),
            ("deleted on both", TwoWay, Both, [None, None], Some(rf), false),
            ("a folder", TwoWay, Both, [Some(d), Some(d)], None, false),
            ("a file where a folder was", TwoWay, Both, [Some(f), Some(f)], Some(rd), false),
            ("a file and a folder", TwoWay, Both, [Some(f), Some(d)], None, false),
            ("new in a new folder", TwoWay, New(D), [None, Some(f)], None, true),
            ("on the wrong side of a new folder", TwoWay, New(S), [None, Some(f)], None, false),
            ("recorded in a new folder", TwoWay, New(S), [Some(f), None], Some(rf), false),
        ];
        for (name, mode, place, entries, record, want) in cases {
            assert_eq!(bulk(mode, place, [entries[0].as_ref(), entries[1].as_ref()], record.as_ref()), want, "{name}");
        }
    }

    #[test]
    fn a_folder_is_a_place_for_bulk_rows_when_nothing_above_it_changes_type_or_goes() {
        use Mode::{Clone, TwoWay};
        use Place::{Both, New};
        use Side::{Destination as D, Source as S};
        let (f, d) = (Entry::file(1, 1), Entry::dir());
        let (rf, rd) = (record(Kind::File), record(Kind::Dir));
        type Case = (&'static str, Mode, Place, [Option<Entry>; 2], Option<StateRecord>, Option<Place>);
        let cases: Vec<Case> = vec![
            ("on both sides", TwoWay, Both, [Some(d), Some(d)], Some(rd), Some(Both)),
            ("on both sides, never synced", TwoWay, Both, [Some(d), Some(d)], None, Some(Both)),
            ("new on the source", Clone, Both, [Some(d), None], None, Some(New(S))),
            ("new on the destination, two-way", TwoWay, Both, [None, Some(d)], None, Some(New(D))),
            ("new on the destination, clone: deleted", Clone, Both, [None, Some(d)], None, None),
            ("deleted on the destination", TwoWay, Both, [Some(d), None], Some(rd), None),
            ("a folder where a file was", TwoWay, Both, [Some(d), Some(f)], Some(rf), None),
            ("a folder and a file", TwoWay, Both, [Some(d), Some(f)], None, None),
            ("new in a new folder", TwoWay, New(S), [Some(d), None], None, Some(New(S))),
            ("on both sides in a new folder", TwoWay, New(S), [Some(d), Some(d)], None, None),
        ];
        for (name, mode, place, entries, record, want) in cases {
            let got = child_place(mode, place, [entries[0].as_ref(), entries[1].as_ref()], record.as_ref());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn children_merge_both_listings_and_the_state_directly_in_the_folder_in_order() {
        let (f, d) = (Entry::file(1, 1), Entry::dir());
        let snapshot =
            |paths: &[(&str, Entry)]| Snapshot::from_unique(paths.iter().map(|(p, e)| (p.to_string(), *e)).collect());
        let (rf, rd) = (record(Kind::File), record(Kind::Dir));
        // A listing holds the folder itself and what is directly in it; the state, a sibling
        // folder's name sharing the prefix, and deeper paths, are all left out.
        let listed =
            [snapshot(&[("a", d), ("a/b", f), ("a/d", d), ("a/e", f)]), snapshot(&[("a", d), ("a/c", f), ("a/e", f)])];
        let state = State::from_unique(vec![
            ("a".into(), rd),
            ("a/a".into(), rf),
            ("a/e".into(), rf),
            ("a/d/x".into(), rf),
            ("ab".into(), rd),
            ("ab/x".into(), rf),
        ]);
        let got: Vec<(&str, [bool; 2], bool)> = children("a", &listed, &state)
            .into_iter()
            .map(|(path, entries, record)| (path.as_str(), entries.map(|e| e.is_some()), record.is_some()))
            .collect();
        let want = [
            ("a/a", [false, false], true),
            ("a/b", [true, false], false),
            ("a/c", [false, true], false),
            ("a/d", [true, false], false),
            ("a/e", [true, true], true),
        ];
        assert_eq!(got, want);
        // At the root: every name without a slash, the root itself ("") never.
        let root = [snapshot(&[("a", d), ("ab", d)]), snapshot(&[("a", d), ("a/c", f)])];
        let got: Vec<&str> = children("", &root, &state).into_iter().map(|(path, _, _)| path.as_str()).collect();
        assert_eq!(got, ["a", "ab"]);
    }
}
