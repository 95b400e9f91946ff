//! The Cyrus planner (pure): what the master holds of some units (a mailbox folder, a user's
//! databases, a quota file...) and what the state remembers, into the actions the executor runs.
//!
//! A unit is a set of files directly in one replica folder, the paths starting with its
//! `prefix` (a whole folder, or `user/a/alice.` for a legacy user's databases beside other
//! users'). Its files are of two kinds:
//! - **messages** (`<uid>.`): written once by Cyrus and never changed. Recorded once, never
//!   sent again, whatever their mtime; a message the master dropped is expunged from the replica
//!   ([`Expunge::Mirror`]) or only forgotten ([`Expunge::Keep`]);
//! - **metadata** (`cyrus.index`, a database): sent whenever its size or mtime is not the
//!   recorded one, in the order given, after every message (so the replica's index never names
//!   a message it lacks), the last one of the list in a phase of its own (`cyrus.index`).
//!
//! On a repair pass (the replica listed) the listing, not the state, says what the replica
//! holds: a recorded file missing there, or of another size, is sent again; a file equal to the
//! master's (size, mtime within a second) but not recorded is only recorded; an extra file is
//! deleted (`Mirror`) or left (`Keep`). A unit gone from the master loses every file the state
//! knows of it, then its folder when the unit owns it.
//!
//! Phases: folders made (parents first), messages copied, metadata copied, the last metadata
//! file copied, files deleted, folders deleted, records and forgets.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::model::{ancestors, split, Entry, Kind, Side, Snapshot, State, StateRecord};
use crate::core::plan::{Action, Plan};
use crate::mail::Expunge;

/// What the master holds of one unit.
#[derive(Debug, Clone)]
pub struct Unit<'a> {
    /// The replica folder the unit's files are in (never empty).
    pub folder: &'a str,
    /// The unit's paths are those directly in `folder` that start with this (`folder/` for a
    /// whole folder).
    pub prefix: &'a str,
    /// The unit is the one file at `prefix` (a quota root, a database of the server).
    pub exact: bool,
    /// The folder is the unit's alone: made for it, and deleted with it.
    pub owns_folder: bool,
    /// `None`: the unit is gone from the master. Else its messages and metadata.
    pub master: Option<Files<'a>>,
    /// The replica's entries directly in `folder` on a repair pass; `None`: the state is trusted.
    pub replica: Option<&'a Snapshot>,
}

/// The files the master has of a unit, each with the entry to copy.
#[derive(Debug, Clone, Default)]
pub struct Files<'a> {
    pub messages: Vec<(&'a str, Entry)>,
    /// In the order they are to be written; the last in a phase of its own.
    pub metadata: Vec<(&'a str, Entry)>,
}

pub struct Input<'a> {
    pub units: Vec<Unit<'a>>,
    /// The records of the units' folders' entries and of the folders on the way.
    pub state: &'a State,
    pub expunge: Expunge,
}

/// Without a record, a replica file within this of the master's mtime (and of its size) is it.
const WINDOW_NS: u64 = 1_000_000_000;

#[derive(Default)]
struct Phases {
    mkdirs: BTreeSet<String>,
    messages: Vec<Action>,
    metadata: Vec<Action>,
    last: Vec<Action>,
    deletes: Vec<Action>,
    rmdirs: Vec<String>,
    records: Vec<Action>,
}

pub fn plan(input: &Input) -> Plan {
    let mut p = Phases::default();
    for unit in &input.units {
        plan_unit(unit, input, &mut p);
    }
    let mut rmdirs = p.rmdirs;
    rmdirs.sort_by(|a, b| b.cmp(a));
    rmdirs.dedup();
    Plan::from_phases(
        vec![
            p.mkdirs.into_iter().map(|path| Action::Mkdir { side: Side::Destination, path }).collect(),
            p.messages,
            p.metadata,
            p.last,
            p.deletes,
            rmdirs
                .into_iter()
                .map(|path| Action::Delete { side: Side::Destination, path, entry: Entry::dir() })
                .collect(),
            p.records,
        ],
        Vec::new(),
    )
}

