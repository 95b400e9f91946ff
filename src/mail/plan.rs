//! The mail planner: one user's mailboxes, as the master holds them and the state remembers
//! them (and, on a repair pass, as the replica holds them), into the actions the pair engine's
//! executor runs. Pure: no clock, no file system, no database; everything is passed in.
//!
//! A message is its Maildir unique name (see [`unique_name`]), not its path: the flags are in
//! the name, so a flag change, a move from `new/` to `cur/`, or a move to another mailbox of
//! the user renames the file. The state remembers paths, and a path of the state that the
//! master no longer has, holding a unique name the master now has at a path the state does
//! not know, is one rename on the replica: zero bytes sent. Control files (`dovecot-uidlist`,
//! `dovecot-keywords`, `subscriptions`, `maildirfolder`, any other file directly in a mailbox
//! folder) are replicated by path, as a one-way clone would. `tmp/` is created on the replica
//! and never filled.
//!
//! Each side is compared only with its own observation in the state record, as the pair
//! planner does; without a record (a lost state, a repair pass) a replica file is the master's
//! when their sizes are equal and their mtimes within a second (the replica may keep coarser
//! times). The rules, in the order [`plan`] applies them, are listed on [`plan`]; the tests are
//! one table with a row per rule.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::core::model::{ancestors, inside, is_inside, Entry, Kind, Observed, Side, Snapshot, State, StateRecord};
use crate::core::plan::{Action, Conflict, Plan};
use crate::mail::maildir::unique_name;
use crate::mail::Expunge;

/// One mailbox of the user, as the master and (on a repair pass) the replica hold it.
#[derive(Debug, Clone, Copy)]
pub struct MailboxView<'a> {
    /// The mailbox's folder, relative to the store root (and to the replica's root, which has
    /// the same layout): `alice/Maildir` for alice's INBOX, `alice/Maildir/.Sent`. Never empty.
    pub folder: &'a str,
    /// The master's entries of this mailbox: the files of `cur/` and `new/` and the files
    /// directly in `folder` that are worth replicating (caches and temporary files left out by
    /// the caller, see `maildir::classify`). Other entries are ignored: folders (other
    /// mailboxes nested in an INBOX), anything in `tmp/`. `None`: the mailbox is gone from the
    /// master (deleted, or renamed: then its new name is another view of the same call).
    pub master: Option<&'a Snapshot>,
    /// The replica's entries of this mailbox, listed the same way (the folder itself
    /// included when it is there, its `cur/`, `new/` and `tmp/` folders) on a repair pass, which
    /// mends any difference between the replica and the state. `None` on a rolling cycle: the
    /// state is trusted for what the replica holds.
    pub replica: Option<&'a Snapshot>,
}

/// Everything the mail planner decides from.
#[derive(Debug, Clone)]
pub struct MailPlanInput<'a> {
    /// Mailboxes of ONE user, so that a message moved between two of them is seen as moved.
    /// A move to or from a mailbox that is not here is seen as a new message in one and an
    /// expunge in the other, which the next pass of the other mailbox carries out.
    pub mailboxes: Vec<MailboxView<'a>>,
    /// The state records of these mailboxes (their folders, the folders' files, `cur/`, `new/`
    /// and `tmp/` and what is in them) and of the folders on the way to them. Records of other
    /// mailboxes may be there too; they are only looked at to keep a folder that holds them.
    pub state: &'a State,
    /// What an expunge on the master does on the replica.
    pub expunge: Expunge,
}

/// The folders of a Maildir mailbox; `tmp/` is created so that a copy of the replica is a
/// working store, but what is in it is never replicated.
const SUBFOLDERS: [&str; 3] = ["cur", "new", "tmp"];

/// Without a record, a replica file whose mtime is within this of the master's (and whose
/// size is equal) is the master's file: the replica may keep whole seconds only.
const WINDOW_NS: u64 = 1_000_000_000;

/// Plans the replication of one user's mailboxes.
///
/// For each file of a mailbox (the master's, the state's and, on a repair pass, the
/// replica's), by path:
/// 1. a message new to the state is copied (`replaces: None`);
/// 2. ... unless the state knows its unique name at another path of these mailboxes that the
///    master no longer has, with the master's size and mtime: then the replica's file there is
///    renamed (a flag change, `new/` -> `cur/`, a move between mailboxes; zero bytes). A unique
///    name the master holds at both paths (Dovecot's `copy` hard-links it) is copied;
/// 3. a recorded file the master still has as recorded needs nothing; at the same path with
///    another size or mtime it is copied again over the replica's file;
/// 4. a recorded message the master no longer has (and that is not renamed) is expunged:
///    deleted from the replica with [`Expunge::Mirror`], forgotten (and left) with
///    [`Expunge::Keep`];
/// 5. a mailbox gone from the master is all its files expunged, then (`Mirror` only) its
///    `cur/`, `new/`, `tmp/` and folder deleted, deepest first, unless something stays in them;
/// 6. a mailbox's folder, its `cur/`, `new/`, `tmp/` and the folders on the way to it are made
///    when the state (or, on a repair pass, the replica) lacks them, parents first;
/// 7. control files are planned by path like messages, without renames;
/// 8. on a repair pass the replica's listing, not the state, says what the replica holds: a
///    recorded file missing there is copied again, one of another size than recorded is copied
///    over, one neither recorded nor on the master is deleted (`Mirror`) or left (`Keep`), and
///    one not recorded but equal to the master's is only recorded: a lost state never sends a
///    store again. Such a file is also a rename source for its unique name (a flag changed
///    since the state was lost).
///
/// The phases: folders made, renames, copies (one phase of copies only, run in parallel),
/// files deleted, folders deleted (deepest first), then the state-only records and forgets.
/// A path the replica holds as a folder where a file belongs (or the reverse) is a conflict,
/// left as it is.
pub fn plan(input: &MailPlanInput) -> Plan {
    let mut planner = Planner::new(input);
    planner.collect();
    planner.plan_files();
    planner.pair();
    planner.plan_live_folders();
    planner.plan_gone_folders();
    planner.finish()
}

/// What a path inside a mailbox folder is to that mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'p> {
    /// `cur`, `new` or `tmp`.
    Subfolder,
    /// A file of `cur/` or `new/`, with its unique name.
    Message(&'p str),
    /// A file directly in the folder.
    Control,
    /// Inside `tmp/`: never replicated.
    Temp,
}

/// What `path` is to the mailbox `folder`; `None` when it is not the mailbox's (the folder
/// itself, or what lies in another mailbox nested in it, such as an INBOX's `.Sent/`).
fn part<'p>(folder: &str, path: &'p str) -> Option<Part<'p>> {
    let rel = path.strip_prefix(folder)?.strip_prefix('/')?;
    match rel.split_once('/') {
        None if SUBFOLDERS.contains(&rel) => Some(Part::Subfolder),
        None => Some(Part::Control),
        Some(("cur" | "new", name)) if !name.is_empty() && !name.contains('/') => {
            Some(Part::Message(unique_name(name)))
        }
        Some(("tmp", _)) => Some(Part::Temp),
        Some(_) => None,
    }
}

/// What the replica holds at a path, as far as the planner knows.
#[derive(Debug, Clone, Copy)]
enum Replica<'a> {
    /// Not listed (a rolling cycle): the state says.
    Unlisted,
    /// Listed, and nothing is there.
    Absent,
    /// Listed, and this is there.
    At(&'a Entry),
}

/// One file path of a mailbox, as the three sources know it.
#[derive(Debug, Clone, Copy)]
struct Row<'a> {
    /// Index of its mailbox in the input.
    view: usize,
    /// The unique name of a message; `None` for a control file.
    message: Option<&'a str>,
    /// The master's file there.
    master: Option<&'a Entry>,
    /// The state's file record there.
    record: Option<&'a StateRecord>,
    replica: Replica<'a>,
}

/// A master file whose content the replica lacks at its path: copied, or renamed into place.
#[derive(Debug)]
struct Wanted<'a> {
    path: &'a str,
    view: usize,
    master: &'a Entry,
}

/// A replica file of a message the master no longer has at its path: a rename source, or an
/// expunge.
#[derive(Debug)]
struct Source<'a> {
    path: &'a str,
    view: usize,
    /// The replica's file as it must still be when renamed or deleted.
    entry: Entry,
    /// The master's (size, mtime) when it was synced; `None` for a file the state does not
    /// know (a repair pass): then it is compared with the master's file directly.
    synced: Option<Observed>,
}

impl Source<'_> {
    /// True when the master's `file` is this message as the replica holds it.
    fn holds(&self, file: &Entry) -> bool {
        match self.synced {
            Some(synced) => synced == file.observed(),
            None => same_file(file, &self.entry),
        }
    }
}

