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
//! Each side is listed by a worker thread (one listing request at a time), the state is read
//! by key (it is stored per folder); the three meet per folder.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc;

use crate::core::filter::Filter;
use crate::core::model::{split, Entry, Kind, Side, Snapshot, State, StateRecord};
use crate::endpoint::{Endpoint, Result as EndpointResult, Scan, ScanIssue};
use crate::state::StateDb;

/// What the streamed scan keeps and counts.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Folders, and files not unchanged, per side.
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

/// Reads both sides (`empty`: a side known to hold nothing, a destination a first run would
/// create) and the state, folder by folder from the root. An error is the side that could
/// not be listed at all, with its error.
pub fn stream(
    sides: [&dyn Endpoint; 2],
    empty: [bool; 2],
    filter: &Filter,
    db: &StateDb,
) -> crate::core::error::Result<Result<Streamed, (Side, crate::endpoint::EndpointError)>> {
    std::thread::scope(|scope| {
        // One worker per side: a folder path in, its listing out.
        let workers = Side::BOTH.map(|side| {
            let (ask, asked) = mpsc::channel::<String>();
            let (tell, told) = mpsc::channel::<EndpointResult<Scan>>();
            let endpoint = sides[side.index()];
            let nothing = empty[side.index()];
            scope.spawn(move || {
                for folder in asked {
                    let listing = if nothing {
                        Ok(Scan { snapshot: Snapshot::default(), issues: Vec::new(), leftovers: Vec::new() })
                    } else {
                        endpoint.scan_part(filter, std::slice::from_ref(&folder), &[])
                    };
                    if tell.send(listing).is_err() {
                        break;
                    }
                }
            });
            (ask, told)
        });
        let mut out = Streamed::default();
        let mut kept: [Vec<(String, Entry)>; 2] = Default::default();
        let mut records: Vec<(String, StateRecord)> = Vec::new();
        // Where each folder's entry is in `kept`, to set what its own listing learns of it.
        let mut folder_at: [HashMap<String, usize>; 2] = Default::default();
        // Folders to read, and those asked of both workers already (answered in that order):
        // a few are kept in flight so that neither side waits for the other's folder.
        let mut folders = vec![String::new()];
        let mut in_flight: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        loop {
            while in_flight.len() < IN_FLIGHT {
                let Some(next) = folders.pop() else { break };
                for (ask, _) in &workers {
                    ask.send(next.clone()).expect("the worker waits");
                }
                in_flight.push_back(next);
            }
            let Some(folder) = in_flight.pop_front() else { break };
            let (state, bad) = db.load_folders([folder.as_str()])?;
            out.bad_records += bad;
            let mut listed: [Snapshot; 2] = Default::default();
            for side in Side::BOTH {
                let scan = workers[side.index()].1.recv().expect("the worker answers");
                let scan = match scan {
                    Ok(scan) => scan,
                    Err(e) if folder.is_empty() => return Ok(Err((side, e))),
                    // A folder that vanished or broke since its parent was listed: its side
                    // holds nothing there this run (scan_part reports what it could not read).
                    Err(e) => {
                        out.issues[side.index()].push(ScanIssue {
                            path: folder.clone(),
                            message: format!("cannot read: {e}"),
                            kind: crate::endpoint::IssueKind::Unreadable,
                        });
                        continue;
                    }
                };
                out.issues[side.index()].extend(scan.issues);
                out.leftovers[side.index()].extend(scan.leftovers);
                // The folder's own entry, as its listing saw it (whether it holds something
                // left out, which keeps it from being deleted).
                if let (Some(entry), Some(&at)) = (scan.snapshot.get(&folder), folder_at[side.index()].get(&folder)) {
                    kept[side.index()][at].1 = *entry;
                }
                listed[side.index()] = scan.snapshot;
            }
            let inside = |path: &str| !path.is_empty() && split(path).0 == folder.as_str() && path != folder.as_str();
            let children: BTreeSet<&String> = listed[0]
                .iter()
                .chain(listed[1].iter())
                .map(|(p, _)| p)
                .chain(state.iter().map(|(p, _)| p))
                .filter(|p| inside(p))
                .collect();
            for path in children {
                let entries = [listed[0].get(path), listed[1].get(path)];
                let record = state.get(path);
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
                for side in Side::BOTH {
                    if let Some(entry) = entries[side.index()] {
                        if entry.is_dir() {
                            folder_at[side.index()].insert(path.clone(), kept[side.index()].len());
                        }
                        kept[side.index()].push((path.clone(), *entry));
                    }
                }
                if let Some(record) = record {
                    records.push((path.clone(), *record));
                }
                if folder_here {
                    folders.push(path.clone());
                }
            }
        }
        drop(workers);
        let [source, destination] = kept;
        out.snapshots = [Snapshot::from_unique(source), Snapshot::from_unique(destination)];
        out.state = State::from_unique(records);
        Ok(Ok(out))
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
}