fn recorded_entry(record: &StateRecord) -> Entry {
    Entry::file(record.destination.size, record.destination.mtime)
}

fn copy(path: &str, entry: Entry, replaces: Option<Entry>) -> Action {
    Action::Copy { from: Side::Source, path: path.to_string(), entry, replaces: replaces.map(Box::new) }
}

fn plan_unit(unit: &Unit, input: &Input, p: &mut Phases) {
    let state = input.state;
    let mine = |path: &str| {
        split(path).0 == unit.folder && path.starts_with(unit.prefix) && (!unit.exact || path == unit.prefix)
    };
    let recorded: BTreeMap<&str, &StateRecord> =
        state.iter().filter(|(path, r)| r.kind == Kind::File && mine(path)).map(|(p, r)| (p.as_str(), r)).collect();
    let listed: BTreeMap<&str, &Entry> = unit
        .replica
        .map(|r| {
            r.iter().filter(|(path, e)| e.kind == Kind::File && mine(path)).map(|(p, e)| (p.as_str(), e)).collect()
        })
        .unwrap_or_default();
    let Some(files) = &unit.master else {
        // Gone from the master: every file of it goes (or is forgotten), then its folder.
        let keep = input.expunge == Expunge::Keep;
        for (path, record) in &recorded {
            let entry = listed.get(path).map_or_else(|| recorded_entry(record), |e| **e);
            if keep {
                p.records.push(Action::Forget { path: path.to_string() });
            } else if unit.replica.is_none() || listed.contains_key(path) {
                p.deletes.push(Action::Delete { side: Side::Destination, path: path.to_string(), entry });
            } else {
                p.records.push(Action::Forget { path: path.to_string() });
            }
        }
        if !keep {
            for (path, entry) in &listed {
                if !recorded.contains_key(path) {
                    p.deletes.push(Action::Delete { side: Side::Destination, path: path.to_string(), entry: **entry });
                }
            }
            if unit.owns_folder && state.get(unit.folder).is_some() {
                p.rmdirs.push(unit.folder.to_string());
                // The folders on the way (`uuid/h/r`) that held only this one go too, up to
                // the top two levels (`data/default`, `conf/user`), which stay.
                let mut gone = unit.folder;
                for folder in ancestors(unit.folder).take_while(|f| f.matches('/').count() >= 2) {
                    let only = state.iter().filter(|(path, _)| split(path).0 == folder).all(|(path, _)| path == gone);
                    if !only {
                        break;
                    }
                    p.rmdirs.push(folder.to_string());
                    gone = folder;
                }
            }
        }
        return;
    };
    // The folder and those on the way, when the state (or the listing) lacks them.
    let folder_there = match unit.replica {
        Some(r) => r.get(unit.folder).is_some_and(Entry::is_dir),
        None => state.get(unit.folder).is_some(),
    };
    if !folder_there {
        for folder in ancestors(unit.folder).chain(std::iter::once(unit.folder)) {
            if state.get(folder).is_none() || folder == unit.folder {
                p.mkdirs.insert(folder.to_string());
            }
        }
    }
    let repair = unit.replica.is_some();
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    let last = files.metadata.len().saturating_sub(1);
    let kinds =
        files.messages.iter().map(|f| (f, None)).chain(files.metadata.iter().enumerate().map(|(n, f)| (f, Some(n))));
    for ((path, entry), metadata) in kinds {
        wanted.insert(path);
        let record = recorded.get(path);
        let there = listed.get(path).copied();
        let action = match (record, there) {
            // A message recorded is on the replica: never sent again (rolling), or only when
            // the replica lost it or holds another size (repair).
            (Some(_), None) if metadata.is_none() && !repair => None,
            (Some(r), Some(t)) if metadata.is_none() && t.size == r.destination.size => None,
            // Metadata as recorded: nothing.
            (Some(r), None) if !repair && r.source == entry.observed() => None,
            (Some(r), Some(t)) if r.source == entry.observed() && t.size == r.destination.size => None,
            (Some(r), None) if !repair => Some(copy(path, *entry, Some(recorded_entry(r)))),
            (Some(_), None) => Some(copy(path, *entry, None)),
            (_, Some(t)) if record.is_none() && t.size == entry.size && t.mtime.abs_diff(entry.mtime) <= WINDOW_NS => {
                p.records.push(Action::Record { path: path.to_string(), record: StateRecord::synced(entry, t, None) });
                None
            }
            (_, Some(t)) => Some(copy(path, *entry, Some(*t))),
            (None, None) => Some(copy(path, *entry, None)),
        };
        if let Some(action) = action {
            match metadata {
                None => p.messages.push(action),
                Some(n) if n == last => p.last.push(action),
                Some(_) => p.metadata.push(action),
            }
        }
    }
    let keep = input.expunge == Expunge::Keep;
    for (path, record) in &recorded {
        if wanted.contains(path) {
            continue;
        }
        let is_message = split(path).1.strip_suffix('.').is_some_and(|uid| uid.bytes().all(|b| b.is_ascii_digit()));
        match listed.get(path) {
            _ if keep && is_message => p.records.push(Action::Forget { path: path.to_string() }),
            None if repair => p.records.push(Action::Forget { path: path.to_string() }),
            there => p.deletes.push(Action::Delete {
                side: Side::Destination,
                path: path.to_string(),
                entry: there.map_or_else(|| recorded_entry(record), |e| **e),
            }),
        }
    }
    for (path, entry) in &listed {
        let is_message = split(path).1.strip_suffix('.').is_some_and(|uid| uid.bytes().all(|b| b.is_ascii_digit()));
        if !(wanted.contains(path) || recorded.contains_key(path) || keep && is_message) {
            p.deletes.push(Action::Delete { side: Side::Destination, path: path.to_string(), entry: **entry });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Observed;

    const F: &str = "data/default/uuid/h/r/hr1";
    const P: &str = "data/default/uuid/h/r/hr1/";

    fn file(size: u64, mtime: i64) -> Entry {
        Entry::file(size, mtime * 1_000_000_000)
    }

    fn rec(size: u64, mtime: i64) -> StateRecord {
        let o = Observed { size, mtime: mtime * 1_000_000_000 };
        StateRecord { kind: Kind::File, source: o, destination: o, hash: None }
    }

    fn state(files: &[(&str, StateRecord)], folders: &[&str]) -> State {
        let mut all: Vec<(String, StateRecord)> = files.iter().map(|(p, r)| (format!("{P}{p}"), *r)).collect();
        all.extend(folders.iter().map(|f| (f.to_string(), StateRecord::dir())));
        State::from_unique(all)
    }

    fn folders_of(f: &str) -> Vec<&str> {
        ancestors(f).chain(std::iter::once(f)).collect()
    }

    /// The plan as one line per action: `mkdir p`, `copy p`, `over p`, `del p`, `rec p`, `forget p`, `|` between phases.
    fn show(plan: &Plan) -> String {
        let short = |p: &str| p.strip_prefix(P).unwrap_or(p).to_string();
        plan.phases()
            .iter()
            .map(|phase| {
                phase
                    .iter()
                    .map(|a| match a {
                        Action::Mkdir { path, .. } => format!("mkdir {}", short(path)),
                        Action::Copy { path, replaces: None, .. } => format!("copy {}", short(path)),
                        Action::Copy { path, .. } => format!("over {}", short(path)),
                        Action::Delete { path, .. } => format!("del {}", short(path)),
                        Action::Record { path, .. } => format!("rec {}", short(path)),
                        Action::Forget { path } => format!("forget {}", short(path)),
                        Action::Rename { .. } => "rename".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    struct Row {
        what: &'static str,
        messages: Vec<(&'static str, Entry)>,
        metadata: Vec<(&'static str, Entry)>,
        gone: bool,
        state: State,
        replica: Option<Vec<(&'static str, Entry)>>,
        expunge: Expunge,
        want: &'static str,
    }

    fn row(what: &'static str) -> Row {
        Row {
            what,
            messages: vec![],
            metadata: vec![],
            gone: false,
            state: state(&[], &folders_of(F)),
            replica: None,
            expunge: Expunge::Mirror,
            want: "",
        }
    }

    fn run(r: &Row) -> String {
        let owned: Vec<(String, Entry)> =
            r.messages.iter().chain(&r.metadata).map(|(n, e)| (format!("{P}{n}"), *e)).collect();
        let n = r.messages.len();
        let files = Files {
            messages: owned[..n].iter().map(|(p, e)| (p.as_str(), *e)).collect(),
            metadata: owned[n..].iter().map(|(p, e)| (p.as_str(), *e)).collect(),
        };
        let listing = r.replica.as_ref().map(|l| {
            let mut all: Vec<(String, Entry)> = l.iter().map(|(n, e)| (format!("{P}{n}"), *e)).collect();
            all.push((F.to_string(), Entry::dir()));
            Snapshot::from_unique(all)
        });
        let unit = Unit {
            folder: F,
            prefix: P,
            exact: false,
            owns_folder: true,
            master: (!r.gone).then_some(files),
            replica: listing.as_ref(),
        };
        show(&plan(&Input { units: vec![unit], state: &r.state, expunge: r.expunge }))
    }

    #[test]
    fn table() {
        let meta =
            |size| vec![("cyrus.header", file(10, 1)), ("cyrus.cache", file(50, 1)), ("cyrus.index", file(size, 2))];
        let known = |extra: &[(&str, StateRecord)]| {
            let mut files =
                vec![("cyrus.header", rec(10, 1)), ("cyrus.cache", rec(50, 1)), ("cyrus.index", rec(272, 2))];
            files.extend_from_slice(extra);
            state(&files, &folders_of(F))
        };
        let rows = vec![
            Row {
                messages: vec![("1.", file(100, 5)), ("2.", file(200, 6))],
                metadata: meta(384),
                state: State::default(),
                want: "mkdir data, mkdir data/default, mkdir data/default/uuid, mkdir data/default/uuid/h, \
                       mkdir data/default/uuid/h/r, mkdir data/default/uuid/h/r/hr1 | copy 1., copy 2. | \
                       copy cyrus.header, copy cyrus.cache | copy cyrus.index",
                ..row("a new mailbox: folders, then messages, then metadata, the index last")
            },
            Row {
                messages: vec![("1.", file(100, 5))],
                metadata: meta(272),
                state: known(&[("1.", rec(100, 5))]),
                want: "",
                ..row("nothing changed: nothing")
            },
            Row {
                messages: vec![("1.", file(100, 99))],
                metadata: vec![("cyrus.header", file(10, 1)), ("cyrus.cache", file(50, 1)), ("cyrus.index", file(272, 3))],
                state: known(&[("1.", rec(100, 5))]),
                want: "over cyrus.index",
                ..row("a flag change: the index only, never the message (even with another mtime)")
            },
            Row {
                messages: vec![("1.", file(100, 5))],
                metadata: vec![("cyrus.header", file(12, 4)), ("cyrus.cache", file(50, 1)), ("cyrus.index", file(272, 3))],
                state: known(&[("1.", rec(100, 5))]),
                want: "over cyrus.header | over cyrus.index",
                ..row("a new keyword: header and index")
            },
            Row {
                messages: vec![("1.", file(100, 5)), ("2.", file(200, 6))],
                metadata: meta(384),
                state: known(&[("1.", rec(100, 5))]),
                want: "copy 2. | over cyrus.index",
                ..row("an APPEND: the new message, then the index")
            },
            Row {
                messages: vec![("2.", file(200, 6))],
                metadata: meta(160),
                state: known(&[("1.", rec(100, 5)), ("2.", rec(200, 6))]),
                want: "over cyrus.index | del 1.",
                ..row("cyr_expire -X dropped a message: the index first, then the file goes")
            },
            Row {
                messages: vec![("2.", file(200, 6))],
                metadata: meta(160),
                state: known(&[("1.", rec(100, 5)), ("2.", rec(200, 6))]),
                expunge: Expunge::Keep,
                want: "over cyrus.index | forget 1.",
                ..row("expunge = keep: the file stays and is forgotten")
            },
            Row {
                gone: true,
                state: known(&[("1.", rec(100, 5))]),
                want: "del 1., del cyrus.cache, del cyrus.header, del cyrus.index | del data/default/uuid/h/r/hr1, \
                       del data/default/uuid/h/r, del data/default/uuid/h, del data/default/uuid",
                ..row("a mailbox gone: its files, then its folder and the folders that held only it")
            },
            Row {
                gone: true,
                state: known(&[("1.", rec(100, 5))]),
                expunge: Expunge::Keep,
                want: "forget 1., forget cyrus.cache, forget cyrus.header, forget cyrus.index",
                ..row("a mailbox gone with keep: left on the replica, forgotten")
            },
            Row {
                messages: vec![("1.", file(100, 5)), ("2.", file(200, 6))],
                metadata: meta(384),
                state: known(&[("1.", rec(100, 5)), ("2.", rec(200, 6)), ("cyrus.annotations", rec(9, 1))]),
                replica: Some(vec![
                    ("1.", file(100, 5)),
                    ("cyrus.header", file(10, 1)),
                    ("cyrus.cache", file(50, 1)),
                    ("cyrus.index", file(7, 2)),
                    ("9.", file(1, 1)),
                ]),
                want: "copy 2. | over cyrus.index | del 9. | forget cyrus.annotations",
                ..row("repair: a lost message sent again, a damaged index over, a stray file deleted, a lost record dropped")
            },
            Row {
                messages: vec![("1.", file(100, 5))],
                metadata: meta(272),
                state: State::default(),
                replica: Some(vec![("1.", file(100, 5)), ("cyrus.header", file(10, 1)), ("cyrus.cache", file(50, 1)), ("cyrus.index", file(272, 2))]),
                want: "rec 1., rec cyrus.header, rec cyrus.cache, rec cyrus.index",
                ..row("repair after the state was lost: equal files only recorded, nothing sent")
            },
            Row {
                messages: vec![("1.", file(100, 5))],
                metadata: meta(272),
                state: State::default(),
                replica: Some(vec![("1.", file(100, 5)), ("7.", file(1, 1)), ("cyrus.header", file(10, 1)), ("cyrus.cache", file(50, 1)), ("cyrus.index", file(9, 2))]),
                expunge: Expunge::Keep,
                want: "over cyrus.index | rec 1., rec cyrus.header, rec cyrus.cache",
                ..row("repair with keep: an unknown message file on the replica is left")
            },
        ];
        for r in &rows {
            assert_eq!(run(r), r.want.split_whitespace().collect::<Vec<_>>().join(" "), "{}", r.what);
        }
    }

    #[test]
    fn a_shared_folder_is_never_deleted_and_only_the_prefix_counts() {
        let folder = "user/a";
        let state = State::from_unique(vec![
            ("user".into(), StateRecord::dir()),
            (folder.into(), StateRecord::dir()),
            ("user/a/alice.sub".into(), rec(10, 1)),
            ("user/a/alice.seen".into(), rec(20, 1)),
            ("user/a/anna.sub".into(), rec(30, 1)),
        ]);
        let gone =
            Unit { folder, prefix: "user/a/alice.", exact: false, owns_folder: false, master: None, replica: None };
        let plan = plan(&Input { units: vec![gone], state: &state, expunge: Expunge::Mirror });
        assert_eq!(show(&plan), "del user/a/alice.seen, del user/a/alice.sub");
        let sub = ("user/a/alice.sub", file(11, 2));
        let live = Unit {
            folder,
            prefix: "user/a/alice.",
            exact: false,
            owns_folder: false,
            master: Some(Files { messages: vec![], metadata: vec![sub] }),
            replica: None,
        };
        let plan = super::plan(&Input { units: vec![live], state: &state, expunge: Expunge::Mirror });
        assert_eq!(show(&plan), "over user/a/alice.sub | del user/a/alice.seen");
    }
}