/// Without a record: the replica's file is the master's (equal size, mtimes within a second).
fn same_file(master: &Entry, replica: &Entry) -> bool {
    replica.kind == Kind::File && master.size == replica.size && master.mtime.abs_diff(replica.mtime) <= WINDOW_NS
}

/// The replica's file as the state last saw it.
fn recorded_entry(record: &StateRecord) -> Entry {
    Entry::file(record.destination.size, record.destination.mtime)
}

/// A mailbox's folder and its `cur/`, `new/` and `tmp/`.
fn own_folders(folder: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(folder.to_string()).chain(SUBFOLDERS.map(|s| format!("{folder}/{s}")))
}

fn is_dir_record(state: &State, path: &str) -> bool {
    state.get(path).is_some_and(|r| r.kind == Kind::Dir)
}

struct Planner<'a, 'i> {
    input: &'i MailPlanInput<'a>,
    /// The views, one per distinct folder.
    views: Vec<MailboxView<'a>>,
    rows: BTreeMap<&'a str, Row<'a>>,
    /// Every folder some replica listing shows (listed itself, or holding something).
    seen_folders: HashSet<&'a str>,
    wanted: BTreeMap<&'a str, Vec<Wanted<'a>>>,
    sources: BTreeMap<&'a str, Vec<Source<'a>>>,
    mkdirs: BTreeSet<String>,
    renames: Vec<Action>,
    copies: Vec<Action>,
    deletes: Vec<Action>,
    folder_deletes: Vec<Action>,
    records: Vec<Action>,
    conflicts: Vec<Conflict>,
    /// The folders of live mailboxes and the folders on the way to them: never deleted.
    needed: BTreeSet<String>,
}

impl<'a, 'i> Planner<'a, 'i> {
    fn new(input: &'i MailPlanInput<'a>) -> Self {
        let mut folders = HashSet::new();
        let views: Vec<MailboxView<'a>> = input
            .mailboxes
            .iter()
            .filter(|v| {
                debug_assert!(!v.folder.is_empty(), "a mailbox folder is never the store root");
                folders.insert(v.folder)
            })
            .copied()
            .collect();
        Planner {
            input,
            views,
            rows: BTreeMap::new(),
            seen_folders: HashSet::new(),
            wanted: BTreeMap::new(),
            sources: BTreeMap::new(),
            mkdirs: BTreeSet::new(),
            renames: Vec::new(),
            copies: Vec::new(),
            deletes: Vec::new(),
            folder_deletes: Vec::new(),
            records: Vec::new(),
            conflicts: Vec::new(),
            needed: BTreeSet::new(),
        }
    }

    /// Gathers every file path of every mailbox from the master, the state and the listings.
    fn collect(&mut self) {
        let state = self.input.state;
        for (v, view) in self.views.iter().enumerate() {
            let listed = view.replica.is_some();
            let row = |message| Row {
                view: v,
                message,
                master: None,
                record: None,
                replica: if listed { Replica::Absent } else { Replica::Unlisted },
            };
            let file_part = |path: &'a str| match part(view.folder, path)? {
                Part::Message(unique) => Some(Some(unique)),
                Part::Control => Some(None),
                Part::Subfolder | Part::Temp => None,
            };
            for (path, entry) in view.master.into_iter().flat_map(|m| inside(m, view.folder)) {
                match file_part(path) {
                    Some(message) if entry.kind == Kind::File => {
                        self.rows.entry(path).or_insert_with(|| row(message)).master = Some(entry);
                    }
                    _ => {}
                }
            }
            for (path, record) in inside(state, view.folder) {
                match file_part(path) {
                    Some(message) if record.kind == Kind::File => {
                        self.rows.entry(path).or_insert_with(|| row(message)).record = Some(record);
                    }
                    _ => {}
                }
            }
            let Some(listing) = view.replica else { continue };
            for (path, entry) in listing.iter() {
                if entry.is_dir() {
                    self.seen_folders.insert(path);
                }
                self.seen_folders.extend(ancestors(path));
                if let Some(message) = file_part(path) {
                    self.rows.entry(path).or_insert_with(|| row(message)).replica = Replica::At(entry);
                }
            }
        }
    }

    /// Rules 1, 3, 4, 7 and 8 for each file path; messages the replica lacks and replica
    /// messages the master no longer has at their path are kept for [`Planner::pair`].
    fn plan_files(&mut self) {
        let rows: Vec<(&'a str, Row<'a>)> = self.rows.iter().map(|(p, r)| (*p, *r)).collect();
        for (path, row) in rows {
            match (row.master, row.record, row.replica) {
                // The replica holds a folder where a file belongs: not ours to replace or
                // delete. A record there describes nothing on the replica any more.
                (master, record, Replica::At(there)) if there.is_dir() => {
                    if master.is_some() || record.is_some() {
                        self.conflict(path, "the replica holds a folder where the mailbox has a file", "left as it is");
                    }
                    if master.is_none() && record.is_some() {
                        self.forget(path);
                    }
                }

                // --- The master has the file. ---
                // Rule 3: the master's file is the one synced and the replica is trusted to
                // hold what was written (rolling), or holds a file of the recorded size
                // (repair; its mtime may be the replica's own): nothing to do.
                (Some(file), Some(record), Replica::Unlisted) if record.source == file.observed() => {}
                (Some(file), Some(record), Replica::At(there))
                    if record.source == file.observed() && there.size == record.destination.size => {}
                // Rule 3: the same path, another size or mtime on the master (a message never
                // changes in Maildir, a control file does): copied over the replica's file as
                // recorded.
                (Some(file), Some(record), Replica::Unlisted) => self.copy(path, file, Some(recorded_entry(record))),
                // Rules 3 and 8: the master changed, or the replica's file is not the recorded
                // size (damaged): copied over what the listing shows.
                (Some(file), Some(_), Replica::At(there)) => self.copy(path, file, Some(*there)),
                // Rule 8: recorded, but missing on the replica: wanted again.
                // Rule 1: new to the state (rolling) or to both (repair): wanted.
                (Some(file), Some(_), Replica::Absent) | (Some(file), None, Replica::Unlisted | Replica::Absent) => {
                    self.want(path, row, file)
                }
                // Rule 8: not recorded, and the replica already holds the master's file: only
                // recorded (a lost state does not send the store again).
                (Some(file), None, Replica::At(there)) if same_file(file, there) => {
                    self.record(path, StateRecord::synced(file, there, None))
                }
                // Rule 8: not recorded, and the replica holds another file there: copied over it.
                (Some(file), None, Replica::At(there)) => self.copy(path, file, Some(*there)),

                // --- The master no longer has the file at this path. ---
                // Rolling: the replica holds it as recorded. A rename source, or expunged.
                (None, Some(record), Replica::Unlisted) => self.gone(
                    path,
                    row,
                    Source { path, view: row.view, entry: recorded_entry(record), synced: Some(record.source) },
                ),
                // Repair: the replica holds it with the recorded size. A rename source, or
                // expunged.
                (None, Some(record), Replica::At(there)) if there.size == record.destination.size => {
                    self.gone(path, row, Source { path, view: row.view, entry: *there, synced: Some(record.source) })
                }
                // Repair: the replica's file is not what was recorded (damaged): never renamed
                // into place; expunged like the master's.
                (None, Some(_), Replica::At(there)) => self.expunge(path, *there, true),
                // Repair: recorded, but already gone from the replica: only the record goes.
                (None, Some(_), Replica::Absent) => self.forget(path),
                // Repair: on the replica only, not recorded (a lost state, an earlier `keep`, a
                // stray file). A rename source for a message, or an extra.
                (None, None, Replica::At(there)) => {
                    self.gone(path, row, Source { path, view: row.view, entry: *there, synced: None })
                }
                (None, None, Replica::Unlisted | Replica::Absent) => unreachable!("a row has a source"),
            }
        }
    }

    /// A master file the replica lacks at `path`: a message may be renamed into place
    /// ([`Planner::pair`]); a control file is copied.
    fn want(&mut self, path: &'a str, row: Row<'a>, file: &'a Entry) {
        match row.message {
            Some(unique) => self.wanted.entry(unique).or_default().push(Wanted { path, view: row.view, master: file }),
            None => self.copy(path, file, None),
        }
    }

    /// A replica file the master no longer has at `path`: a message may be renamed to where the
    /// master has it now ([`Planner::pair`]); a control file is deleted (or left) by the policy.
    fn gone(&mut self, path: &'a str, row: Row<'a>, source: Source<'a>) {
        match row.message {
            Some(unique) => self.sources.entry(unique).or_default().push(source),
            None => self.expunge(path, source.entry, source.synced.is_some()),
        }
    }

    /// Rule 2: each wanted message takes a replica file of the same unique name and content
    /// that the master no longer has at its path: first one of its own mailbox (a flag change,
    /// `new/` -> `cur/`), then one of another (a move). What is left over is copied, or
    /// expunged.
    fn pair(&mut self) {
        let keep = self.input.expunge == Expunge::Keep;
        let mut all_sources = std::mem::take(&mut self.sources);
        for (unique, wanted) in std::mem::take(&mut self.wanted) {
            let mut sources: Vec<Option<Source>> =
                all_sources.remove(unique).unwrap_or_default().into_iter().map(Some).collect();
            let mut taken: Vec<Option<Source>> = wanted.iter().map(|_| None).collect();
            for same_mailbox in [true, false] {
                for (want, slot) in wanted.iter().zip(&mut taken).filter(|(_, slot)| slot.is_none()) {
                    // With `keep`, a file the state does not know may be an expunged message
                    // kept there on purpose: it is only renamed within its own mailbox (where
                    // the master still has the message), never taken away from a mailbox.
                    let usable = |s: &Source| {
                        s.holds(want.master)
                            && if same_mailbox { s.view == want.view } else { !keep || s.synced.is_some() }
                    };
                    *slot = sources.iter_mut().find(|s| s.as_ref().is_some_and(usable)).and_then(Option::take);
                }
            }
            for (want, source) in wanted.iter().zip(taken) {
                match source {
                    // The replica holds this message under its old name, which the master
                    // no longer has: renamed, zero bytes sent; the record moves with it.
                    Some(source) => self.renames.push(Action::Rename {
                        side: Side::Destination,
                        from: source.path.to_string(),
                        to: want.path.to_string(),
                        entry: Box::new(source.entry),
                        counterpart: Some(Box::new(*want.master)),
                    }),
                    // No free copy of it on the replica (new, or also still at its other
                    // path on the master: a hard-linked copy): sent.
                    None => self.copy(want.path, want.master, None),
                }
            }
            // Rule 4: the master has no new path for these: expunged.
            for source in sources.into_iter().flatten() {
                self.expunge(source.path, source.entry, source.synced.is_some());
            }
        }
        // Rule 4: names the master has nowhere new: expunged.
        for source in all_sources.into_values().flatten() {
            self.expunge(source.path, source.entry, source.synced.is_some());
        }
    }

    /// Rule 4 (and 7, 8): the replica's `entry` at `path` is no longer on the master (and not
    /// renamed to where it is). `recorded`: the state has a record of it.
    fn expunge(&mut self, path: &str, entry: Entry, recorded: bool) {
        match self.input.expunge {
            Expunge::Mirror => {
                self.deletes.push(Action::Delete { side: Side::Destination, path: path.to_string(), entry })
            }
            // Left on the replica, never copied back: the state forgets it.
            Expunge::Keep if recorded => self.forget(path),
            Expunge::Keep => {}
        }
    }

    /// Rule 6: every folder a live mailbox needs, parents first.
    fn plan_live_folders(&mut self) {
        /// What decides whether a needed folder is there.
        #[derive(Default)]
        struct Need {
            /// It is a listed mailbox's own folder: its listing says whether it is there.
            listed: bool,
            /// It is on the way to a listed mailbox the replica lacks: the state is not
            /// trusted for it either.
            doubted: bool,
        }
        let state = self.input.state;
        let mut folders: BTreeMap<String, Need> = BTreeMap::new();
        for view in self.views.iter().filter(|v| v.master.is_some()) {
            let listed = view.replica.is_some();
            let missing = listed && !self.seen_folders.contains(view.folder);
            for dir in ancestors(view.folder) {
                folders.entry(dir.to_string()).or_default().doubted |= missing;
            }
            for dir in own_folders(view.folder) {
                let need = folders.entry(dir).or_default();
                need.listed |= listed;
                need.doubted |= missing;
            }
        }
        for (dir, need) in folders {
            let file_there = self.views.iter().filter_map(|v| v.replica?.get(&dir)).any(|e| !e.is_dir());
            let seen = self.seen_folders.contains(dir.as_str());
            let recorded = is_dir_record(state, &dir);
            // The state vouches for a folder it has a record of, or that holds recorded paths.
            let vouched = recorded || inside(state, &dir).next().is_some();
            if file_there {
                // A file where the mailbox needs a folder: not ours to delete.
                self.conflict(&dir, "the replica holds a file where the mailbox needs a folder", "left as it is");
            } else if seen {
                // A listing shows the folder: only recorded, if it was not.
                if !recorded {
                    self.record(&dir, StateRecord::dir());
                }
            } else if need.listed || need.doubted || !vouched {
                // A listing of the mailbox lacks it, or the way to a folder missing on the
                // replica, or the state has never seen it made: made.
                self.mkdirs.insert(dir.clone());
            }
            self.needed.insert(dir);
        }
    }

    /// Rule 5: the folders of mailboxes gone from the master, deepest first. With `mirror` a
    /// folder is deleted when nothing stays in it; with `keep` it is left and forgotten.
    fn plan_gone_folders(&mut self) {
        let state = self.input.state;
        let mut candidates: Vec<(String, bool)> = Vec::new();
        for view in self.views.iter().filter(|v| v.master.is_none()) {
            let listed = view.replica.is_some();
            candidates
                .extend(own_folders(view.folder).filter(|dir| !self.needed.contains(dir)).map(|dir| (dir, listed)));
        }
        if candidates.is_empty() {
            return;
        }
        candidates.sort_by(|a, b| b.0.matches('/').count().cmp(&a.0.matches('/').count()).then(a.0.cmp(&b.0)));
        // What the plan takes off the replica so far.
        let mut removed: HashSet<String> = self
            .deletes
            .iter()
            .map(|a| a.path().to_string())
            .chain(self.renames.iter().filter_map(|a| match a {
                Action::Rename { from, .. } => Some(from.clone()),
                _ => None,
            }))
            .collect();
        for (dir, listed) in candidates {
            let recorded = is_dir_record(state, &dir);
            let listing = self.views.iter().find_map(|v| v.replica?.get(&dir));
            let there = if listed { self.seen_folders.contains(dir.as_str()) } else { recorded };
            match self.input.expunge {
                // Left on the replica: forgotten, as its messages were.
                Expunge::Keep => {
                    if recorded {
                        self.forget(&dir);
                    }
                }
                // Already gone from the replica: only the record goes.
                Expunge::Mirror if !there => {
                    if recorded {
                        self.forget(&dir);
                        removed.insert(dir);
                    }
                }
                // Still holding something the plan leaves there (a file of tmp/, a mailbox
                // nested in an INBOX, a file another pass keeps): kept, record and all.
                Expunge::Mirror if listing.is_some_and(|e| e.holds_unsynced) || self.stays_in(&dir, &removed) => {}
                // Empty once the plan has run: deleted.
                Expunge::Mirror => {
                    let entry = listing.copied().unwrap_or_else(Entry::dir);
                    self.folder_deletes.push(Action::Delete { side: Side::Destination, path: dir.clone(), entry });
                    removed.insert(dir);
                }
            }
        }
    }

    /// True when something will still be in the replica's folder `dir` after the plan: a
    /// recorded path the listing does not show missing, a listed one, or one the plan makes.
    fn stays_in(&self, dir: &str, removed: &HashSet<String>) -> bool {
        let stays = |path: &str| !removed.contains(path);
        // A path a listing covers (a file of a listed mailbox, or one of its own folders) that
        // the listing does not show.
        let listed_missing = |path: &str| match self.rows.get(path) {
            Some(row) => matches!(row.replica, Replica::Absent),
            None => {
                let own = |v: &MailboxView| path == v.folder || part(v.folder, path) == Some(Part::Subfolder);
                self.views.iter().any(|v| v.replica.is_some() && own(v)) && !self.seen_folders.contains(path)
            }
        };
        inside(self.input.state, dir).any(|(path, _)| stays(path) && !listed_missing(path))
            || self.views.iter().filter_map(|v| v.replica).any(|l| inside(l, dir).any(|(path, _)| stays(path)))
            || self.mkdirs.iter().any(|path| is_inside(path, dir))
            || self.copies.iter().chain(&self.renames).any(|a| is_inside(a.path(), dir))
    }

    fn copy(&mut self, path: &str, file: &Entry, replaces: Option<Entry>) {
        self.copies.push(Action::Copy {
            from: Side::Source,
            path: path.to_string(),
            entry: *file,
            replaces: replaces.map(Box::new),
        });
    }

    fn record(&mut self, path: &str, record: StateRecord) {
        self.records.push(Action::Record { path: path.to_string(), record });
    }

    fn forget(&mut self, path: &str) {
        self.records.push(Action::Forget { path: path.to_string() });
    }

    fn conflict(&mut self, path: &str, reason: &str, resolution: &str) {
        self.conflicts.push(Conflict { path: path.to_string(), reason: reason.into(), resolution: resolution.into() });
    }

    fn finish(self) -> Plan {
        let by_path = |mut actions: Vec<Action>| {
            actions.sort_by(|a, b| a.path().cmp(b.path()));
            actions
        };
        let mkdirs = self.mkdirs.into_iter().map(|path| Action::Mkdir { side: Side::Destination, path }).collect();
        Plan::from_phases(
            vec![
                mkdirs,
                by_path(self.renames),
                by_path(self.copies),
                by_path(self.deletes),
                self.folder_deletes,
                by_path(self.records),
            ],
            self.conflicts,
        )
    }
}

#[cfg(test)]
mod tests {
    //! The planner table: every rule of [`plan`] as a named case (mutagen's reconcile_test
    //! style), then a property test on a model of the replica.

    use super::*;

    use Expunge::{Keep, Mirror};

    /// A file of `size` bytes with mtime `t` seconds.
    fn f(size: u64, t: i64) -> Entry {
        Entry::file(size, t * 1_000_000_000)
    }

    fn dir() -> Entry {
        Entry::dir()
    }

    /// Synced when both sides held `f(size, t)`.
    fn rec(size: u64, t: i64) -> StateRecord {
        StateRecord::synced(&f(size, t), &f(size, t), None)
    }

    /// Synced when the master held `f(size, t)` and the replica reported `f(size, t_replica)`
    /// (its own mtime: it may not keep the master's).
    fn rec2(size: u64, t: i64, t_replica: i64) -> StateRecord {
        StateRecord::synced(&f(size, t), &f(size, t_replica), None)
    }

    fn snap(entries: &[(&str, Entry)]) -> Snapshot {
        entries.iter().map(|(p, e)| (p.to_string(), *e)).collect()
    }

    /// The state after `folders` were made on the replica (with the folders on the way to
    /// them), plus `files`.
    fn known(folders: &[&str], files: &[(&str, StateRecord)]) -> State {
        let mut records: Vec<(String, StateRecord)> = Vec::new();
        for folder in folders {
            for dir in ancestors(folder).chain([*folder]) {
                records.push((dir.to_string(), StateRecord::dir()));
            }
            for sub in SUBFOLDERS {
                records.push((format!("{folder}/{sub}"), StateRecord::dir()));
            }
        }
        records.extend(files.iter().map(|(p, r)| (p.to_string(), *r)));
        records.into_iter().collect()
    }

    /// A mailbox's folders as a listing shows them.
    fn listed_dirs(folder: &str) -> Vec<(String, Entry)> {
        own_folders(folder).map(|d| (d, dir())).collect()
    }

    fn copy(path: &str, entry: Entry, replaces: Option<Entry>) -> Action {
        Action::Copy { from: Side::Source, path: path.into(), entry, replaces: replaces.map(Box::new) }
    }

    fn mkdir(path: &str) -> Action {
        Action::Mkdir { side: Side::Destination, path: path.into() }
    }

    fn delete(path: &str, entry: Entry) -> Action {
        Action::Delete { side: Side::Destination, path: path.into(), entry }
    }

    fn rename(from: &str, to: &str, entry: Entry, master: Entry) -> Action {
        Action::Rename {
            side: Side::Destination,
            from: from.into(),
            to: to.into(),
            entry: Box::new(entry),
            counterpart: Some(Box::new(master)),
        }
    }

    fn record(path: &str, master: Entry, replica: Entry) -> Action {
        Action::Record { path: path.into(), record: StateRecord::synced(&master, &replica, None) }
    }

    fn record_dir(path: &str) -> Action {
        Action::Record { path: path.into(), record: StateRecord::dir() }
    }

    fn forget(path: &str) -> Action {
        Action::Forget { path: path.into() }
    }

    const INBOX: &str = "u/Maildir";
    const SENT: &str = "u/Maildir/.Sent";
    const ARCHIVE: &str = "u/Maildir/.Archive";

    struct Case {
        state: State,
        /// Folder, master (None: gone), replica listing (None: rolling).
        views: Vec<(&'static str, Option<Snapshot>, Option<Snapshot>)>,
        expunge: Expunge,
        expect: Vec<Action>,
        /// Substrings of the conflict reasons expected, in order.
        conflicts: Vec<&'static str>,
    }

    fn case(state: State) -> Case {
        Case { state, views: Vec::new(), expunge: Mirror, expect: Vec::new(), conflicts: Vec::new() }
    }

    impl Case {
        /// A mailbox the master has, with these files.
        fn master(mut self, folder: &'static str, files: &[(&str, Entry)]) -> Self {
            self.views.push((folder, Some(snap(files)), None));
            self
        }
        /// A mailbox gone from the master.
        fn gone(mut self, folder: &'static str) -> Self {
            self.views.push((folder, None, None));
            self
        }
        /// The last mailbox is listed on the replica too (a repair pass): its folders and these.
        fn listed(mut self, files: &[(&str, Entry)]) -> Self {
            let view = self.views.last_mut().expect("a mailbox first");
            let mut entries = listed_dirs(view.0);
            entries.extend(files.iter().map(|(p, e)| (p.to_string(), *e)));
            view.2 = Some(entries.into_iter().collect());
            self
        }
        /// The last mailbox is listed on the replica as exactly these entries.
        fn listed_as(mut self, entries: &[(&str, Entry)]) -> Self {
            self.views.last_mut().expect("a mailbox first").2 = Some(snap(entries));
            self
        }
        fn keep(mut self) -> Self {
            self.expunge = Keep;
            self
        }
        fn expect(mut self, actions: Vec<Action>) -> Self {
            self.expect = actions;
            self
        }
        fn conflicts(mut self, reasons: &[&'static str]) -> Self {
            self.conflicts = reasons.to_vec();
            self
        }

        fn plan(&self) -> Plan {
            let input = MailPlanInput {
                mailboxes: self
                    .views
                    .iter()
                    .map(|(folder, master, replica)| MailboxView {
                        folder,
                        master: master.as_ref(),
                        replica: replica.as_ref(),
                    })
                    .collect(),
                state: &self.state,
                expunge: self.expunge,
            };
            plan(&input)
        }

        fn check(self) {
            let got = self.plan();
            let actions: Vec<Action> = got.actions().cloned().collect();
            let show = |actions: &[Action]| actions.iter().map(|a| format!("\n    {a:?}")).collect::<String>();
            assert_eq!(actions, self.expect, "\nactions:{}\nexpected:{}\n", show(&actions), show(&self.expect));
            let reasons: Vec<&str> = got.conflicts.iter().map(|c| c.reason.as_str()).collect();
            assert_eq!(reasons.len(), self.conflicts.len(), "conflicts: {:#?}", got.conflicts);
            for (reason, want) in reasons.iter().zip(&self.conflicts) {
                assert!(reason.contains(want), "conflict reason {reason:?} lacks {want:?}");
            }
        }
    }

    macro_rules! cases {
        ($($name:ident: $case:expr;)*) => {
            $( #[test] fn $name() { $case.check() } )*
        };
    }

    cases! {
        // --- Rule 1: new messages. ---
        new_message_in_cur_is_copied:
            case(known(&[INBOX], &[])).master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))])
            .expect(vec![copy("u/Maildir/cur/A:2,S", f(10, 1), None)]);
        new_delivery_in_new_is_copied:
            case(known(&[INBOX], &[])).master(INBOX, &[("u/Maildir/new/A", f(10, 1))])
            .expect(vec![copy("u/Maildir/new/A", f(10, 1), None)]);
        flagged_message_first_seen_in_new_is_copied:
            case(known(&[INBOX], &[])).master(INBOX, &[("u/Maildir/new/A:2,S", f(10, 1))])
            .expect(vec![copy("u/Maildir/new/A:2,S", f(10, 1), None)]);
        tmp_content_is_never_replicated:
            case(known(&[INBOX], &[])).master(INBOX, &[("u/Maildir/tmp/123.M1.h", f(10, 1)), ("u/Maildir/tmp", dir())])
            .expect(vec![]);

        // --- Rule 2: renames, zero bytes. ---
        flag_change_is_one_rename:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,", rec2(10, 1, 2))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))])
            .expect(vec![rename("u/Maildir/cur/A:2,", "u/Maildir/cur/A:2,S", f(10, 2), f(10, 1))]);
        new_to_cur_is_one_rename:
            case(known(&[INBOX], &[("u/Maildir/new/A", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,", f(10, 1))])
            .expect(vec![rename("u/Maildir/new/A", "u/Maildir/cur/A:2,", f(10, 1), f(10, 1))]);
        flagged_message_staying_in_new_is_one_rename:
            case(known(&[INBOX], &[("u/Maildir/new/A", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/new/A:2,S", f(10, 1))])
            .expect(vec![rename("u/Maildir/new/A", "u/Maildir/new/A:2,S", f(10, 1), f(10, 1))]);
        move_between_two_mailboxes_is_one_rename:
            case(known(&[INBOX, SENT], &[("u/Maildir/cur/A:2,S", rec(10, 1))]))
            .master(INBOX, &[])
            .master(SENT, &[("u/Maildir/.Sent/new/A", f(10, 1))])
            .expect(vec![rename("u/Maildir/cur/A:2,S", "u/Maildir/.Sent/new/A", f(10, 1), f(10, 1))]);
        move_to_a_new_mailbox_makes_it_then_renames:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,S", rec(10, 1))]))
            .master(INBOX, &[])
            .master(SENT, &[("u/Maildir/.Sent/cur/A:2,S", f(10, 1))])
            .expect(vec![
                mkdir(SENT), mkdir("u/Maildir/.Sent/cur"), mkdir("u/Maildir/.Sent/new"), mkdir("u/Maildir/.Sent/tmp"),
                rename("u/Maildir/cur/A:2,S", "u/Maildir/.Sent/cur/A:2,S", f(10, 1), f(10, 1)),
            ]);
        hard_linked_copy_to_another_mailbox_is_a_copy:
            case(known(&[INBOX, SENT], &[("u/Maildir/cur/A:2,S", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))])
            .master(SENT, &[("u/Maildir/.Sent/cur/A:2,S", f(10, 1))])
            .expect(vec![copy("u/Maildir/.Sent/cur/A:2,S", f(10, 1), None)]);
        copy_plus_flag_change_renames_one_and_copies_the_other:
            case(known(&[INBOX, SENT], &[("u/Maildir/cur/A:2,", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))])
            .master(SENT, &[("u/Maildir/.Sent/cur/A:2,", f(10, 1))])
            .expect(vec![
                rename("u/Maildir/cur/A:2,", "u/Maildir/cur/A:2,S", f(10, 1), f(10, 1)),
                copy("u/Maildir/.Sent/cur/A:2,", f(10, 1), None),
            ]);
        move_from_a_mailbox_not_in_the_pass_is_a_copy:
            // Only Sent is looked at: INBOX may still hold the message, so nothing is taken
            // from it; INBOX's own pass expunges it there.
            case(known(&[INBOX, SENT], &[("u/Maildir/cur/A:2,", rec(10, 1))]))
            .master(SENT, &[("u/Maildir/.Sent/cur/A:2,", f(10, 1))])
            .expect(vec![copy("u/Maildir/.Sent/cur/A:2,", f(10, 1), None)]);
        rename_needs_the_synced_content:
            // Same unique name, another size: not the message the replica holds.
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(11, 1))])
            .expect(vec![copy("u/Maildir/cur/A:2,S", f(11, 1), None), delete("u/Maildir/cur/A:2,", f(10, 1))]);
        mailbox_renamed_is_a_rename_per_message_then_the_old_folders_go:
            case(known(&[INBOX, ARCHIVE], &[("u/Maildir/.Archive/cur/A:2,S", rec(10, 1)), ("u/Maildir/.Archive/maildirfolder", rec(0, 1))]))
            .gone(ARCHIVE)
            .master("u/Maildir/.Old", &[("u/Maildir/.Old/cur/A:2,S", f(10, 1)), ("u/Maildir/.Old/maildirfolder", f(0, 1))])
            .expect(vec![
                mkdir("u/Maildir/.Old"), mkdir("u/Maildir/.Old/cur"), mkdir("u/Maildir/.Old/new"), mkdir("u/Maildir/.Old/tmp"),
                rename("u/Maildir/.Archive/cur/A:2,S", "u/Maildir/.Old/cur/A:2,S", f(10, 1), f(10, 1)),
                copy("u/Maildir/.Old/maildirfolder", f(0, 1), None),
                delete("u/Maildir/.Archive/maildirfolder", f(0, 1)),
                delete("u/Maildir/.Archive/cur", dir()), delete("u/Maildir/.Archive/new", dir()), delete("u/Maildir/.Archive/tmp", dir()),
                delete(ARCHIVE, dir()),
            ]);

        // --- Rule 3: unchanged, changed at the same path. ---
        unchanged_message_needs_nothing:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,S", rec2(10, 1, 2))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))])
            .expect(vec![]);
        changed_at_the_same_path_is_copied_over_the_recorded_replica_file:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,S", rec2(10, 1, 2))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 5))])
            .expect(vec![copy("u/Maildir/cur/A:2,S", f(10, 5), Some(f(10, 2)))]);

        // --- Rule 4: expunges. ---
        expunge_mirror_deletes_the_replica_file_as_recorded:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,S", rec2(10, 1, 2))]))
            .master(INBOX, &[])
            .expect(vec![delete("u/Maildir/cur/A:2,S", f(10, 2))]);
        expunge_keep_forgets_and_leaves_it:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,S", rec(10, 1))]))
            .master(INBOX, &[]).keep()
            .expect(vec![forget("u/Maildir/cur/A:2,S")]);
        move_with_keep_is_still_a_rename:
            case(known(&[INBOX, SENT], &[("u/Maildir/cur/A:2,", rec(10, 1))]))
            .master(INBOX, &[]).master(SENT, &[("u/Maildir/.Sent/cur/A:2,", f(10, 1))]).keep()
            .expect(vec![rename("u/Maildir/cur/A:2,", "u/Maildir/.Sent/cur/A:2,", f(10, 1), f(10, 1))]);

        // --- Rule 5: a mailbox gone from the master. ---
        mailbox_gone_mirror_deletes_files_then_folders_deepest_first:
            case(known(&[INBOX, SENT], &[
                ("u/Maildir/.Sent/cur/A:2,S", rec(10, 1)), ("u/Maildir/.Sent/new/B", rec(20, 1)),
                ("u/Maildir/.Sent/dovecot-uidlist", rec(30, 1)),
            ]))
            .gone(SENT)
            .expect(vec![
                delete("u/Maildir/.Sent/cur/A:2,S", f(10, 1)),
                delete("u/Maildir/.Sent/dovecot-uidlist", f(30, 1)),
                delete("u/Maildir/.Sent/new/B", f(20, 1)),
                delete("u/Maildir/.Sent/cur", dir()), delete("u/Maildir/.Sent/new", dir()), delete("u/Maildir/.Sent/tmp", dir()),
                delete(SENT, dir()),
            ]);
        mailbox_gone_keep_deletes_nothing_and_forgets_it:
            case(known(&[INBOX, SENT], &[("u/Maildir/.Sent/cur/A:2,S", rec(10, 1))]))
            .gone(SENT).keep()
            .expect(vec![
                forget(SENT), forget("u/Maildir/.Sent/cur"), forget("u/Maildir/.Sent/cur/A:2,S"),
                forget("u/Maildir/.Sent/new"), forget("u/Maildir/.Sent/tmp"),
            ]);
        gone_inbox_keeps_its_folder_while_a_mailbox_lives_in_it:
            case(known(&[INBOX, SENT], &[("u/Maildir/cur/A:2,S", rec(10, 1))]))
            .gone(INBOX).master(SENT, &[])
            .expect(vec![
                delete("u/Maildir/cur/A:2,S", f(10, 1)),
                delete("u/Maildir/cur", dir()), delete("u/Maildir/new", dir()), delete("u/Maildir/tmp", dir()),
            ]);
        gone_inbox_keeps_its_folder_while_the_state_knows_a_mailbox_in_it:
            // .Sent is not in this pass, but its records say it is on the replica.
            case(known(&[INBOX, SENT], &[]))
            .gone(INBOX)
            .expect(vec![delete("u/Maildir/cur", dir()), delete("u/Maildir/new", dir()), delete("u/Maildir/tmp", dir())]);
        gone_mailbox_with_a_file_left_in_tmp_keeps_tmp_and_its_folder:
            case(known(&[INBOX, SENT], &[]))
            .gone(SENT).listed(&[("u/Maildir/.Sent/tmp/1.M1.h", f(5, 1))])
            .expect(vec![delete("u/Maildir/.Sent/cur", dir()), delete("u/Maildir/.Sent/new", dir())]);
        gone_mailbox_never_replicated_is_nothing:
            case(known(&[INBOX], &[])).gone(SENT).expect(vec![]);

        // --- Rule 6: the folders of a mailbox. ---
        new_mailbox_of_a_new_user_makes_every_folder_parents_first:
            case(State::new())
            .master(INBOX, &[("u/Maildir/new/A", f(10, 1))])
            .expect(vec![
                mkdir("u"), mkdir(INBOX), mkdir("u/Maildir/cur"), mkdir("u/Maildir/new"), mkdir("u/Maildir/tmp"),
                copy("u/Maildir/new/A", f(10, 1), None),
            ]);
        new_mailbox_under_known_folders_makes_only_its_own:
            case(known(&[INBOX], &[]))
            .master(SENT, &[])
            .expect(vec![mkdir(SENT), mkdir("u/Maildir/.Sent/cur"), mkdir("u/Maildir/.Sent/new"), mkdir("u/Maildir/.Sent/tmp")]);
        folders_holding_recorded_paths_are_known_without_their_own_record:
            // The caller read the records in u/Maildir but not the one of u itself.
            case(known(&[SENT], &[]).iter().filter(|(p, _)| *p != "u").map(|(p, r)| (p.clone(), *r)).collect())
            .master(SENT, &[])
            .expect(vec![]);
        nested_mailbox_paths_are_not_the_inboxes:
            // INBOX's listing and state hold .Sent's files: they are Sent's, not INBOX's.
            case(known(&[INBOX, SENT], &[("u/Maildir/.Sent/cur/B:2,", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/.Sent", dir()), ("u/Maildir/.Sent/cur/C:2,", f(10, 1))])
            .expect(vec![]);

        // --- Rule 7: control files, by path. ---
        control_file_new_is_copied:
            case(known(&[INBOX], &[])).master(INBOX, &[("u/Maildir/dovecot-uidlist", f(50, 1))])
            .expect(vec![copy("u/Maildir/dovecot-uidlist", f(50, 1), None)]);
        control_file_changed_is_copied_over_the_recorded_one:
            case(known(&[INBOX], &[("u/Maildir/dovecot-uidlist", rec2(50, 1, 2))]))
            .master(INBOX, &[("u/Maildir/dovecot-uidlist", f(60, 3))])
            .expect(vec![copy("u/Maildir/dovecot-uidlist", f(60, 3), Some(f(50, 2)))]);
        control_file_gone_mirror_is_deleted:
            case(known(&[INBOX], &[("u/Maildir/dovecot-keywords", rec(5, 1))])).master(INBOX, &[])
            .expect(vec![delete("u/Maildir/dovecot-keywords", f(5, 1))]);
        control_file_gone_keep_is_left:
            case(known(&[INBOX], &[("u/Maildir/dovecot-keywords", rec(5, 1))])).master(INBOX, &[]).keep()
            .expect(vec![forget("u/Maildir/dovecot-keywords")]);
        control_file_is_never_a_rename:
            case(known(&[INBOX], &[("u/Maildir/subscriptions", rec(5, 1))]))
            .master(INBOX, &[("u/Maildir/maildirfolder", f(5, 1))])
            .expect(vec![copy("u/Maildir/maildirfolder", f(5, 1), None), delete("u/Maildir/subscriptions", f(5, 1))]);

        // --- Rule 8: repair passes. ---
        repair_copies_a_recorded_file_missing_on_the_replica:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,S", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))]).listed(&[])
            .expect(vec![copy("u/Maildir/cur/A:2,S", f(10, 1), None)]);
        repair_copies_over_a_replica_file_of_another_size:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,S", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))]).listed(&[("u/Maildir/cur/A:2,S", f(4, 1))])
            .expect(vec![copy("u/Maildir/cur/A:2,S", f(10, 1), Some(f(4, 1)))]);
        repair_ignores_a_replica_mtime_of_its_own:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,S", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))]).listed(&[("u/Maildir/cur/A:2,S", f(10, 7))])
            .expect(vec![]);
        repair_deletes_a_replica_extra_with_mirror:
            case(known(&[INBOX], &[]))
            .master(INBOX, &[]).listed(&[("u/Maildir/cur/Z:2,", f(3, 1)), ("u/Maildir/stray", f(1, 1))])
            .expect(vec![delete("u/Maildir/cur/Z:2,", f(3, 1)), delete("u/Maildir/stray", f(1, 1))]);
        repair_leaves_a_replica_extra_with_keep:
            case(known(&[INBOX], &[]))
            .master(INBOX, &[]).listed(&[("u/Maildir/cur/Z:2,", f(3, 1))]).keep()
            .expect(vec![]);
        repair_forgets_an_expunged_message_already_gone_from_the_replica:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,S", rec(10, 1))]))
            .master(INBOX, &[]).listed(&[])
            .expect(vec![forget("u/Maildir/cur/A:2,S")]);
        repair_with_a_lost_state_only_records:
            // The replica keeps whole seconds: 1.4 s on the master is 1 s there.
            case(State::new())
            .master(INBOX, &[("u/Maildir/cur/A:2,S", Entry::file(10, 1_400_000_000)), ("u/Maildir/dovecot-uidlist", f(50, 1))])
            .listed(&[("u/Maildir/cur/A:2,S", f(10, 1)), ("u/Maildir/dovecot-uidlist", f(50, 1))])
            .expect(vec![
                record_dir("u"), record_dir(INBOX), record_dir("u/Maildir/cur"),
                record("u/Maildir/cur/A:2,S", Entry::file(10, 1_400_000_000), f(10, 1)),
                record("u/Maildir/dovecot-uidlist", f(50, 1), f(50, 1)),
                record_dir("u/Maildir/new"), record_dir("u/Maildir/tmp"),
            ]);
        repair_with_a_lost_state_renames_a_flag_change:
            case(known(&[INBOX], &[]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))]).listed(&[("u/Maildir/new/A", f(10, 1))])
            .expect(vec![rename("u/Maildir/new/A", "u/Maildir/cur/A:2,S", f(10, 1), f(10, 1))]);
        repair_with_keep_never_takes_a_kept_file_from_another_mailbox:
            case(known(&[INBOX], &[]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))]).listed(&[])
            .gone(SENT).listed(&[("u/Maildir/.Sent/cur/A:2,", f(10, 1))]).keep()
            .expect(vec![copy("u/Maildir/cur/A:2,S", f(10, 1), None)]);
        repair_finishes_a_rename_whose_record_was_lost:
            // A killed run renamed the file but did not commit its record.
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))]).listed(&[("u/Maildir/cur/A:2,S", f(10, 1))])
            .expect(vec![forget("u/Maildir/cur/A:2,"), record("u/Maildir/cur/A:2,S", f(10, 1), f(10, 1))]);
        repair_never_renames_a_damaged_file:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))]).listed(&[("u/Maildir/cur/A:2,", f(3, 1))])
            .expect(vec![copy("u/Maildir/cur/A:2,S", f(10, 1), None), delete("u/Maildir/cur/A:2,", f(3, 1))]);
        repair_makes_a_missing_subfolder_again:
            case(known(&[INBOX], &[("u/Maildir/cur/A:2,S", rec(10, 1))]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))])
            .listed_as(&[(INBOX, dir()), ("u/Maildir/new", dir()), ("u/Maildir/tmp", dir())])
            .expect(vec![mkdir("u/Maildir/cur"), copy("u/Maildir/cur/A:2,S", f(10, 1), None)]);
        repair_makes_the_way_to_a_missing_mailbox_again:
            // The replica lost the whole user: the state is not trusted for the way there.
            case(known(&[INBOX], &[]))
            .master(INBOX, &[]).listed_as(&[])
            .expect(vec![mkdir("u"), mkdir(INBOX), mkdir("u/Maildir/cur"), mkdir("u/Maildir/new"), mkdir("u/Maildir/tmp")]);
        repair_meets_a_folder_where_a_message_belongs:
            case(known(&[INBOX], &[]))
            .master(INBOX, &[("u/Maildir/cur/A:2,S", f(10, 1))]).listed(&[("u/Maildir/cur/A:2,S", dir())])
            .expect(vec![])
            .conflicts(&["a folder where the mailbox has a file"]);
        repair_meets_a_file_where_a_folder_belongs:
            case(known(&[INBOX], &[]))
            .master(INBOX, &[]).listed_as(&[(INBOX, dir()), ("u/Maildir/cur", f(1, 1)), ("u/Maildir/new", dir()), ("u/Maildir/tmp", dir())])
            .expect(vec![])
            .conflicts(&["a file where the mailbox needs a folder"]);
    }

    #[test]
    fn phases_run_folders_renames_copies_deletes_then_records() {
        let got = case(known(&[INBOX], &[("u/Maildir/new/A", rec(10, 1)), ("u/Maildir/cur/B:2,", rec(20, 1))]))
            .master(
                INBOX,
                &[("u/Maildir/cur/A:2,", f(10, 1)), ("u/Maildir/new/C", f(30, 1)), ("u/Maildir/new/D", f(40, 1))],
            )
            .gone(SENT)
            .master(ARCHIVE, &[])
            .plan();
        let phases: Vec<Vec<String>> = got.phases().iter().map(|p| p.iter().map(|a| a.to_string()).collect()).collect();
        let kinds: Vec<&str> = phases.iter().map(|p| p[0].split_whitespace().next().unwrap()).collect();
        assert_eq!(kinds, ["mkdir", "rename", "copy", "delete"], "{phases:#?}");
        assert_eq!(got.phases()[2].len(), 2, "the copies are one phase: {phases:#?}");
        assert!(got.phases()[2].iter().all(|a| matches!(a, Action::Copy { .. })));
    }

    #[test]
    fn unique_names_ignore_the_info_whatever_its_separator() {
        for (file, unique) in [("A", "A"), ("A:2,", "A"), ("A:2,FS", "A"), ("A!2,S", "A"), ("A;2,S", "A")] {
            assert_eq!(part("m", &format!("m/cur/{file}")), Some(Part::Message(unique)), "{file}");
        }
        assert_eq!(part("m", "m/.Sent/cur/A"), None);
        assert_eq!(part("m", "m"), None);
        assert_eq!(part("m", "mx/cur/A"), None);
        assert_eq!(part("m", "m/tmp/A"), Some(Part::Temp));
        assert_eq!(part("m", "m/cur"), Some(Part::Subfolder));
        assert_eq!(part("m", "m/dovecot-uidlist"), Some(Part::Control));
    }

    mod model {
        //! Random masters and states, with the plan applied to a model of the replica that
        //! checks what the executor checks (compare, then mutate) and keeps whole seconds.

        use std::collections::BTreeMap;

        use proptest::prelude::*;
        use proptest::test_runner::TestCaseError;

        use super::super::*;

        const FOLDERS: [&str; 3] = ["u/M", "u/M/.Sent", "u/M/.A b"];
        const INFO: [&str; 4] = ["", ":2,", ":2,S", ":2,FS"];
        const NAMES: usize = 6;

        /// Where a message is: mailbox, cur/ (or new/), info.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        struct Loc(usize, bool, usize);

        fn loc() -> impl Strategy<Value = Loc> {
            (0..FOLDERS.len(), any::<bool>(), 0..INFO.len()).prop_map(|(m, cur, i)| Loc(m, cur, i))
        }

        fn message_path(name: usize, Loc(m, cur, i): Loc) -> String {
            format!("{}/{}/U{name}{}", FOLDERS[m], if cur { "cur" } else { "new" }, INFO[i])
        }

        /// A message's content never changes: its size and mtime follow from its name (the
        /// mtime has nanoseconds, which the replica does not keep).
        fn message(name: usize) -> Entry {
            Entry::file(100 + name as u64, 1_700_000_000_123_456_789 + name as i64 * 1_000_000_007)
        }

        #[derive(Debug, Clone)]
        enum Damage {
            Remove(usize),
            Resize(usize),
            /// A message file on the replica only: (name, where, same content as the master's).
            Extra(usize, Loc, bool),
            /// A whole subfolder of a mailbox (cur/new/tmp) lost with what it held.
            LoseFolder(usize, usize),
        }

        fn damage() -> impl Strategy<Value = Damage> {
            prop_oneof![
                any::<usize>().prop_map(Damage::Remove),
                any::<usize>().prop_map(Damage::Resize),
                (0..NAMES, loc(), any::<bool>()).prop_map(|(n, l, same)| Damage::Extra(n, l, same)),
                (0..FOLDERS.len(), 0..3usize).prop_map(|(m, s)| Damage::LoseFolder(m, s)),
            ]
        }

        /// One mailbox store: which mailboxes exist, where each message is, the control files.
        #[derive(Debug, Clone)]
        struct Store {
            boxes: [bool; 3],
            messages: Vec<Vec<Loc>>,
            uidlists: [Option<(u64, i64)>; 3],
        }

        impl Store {
            fn snapshot(&self) -> Snapshot {
                let mut entries = Vec::new();
                for (m, folder) in FOLDERS.iter().enumerate().filter(|(m, _)| self.boxes[*m]) {
                    for sub in SUBFOLDERS {
                        entries.push((format!("{folder}/{sub}"), Entry::dir()));
                    }
                    // Never replicated.
                    entries.push((format!("{folder}/tmp/1.M1P1.h"), Entry::file(7, 7)));
                    if let Some((size, t)) = self.uidlists[m] {
                        entries.push((format!("{folder}/dovecot-uidlist"), Entry::file(size, t * 1_000_000_000 + 5)));
                    }
                }
                for (name, locs) in self.messages.iter().enumerate() {
                    for l in locs.iter().filter(|l| self.boxes[l.0]) {
                        entries.push((message_path(name, *l), message(name)));
                    }
                }
                entries.into_iter().collect()
            }
        }

        fn store() -> impl Strategy<Value = Store> {
            (
                proptest::array::uniform3(proptest::bool::weighted(0.8)),
                proptest::collection::vec(proptest::collection::btree_set(loc(), 0..=2), NAMES),
                proptest::array::uniform3(proptest::option::of((1..4u64, 1..3i64))),
            )
                .prop_map(|(boxes, messages, uidlists)| Store {
                    boxes,
                    messages: messages.into_iter().map(|s| s.into_iter().collect()).collect(),
                    uidlists,
                })
        }

        /// A later store: each message kept, moved (flags, new/ -> cur/, another mailbox) or
        /// placed anew, mailboxes made or deleted.
        fn later(before: Store) -> impl Strategy<Value = Store> {
            let n = before.messages.len();
            (
                proptest::array::uniform3(proptest::bool::weighted(0.8)),
                proptest::collection::vec((0..4u8, loc(), proptest::collection::btree_set(loc(), 0..=2)), n),
                proptest::array::uniform3(proptest::option::of((1..4u64, 1..3i64))),
                any::<bool>(),
            )
                .prop_map(move |(boxes, changes, uidlists, same_uidlists)| {
                    let messages = before
                        .messages
                        .iter()
                        .zip(changes)
                        .map(|(locs, (how, to, anew))| match how {
                            0 => locs.clone(),
                            1 if !locs.is_empty() => {
                                let mut moved = locs.clone();
                                moved[0] = to;
                                moved.sort();
                                moved.dedup();
                                moved
                            }
                            _ => anew.into_iter().collect(),
                        })
                        .collect();
                    let uidlists = if same_uidlists { before.uidlists } else { uidlists };
                    Store { boxes, messages, uidlists }
                })
        }

        /// The replica and the state database, as the executor would leave them.
        #[derive(Debug, Default, Clone)]
        struct Model {
            replica: BTreeMap<String, Entry>,
            state: BTreeMap<String, StateRecord>,
        }

        impl Model {
            fn state(&self) -> State {
                self.state.iter().map(|(p, r)| (p.clone(), *r)).collect()
            }

            fn listing(&self) -> Snapshot {
                self.replica.iter().map(|(p, e)| (p.clone(), *e)).collect()
            }

            fn has_folder(&self, path: &str) -> bool {
                crate::core::model::parent(path).is_none_or(|p| self.replica.get(p).is_some_and(Entry::is_dir))
            }

            /// Runs `plan` as the executor does, failing where the executor's checks would.
            fn apply(&mut self, plan: &Plan, master: &Snapshot) -> Result<(), TestCaseError> {
                for action in plan.actions() {
                    match action {
                        Action::Mkdir { side: Side::Destination, path } => {
                            prop_assert!(self.has_folder(path), "{action}: no parent");
                            prop_assert!(self.replica.get(path).is_none_or(Entry::is_dir), "{action}: a file is there");
                            self.replica.insert(path.clone(), Entry::dir());
                            self.state.insert(path.clone(), StateRecord::dir());
                        }
                        Action::Rename { side: Side::Destination, from, to, entry, counterpart: Some(there) } => {
                            let now = self.replica.get(from);
                            prop_assert!(now.is_some_and(|e| e.same_metadata(entry)), "{action}: from is {now:?}");
                            prop_assert!(!self.replica.contains_key(to), "{action}: to is taken");
                            prop_assert!(self.has_folder(to), "{action}: no parent");
                            let moved = self.replica.remove(from).unwrap();
                            self.replica.insert(to.clone(), moved);
                            self.state.remove(from);
                            self.state.insert(to.clone(), StateRecord::synced(there, &moved, None));
                        }
                        Action::Copy { from: Side::Source, path, entry, replaces } => {
                            prop_assert_eq!(master.get(path), Some(entry), "{}: not the master's", action);
                            let now = self.replica.get(path);
                            match replaces {
                                None => prop_assert!(now.is_none(), "{action}: something is there"),
                                Some(then) => {
                                    prop_assert!(now.is_some_and(|e| e.same_metadata(then)), "{action}: {now:?}")
                                }
                            }
                            prop_assert!(self.has_folder(path), "{action}: no parent");
                            // The replica keeps whole seconds.
                            let written = Entry::file(entry.size, entry.mtime - entry.mtime % 1_000_000_000);
                            self.replica.insert(path.clone(), written);
                            self.state.insert(path.clone(), StateRecord::synced(entry, &written, None));
                        }
                        Action::Delete { side: Side::Destination, path, entry } => {
                            let now = self.replica.get(path);
                            prop_assert!(
                                now.is_some_and(|e| (e.is_dir() && entry.is_dir()) || e.same_metadata(entry)),
                                "{action}: {now:?}"
                            );
                            if entry.is_dir() {
                                let inside = self.replica.keys().any(|k| is_inside(k, path));
                                prop_assert!(!inside, "{action}: not empty");
                            }
                            self.replica.remove(path);
                            self.state.remove(path);
                        }
                        Action::Record { path, record } => {
                            self.state.insert(path.clone(), *record);
                        }
                        Action::Forget { path } => {
                            self.state.remove(path);
                        }
                        other => prop_assert!(false, "not a mail action: {other:?}"),
                    }
                }
                Ok(())
            }
        }

        fn plan_for(
            store: &Store,
            master: &Snapshot,
            model: &Model,
            listing: Option<&Snapshot>,
            expunge: Expunge,
        ) -> Plan {
            plan_part(store, master, model, listing, expunge, [true; 3])
        }

        /// The plan of a pass over the mailboxes `named` (a rolling cycle names some).
        fn plan_part(
            store: &Store,
            master: &Snapshot,
            model: &Model,
            listing: Option<&Snapshot>,
            expunge: Expunge,
            named: [bool; 3],
        ) -> Plan {
            let state = model.state();
            let input = MailPlanInput {
                mailboxes: FOLDERS
                    .iter()
                    .enumerate()
                    .filter(|(m, _)| named[*m])
                    .map(|(m, folder)| MailboxView {
                        folder,
                        master: store.boxes[m].then_some(master),
                        replica: listing,
                    })
                    .collect(),
                state: &state,
                expunge,
            };
            plan(&input)
        }

        /// The replica holds the master's files (only them with `Mirror`), each with the
        /// master's size and mtime to the second, and the folders of every mailbox; and the
        /// state describes both.
        fn converged(model: &Model, store: &Store, master: &Snapshot, expunge: Expunge) -> Result<(), TestCaseError> {
            let files = |snapshot: &BTreeMap<String, Entry>| -> Vec<String> {
                snapshot.iter().filter(|(p, e)| !e.is_dir() && !p.contains("/tmp/")).map(|(p, _)| p.clone()).collect()
            };
            let master_map: BTreeMap<String, Entry> = master.iter().map(|(p, e)| (p.clone(), *e)).collect();
            let wanted = files(&master_map);
            for path in &wanted {
                let (m, r) = (master_map[path], model.replica.get(path));
                prop_assert!(r.is_some_and(|r| r.size == m.size && m.mtime - r.mtime < 1_000_000_000), "{path}: {r:?}");
                let rec = model.state.get(path);
                prop_assert!(rec.is_some_and(|r| r.source == m.observed()), "{path}: record {rec:?}");
            }
            if expunge == Expunge::Mirror {
                prop_assert_eq!(files(&model.replica), wanted);
            }
            for (path, rec) in &model.state {
                let there = model.replica.get(path);
                prop_assert!(there.is_some_and(|e| e.kind == rec.kind), "{path} recorded, replica has {there:?}");
            }
            for (m, folder) in FOLDERS.iter().enumerate() {
                for dir in own_folders(folder) {
                    let there = model.replica.get(&dir).is_some_and(Entry::is_dir);
                    if store.boxes[m] {
                        prop_assert!(there && model.state.contains_key(&dir), "{dir} missing");
                    } else if expunge == Expunge::Mirror && !(m == 0 && store.boxes[1..].iter().any(|b| *b)) {
                        prop_assert!(!there, "{dir} of a deleted mailbox left");
                    }
                }
            }
            Ok(())
        }

        fn is_message(path: &str) -> Option<&str> {
            let (dir, name) = crate::core::model::split(path);
            (dir.ends_with("/cur") || dir.ends_with("/new")).then(|| unique_name(name))
        }

        fn scenario(
            before: Store,
            after: Store,
            named: [bool; 3],
            damages: Vec<Damage>,
            lose_state: bool,
            expunge: Expunge,
        ) -> Result<(), TestCaseError> {
            let mut model = Model::default();
            let first = before.snapshot();
            model.apply(&plan_for(&before, &first, &model, None, expunge), &first)?;
            converged(&model, &before, &first, expunge)?;

            // A rolling cycle naming only some mailboxes: whatever it does must be what the
            // executor can do, and leave a state that describes the replica.
            let master = after.snapshot();
            if named.iter().any(|n| !n) {
                let plan = plan_part(&after, &master, &model, None, expunge, named);
                model.apply(&plan, &master)?;
                for (path, rec) in &model.state {
                    let there = model.replica.get(path);
                    prop_assert!(there.is_some_and(|e| e.kind == rec.kind), "{path} recorded, replica has {there:?}");
                }
            }

            // A cycle naming every mailbox: renames for every message the state holds
            // elsewhere.
            let state = model.state.clone();
            let plan = plan_for(&after, &master, &model, None, expunge);
            let uniques: std::collections::BTreeSet<&str> =
                state.keys().chain(master.keys()).filter_map(|p| is_message(p)).collect();
            for unique in uniques {
                let of = |p: &&String| is_message(p) == Some(unique);
                let olds = state.keys().filter(of).filter(|p| !master.contains_key(p)).count();
                let news = master.keys().filter(of).filter(|p| !state.contains_key(*p)).count();
                let copies = plan
                    .actions()
                    .filter(|a| matches!(a, Action::Copy { path, .. } if is_message(path) == Some(unique)))
                    .count();
                let renames = plan
                    .actions()
                    .filter(|a| matches!(a, Action::Rename { to, .. } if is_message(to) == Some(unique)))
                    .count();
                prop_assert_eq!(copies, news.saturating_sub(olds), "copies of {}: {:#?}", unique, plan);
                prop_assert_eq!(renames, news.min(olds), "renames of {}", unique);
            }
            if expunge == Expunge::Keep {
                prop_assert!(!plan.actions().any(|a| matches!(a, Action::Delete { .. })), "keep deletes nothing");
            }
            model.apply(&plan, &master)?;
            converged(&model, &after, &master, expunge)?;
            let again = plan_for(&after, &master, &model, None, expunge);
            prop_assert!(again.actions().next().is_none(), "not idempotent: {again:#?}");

            // With the replica as it is and the state lost, a repair pass only records.
            let mut lost = Model { replica: model.replica.clone(), state: BTreeMap::new() };
            let listing = lost.listing();
            let repair = plan_for(&after, &master, &lost, Some(&listing), expunge);
            prop_assert!(
                repair.actions().all(|a| matches!(a, Action::Record { .. })),
                "a lost state sends or deletes: {repair:#?}"
            );
            lost.apply(&repair, &master)?;
            converged(&lost, &after, &master, expunge)?;

            // A damaged replica (and maybe a lost state) is mended by a repair pass.
            for damage in damages {
                let files: Vec<String> =
                    model.replica.iter().filter(|(_, e)| !e.is_dir()).map(|(p, _)| p.clone()).collect();
                match damage {
                    Damage::Remove(i) if !files.is_empty() => {
                        model.replica.remove(&files[i % files.len()]);
                    }
                    Damage::Resize(i) if !files.is_empty() => {
                        model.replica.get_mut(&files[i % files.len()]).unwrap().size += 1;
                    }
                    Damage::Extra(name, l, same) => {
                        let path = message_path(name, l);
                        if model.has_folder(&path) && !model.replica.contains_key(&path) {
                            let e = message(name);
                            let size = if same { e.size } else { e.size + 50 };
                            model.replica.insert(path, Entry::file(size, e.mtime - e.mtime % 1_000_000_000));
                        }
                    }
                    Damage::LoseFolder(m, s) => {
                        let dir = format!("{}/{}", FOLDERS[m], SUBFOLDERS[s]);
                        model.replica.retain(|k, _| k != &dir && !is_inside(k, &dir));
                    }
                    _ => {}
                }
            }
            if lose_state {
                model.state.clear();
            }
            let listing = model.listing();
            let repair = plan_for(&after, &master, &model, Some(&listing), expunge);
            model.apply(&repair, &master)?;
            converged(&model, &after, &master, expunge)?;
            let listing = model.listing();
            let again = plan_for(&after, &master, &model, Some(&listing), expunge);
            prop_assert!(again.actions().next().is_none(), "repair not idempotent: {again:#?}");
            let again = plan_for(&after, &master, &model, None, expunge);
            prop_assert!(again.actions().next().is_none(), "rolling after repair: {again:#?}");
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn replica_becomes_the_master_by_renames_where_it_can(
                (before, after) in store().prop_flat_map(|b| (Just(b.clone()), later(b))),
                named in proptest::array::uniform3(any::<bool>()),
                damages in proptest::collection::vec(damage(), 0..4),
                lose_state in any::<bool>(),
                keep in proptest::bool::weighted(0.3),
            ) {
                scenario(before, after, named, damages, lose_state, if keep { Expunge::Keep } else { Expunge::Mirror })?;
            }
        }
    }
}
