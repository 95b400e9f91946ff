//! One replication pass over a Cyrus spool: the work of a sync log (or of -u, -m, -A) into
//! units, each read consistently, planned and applied by the executor.
//!
//! Per user, in order: the mailboxes named are looked up with `mbpath -j` (a name Cyrus no
//! longer knows is a mailbox gone, unless its folder now belongs to another name: a rename in
//! the UUID layout keeps the folder); each live mailbox's metadata is captured under the lock
//! on `cyrus.index`, its messages are the index's records; a legacy-layout rename moves the
//! replica's folder (same uniqueid, new place) before anything is copied. The user's databases
//! (`sub.db`, `seen.db`, ...), Sieve folder, quota roots, the server's `annotations.db` and the
//! mailbox list dump follow. Notes in the state remember where each mailbox, user and quota
//! root was on the replica, so a deletion finds what to remove after Cyrus forgot it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};
use crate::core::filter::Filter;
use crate::core::model::{ancestors, split, Entry, Kind, Side, Snapshot, State, StateRecord};
use crate::core::plan::Action;
use crate::endpoint::credentials::Auth;
use crate::endpoint::spec::EndpointSpec;
use crate::endpoint::Endpoint;
use crate::engine::executor::{Executor, Observer, Outcome, Problem};
use crate::mail::cyrus::capture::{self, Captured};
use crate::mail::cyrus::conf::CyrusConf;
use crate::mail::cyrus::index;
use crate::mail::cyrus::plan::{self as cyrus_plan, Files, Input, Unit};
use crate::mail::cyrus::spool::{Listed, MbPath, Roots, Seen, SpoolEndpoint, Tools};
use crate::mail::replicate::Passed;
use crate::mail::rolling::Narrator;
use crate::mail::synclog::{self, user_of_mailbox, Verb, Work};
use crate::mail::Expunge;
use crate::state::{pair_id, PairLock, StateDb};

/// Everything a Cyrus replication needs, resolved by whoever read the config.
#[derive(Debug, Clone)]
pub struct CyrusJob {
    pub conf: CyrusConf,
    pub tools: Tools,
    pub replica_name: String,
    pub replica: EndpointSpec,
    pub auth: Auth,
    pub expunge: Expunge,
    pub state_dir: PathBuf,
    pub connections: usize,
}

/// The metadata files of a mailbox, in the order they are written; `cyrus.index` last.
const METADATA: [(&str, &str); 4] = [
    ("cache", "cyrus.cache"),
    ("annotations", "cyrus.annotations"),
    ("header", "cyrus.header"),
    ("index", "cyrus.index"),
];

/// The replica path of the mailbox list dump and of the server's annotations.
pub const DUMP: &str = "conf/mailboxes.json";
pub const ANNOTATIONS: &str = "conf/annotations.db";

pub struct CyrusReplicator {
    pub job: CyrusJob,
    spool: SpoolEndpoint,
    replica: Box<dyn Endpoint>,
    db: StateDb,
    _lock: PairLock,
}

/// Files of the master by replica path, with their entries.
type Listing = Vec<(String, Entry)>;

/// A unit as read from the master, with what its files are.
struct Read {
    folder: String,
    prefix: String,
    exact: bool,
    owns_folder: bool,
    /// `None`: gone from the master.
    files: Option<(Listing, Listing)>,
}

fn workers(replica: &dyn Endpoint) -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4).max(replica.parallelism())
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Safety(format!("{what}: {e}"))
}

impl CyrusReplicator {
    /// Opens both ends, as the Maildir replicator does; the spool's config directory and
    /// partitions must be there (an unmounted spool is a safety stop, exit 4).
    pub fn open(job: CyrusJob) -> Result<CyrusReplicator> {
        let mailboxes_db = job.conf.configdirectory.join("mailboxes.db");
        if !mailboxes_db.is_file() {
            return Err(Error::Safety(format!(
                "{}: no mailbox list at {} (imapd.conf {}): an unmounted or wrong spool?",
                job.conf.configdirectory.display(),
                mailboxes_db.display(),
                job.conf.path.display()
            )));
        }
        for (name, folder) in &job.conf.partitions {
            if !folder.is_dir() {
                return Err(Error::Safety(format!("partition-{name} {} is missing (unmounted?)", folder.display())));
            }
        }
        let replica_spec = job.replica.clone().canonical();
        let master_url = format!("cyrus:{}", job.conf.path.display());
        let id = pair_id(&master_url, &replica_spec.url());
        let lock = PairLock::acquire(&job.state_dir, &id)?;
        let existed = job.state_dir.join("pairs").join(&id).exists();
        let tag = &id[..8];
        let replica = crate::mail::replicate::open_replica(&replica_spec, &job.auth, tag, job.connections, existed)?;
        let (db, _) = StateDb::open(&job.state_dir, &id, [&master_url, &replica_spec.url()], false)?;
        let spool = SpoolEndpoint::new(Roots::new(&job.conf), tag);
        Ok(CyrusReplicator { job, spool, replica, db, _lock: lock })
    }

    pub fn replica(&self) -> &dyn Endpoint {
        self.replica.as_ref()
    }

    pub fn spool(&self) -> &SpoolEndpoint {
        &self.spool
    }

    pub fn db(&self) -> &StateDb {
        &self.db
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush()
    }

    /// The master's mailbox list.
    pub fn mboxlist(&self) -> Result<(Vec<u8>, Vec<Listed>)> {
        self.job.tools.mboxlist().map_err(io_error("the mailbox list"))
    }

    /// Every user with a mailbox on the master (`-A`), and those the state knows.
    pub fn all_users(&self) -> Result<BTreeSet<String>> {
        let (_, listed) = self.mboxlist()?;
        let mut users: BTreeSet<String> =
            listed.iter().filter(|l| !l.is_tombstone()).filter_map(|l| user_of_mailbox(&l.name)).collect();
        for (key, _) in self.db.notes("u:")? {
            users.insert(key[2..].to_string());
        }
        Ok(users)
    }

    /// The mailboxes the state knows, by name: (replica folder, uniqueid).
    fn known_mailboxes(&self) -> Result<BTreeMap<String, (String, String)>> {
        Ok(self
            .db
            .notes("m:")?
            .into_iter()
            .map(|(key, value)| {
                let (folder, uniqueid) = value.split_once('\t').unwrap_or((value.as_str(), ""));
                (key[2..].to_string(), (folder.to_string(), uniqueid.to_string()))
            })
            .collect())
    }

    /// Replicates the work: per user, the mailboxes and files it names. With `repair`, the
    /// replica's folders are listed and any difference mended (-u, -m, -A).
    pub fn pass(&self, work: &Work, repair: bool, observer: &dyn Narrator) -> Result<Passed> {
        self.pass_until(work, repair, None, observer)
    }

    /// [`CyrusReplicator::pass`], cut at the next user once `cut` (the end of `-t`, and the
    /// live sync log) is reached: what was not reached is appended to the log again (its
    /// mailboxes as MAILBOX lines, its databases as a META line), for the next cycle.
    pub fn pass_until(
        &self,
        work: &Work,
        repair: bool,
        cut: Option<(std::time::Instant, &Path)>,
        observer: &dyn Narrator,
    ) -> Result<Passed> {
        let mut known = self.known_mailboxes()?;
        let mut names: BTreeSet<String> = work.mailboxes.iter().chain(&work.unmailboxes).cloned().collect();
        for (old, new) in &work.renames {
            names.insert(old.clone());
            names.insert(new.clone());
        }
        let whole: BTreeSet<&String> = work.users.iter().chain(&work.unusers).collect();
        let mut dump = None;
        if !whole.is_empty() || repair {
            let (bytes, listed) = self.mboxlist()?;
            if !listed.iter().any(|l| !l.is_tombstone()) && !known.is_empty() {
                return Err(Error::Safety(format!(
                    "Cyrus lists no mailbox at all (ctl_mboxlist -d, {}), but {} were replicated: nothing deleted on \
                     the replica (a replaced or broken mailboxes.db?)",
                    self.job.conf.path.display(),
                    known.len()
                )));
            }
            for l in listed.iter().filter(|l| !l.is_tombstone()) {
                if user_of_mailbox(&l.name).is_some_and(|u| whole.contains(&u)) {
                    names.insert(l.name.clone());
                }
            }
            dump = Some(bytes);
        }
        for name in known.keys() {
            if user_of_mailbox(name).is_some_and(|u| whole.contains(&u)) {
                names.insert(name.clone());
            }
        }
        let mut db_users: BTreeSet<String> = whole
            .iter()
            .map(|u| u.to_string())
            .chain(work.subs.iter().cloned())
            .chain(work.meta.iter().cloned())
            .collect();
        db_users.extend(work.sieve.iter().cloned());
        db_users.extend(work.seen.iter().cloned());
        // A Sieve upload logs the user's #sieve mailbox: the Sieve folder and dav.db changed too.
        for name in &names {
            if name.ends_with(".#sieve") {
                db_users.extend(user_of_mailbox(name));
            }
        }
        // A mailbox the state knows, that no line renames or deletes, whose folder's header
        // still names it with the uniqueid noted, is where it was: no mbpath process for it
        // (half of a one-delivery cycle). Every other name is asked of Cyrus.
        let moving: BTreeSet<&String> =
            work.renames.iter().flat_map(|(old, new)| [old, new]).chain(&work.unmailboxes).collect();
        let mut resolved = BTreeMap::new();
        let mut ask = Vec::new();
        for name in &names {
            let still = (!moving.contains(name) && !repair)
                .then(|| known.get(name))
                .flatten()
                .and_then(|(folder, uniqueid)| self.still_there(name, folder, uniqueid));
            match still {
                Some(path) => {
                    resolved.insert(name.clone(), path);
                }
                None => ask.push(name.clone()),
            }
        }
        if !ask.is_empty() {
            resolved.extend(self.job.tools.mbpath(&ask, false).map_err(io_error("mbpath"))?);
        }
        // A rename in the legacy layout moved the folder: the replica's folder is moved the
        // same way before anything is read, so no byte is sent again.
        let mut mailboxes_changed = false;
        let mut renamed = 0;
        for (old, new) in &work.renames {
            let (Some((from, _)), None, Some(path)) = (known.get(old), resolved.get(old), resolved.get(new)) else {
                continue;
            };
            let Some(to) = self.spool.roots().replica_path(&path.data, "data") else { continue };
            if to != *from && self.move_folder(from, &to, observer)? {
                renamed += 1;
                self.db.set_note(&format!("m:{old}"), None)?;
                known.remove(old);
                mailboxes_changed = true;
            }
        }
        // What live mailboxes and users hold now, whichever user's batch they are in: a name
        // gone whose folder is among these was renamed (in the UUID layout a rename keeps the
        // folder; a renamed user keeps its INBOX's uniqueid), not deleted.
        let db_list: Vec<String> = db_users.iter().filter(|u| !u.is_empty()).cloned().collect();
        let users_found = if db_list.is_empty() {
            BTreeMap::new()
        } else {
            self.job.tools.mbpath(&db_list, true).map_err(io_error("mbpath -u"))?
        };
        let claimed = Claimed {
            folders: resolved.values().filter_map(|p| self.spool.roots().replica_path(&p.data, "data")).collect(),
            places: users_found.values().flat_map(|p| self.places(p).into_iter().flatten()).collect(),
        };
        // By user ("" for mailboxes of no user: shared folders), so each user is one batch.
        let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in &names {
            by_user.entry(user_of_mailbox(name).unwrap_or_default()).or_default().push(name.clone());
        }
        for user in &db_users {
            by_user.entry(user.clone()).or_default();
        }
        let mut passed = Passed::default();
        passed.outcome.tally.renamed += renamed;
        let mut users = by_user.into_iter();
        while let Some((user, names)) = users.next() {
            if let Some((_, log)) = cut.filter(|(deadline, _)| std::time::Instant::now() > *deadline) {
                let mut queued = 0;
                for (user, names) in std::iter::once((user, names)).chain(users.by_ref()) {
                    for name in &names {
                        synclog::append(log, Verb::Mailbox, &[name]).map_err(io_error("the sync log"))?;
                        queued += 1;
                    }
                    if db_users.contains(&user) {
                        synclog::append(log, Verb::Meta, &[&user]).map_err(io_error("the sync log"))?;
                    }
                }
                crate::mail::cyrus::give_to_owner_of(&self.job.conf.configdirectory, log)
                    .map_err(io_error("the sync log"))?;
                observer.note(&format!("cycle timeout: {queued} mailboxes queued again for the next cycle"));
                break;
            }
            if observer.should_stop() {
                passed.outcome.interrupted = true;
                break;
            }
            let with_dbs = db_users.contains(&user);
            for round in 0..3 {
                let held = HoldProblems { inner: observer, held: std::sync::Mutex::new(Vec::new()) };
                let dbs = with_dbs.then(|| users_found.get(&user));
                // A path that was not as the state said (a run killed mid-copy) is looked at again
                // with the replica listed.
                let list_replica = repair || round > 0;
                let (outcome, changed) =
                    self.user(&user, &names, &resolved, &known, dbs, &claimed, list_replica, &held)?;
                mailboxes_changed |= changed;
                let again = round < 2 && !outcome.changed.is_empty() && !outcome.interrupted;
                if !again {
                    for problem in held.held.into_inner().unwrap_or_default() {
                        observer.problem(&problem);
                    }
                    passed.add(outcome, names.len());
                    break;
                }
                passed.add(Outcome { problems: Vec::new(), changed: Vec::new(), ..outcome }, 0);
            }
        }
        // The server's files: quota roots, annotations, the mailbox list.
        let mut units = Vec::new();
        // A user created, renamed or deleted has its quota root too (deleting a user logs no QUOTA).
        let roots: BTreeSet<String> =
            work.quotas.iter().cloned().chain(whole.iter().map(|u| crate::mail::cyrus::spool::inbox_name(u))).collect();
        for root in &roots {
            units.push(self.quota(root)?);
        }
        let touched_mailboxes = !names.is_empty();
        if touched_mailboxes || !work.annotations.is_empty() || repair {
            units.push(self.server_file(&self.job.conf.configdirectory.join("annotations.db"), ANNOTATIONS)?);
        }
        if mailboxes_changed || dump.is_some() {
            let bytes = match dump {
                Some(bytes) => bytes,
                None => self.mboxlist()?.0,
            };
            if let Some(unit) = self.dump_unit(bytes)? {
                units.push(unit);
            }
        }
        let outcome = self.apply(units, repair, observer)?;
        passed.add(outcome, 0);
        Ok(passed)
    }

    /// One user's mailboxes (and databases): read, planned, applied. Returns the outcome and
    /// whether a mailbox appeared, moved or went (the dump is then written again).
    #[allow(clippy::too_many_arguments)]
    fn user(
        &self,
        user: &str,
        names: &[String],
        resolved: &BTreeMap<String, MbPath>,
        known: &BTreeMap<String, (String, String)>,
        dbs: Option<Option<&MbPath>>,
        claimed: &Claimed,
        repair: bool,
        observer: &dyn Observer,
    ) -> Result<(Outcome, bool)> {
        let mut units = Vec::new();
        let mut problems = Vec::new();
        let mut changed = false;
        let mut appended = Vec::new();
        let mut caches = Vec::new();
        // Live mailboxes first: their folders, and the uniqueid each header holds.
        let mut live: BTreeMap<&str, (String, String)> = BTreeMap::new();
        for name in names {
            let Some(path) = resolved.get(name) else { continue };
            match self.mailbox(name, path, repair) {
                Ok((unit, uniqueid, append)) => {
                    live.insert(name, (unit.folder.clone(), uniqueid));
                    appended.extend(append);
                    caches.push(unit.folder.clone());
                    units.push(unit);
                }
                Err(MailboxError::Problem(message)) => {
                    problems.push(Problem { path: name.clone(), message });
                }
            }
        }
        for name in names {
            if resolved.contains_key(name) {
                continue;
            }
            let Some((folder, _)) = known.get(name) else { continue };
            changed = true;
            self.db.set_note(&format!("m:{name}"), None)?;
            // Its folder now holds another name (a rename in the UUID layout, a delete that
            // renamed it to DELETED.*): nothing to remove.
            let held_elsewhere = claimed.folders.contains(folder)
                || known.iter().any(|(other, (f, _))| other != name && f == folder && !names.contains(other));
            if held_elsewhere {
                continue;
            }
            units.push(Read {
                folder: folder.clone(),
                prefix: format!("{folder}/"),
                exact: false,
                owns_folder: true,
                files: None,
            });
        }
        for (name, (folder, uniqueid)) in &live {
            let note = format!("{folder}\t{uniqueid}");
            if known.get(*name).map(|(f, u)| format!("{f}\t{u}")) != Some(note.clone()) {
                changed = true;
                self.db.set_note(&format!("m:{name}"), Some(&note))?;
            }
        }
        if let (Some(found), false) = (dbs, user.is_empty()) {
            units.extend(self.user_files(user, found, claimed)?);
        }
        // The caches read this round: which file (inode) each mailbox's cache on the replica
        // is now a copy of, once the record says it was sent.
        let sources: Vec<(String, Option<Seen>)> =
            caches.iter().map(|folder| (folder.clone(), self.spool.seen(&format!("{folder}/cyrus.cache")))).collect();
        let mut outcome = self.apply(units, repair, observer)?;
        for action in appended {
            outcome.tally.add(&action);
            observer.applied(&action);
        }
        for (folder, held) in sources {
            self.note_cache(&folder, held)?;
        }
        for problem in problems {
            observer.problem(&problem);
            outcome.problems.push(problem);
        }
        Ok((outcome, changed))
    }

    /// Notes which file the replica's `cyrus.cache` of `folder` now copies: the master's file
    /// as read (`held`: its entry and (device, inode)) when the record says it was sent;
    /// forgotten otherwise (the next change then sends it whole).
    fn note_cache(&self, folder: &str, held: Option<Seen>) -> Result<()> {
        let key = format!("c:{folder}");
        let Some((entry, (dev, ino))) = held else { return Ok(()) };
        let path = format!("{folder}/cyrus.cache");
        let (state, _) = self.db.load_folders([folder])?;
        let sent = state.get(&path).is_some_and(|r| r.source == entry.observed());
        self.db.set_note(&key, sent.then(|| format!("{dev}:{ino}")).as_deref())
    }

    /// Where mailbox `name` is, from its note (replica `folder`, `uniqueid`), when the header
    /// in that folder still says so; `None`: ask Cyrus.
    fn still_there(&self, name: &str, folder: &str, uniqueid: &str) -> Option<MbPath> {
        let (prefix, root, rel) = self.spool.roots().master_of(folder)?;
        let partition = prefix.strip_prefix("data/")?;
        let meta = self.job.conf.meta_partition_of(partition, "header")?.join(rel);
        let header = index::header(&std::fs::read(meta.join("cyrus.header")).ok()?).ok()?;
        if header.name != name || header.uniqueid != uniqueid {
            return None;
        }
        let data = root.join(rel);
        let archive = self.job.conf.archive_partitions.get(partition).map_or_else(|| data.clone(), |a| a.join(rel));
        Some(MbPath { name: name.to_string(), meta, archive, data, user_files: BTreeMap::new(), sieve: None })
    }

    /// Moves the replica's folder `from` to `to` (a legacy-layout rename) when `to` is free.
    fn move_folder(&self, from: &str, to: &str, observer: &dyn Observer) -> Result<bool> {
        let (state, _) = self.db.load_folders([split(to).0, split(from).0])?;
        if state.get(to).is_some() || state.get(from).is_none() {
            return Ok(false);
        }
        let (on_the_way, _) = self.db.load_folders(ancestors(to).map(|f| split(f).0))?;
        let mut writer = self.db.writer();
        for folder in ancestors(to).collect::<Vec<_>>().into_iter().rev() {
            if on_the_way.get(folder).is_some() {
                continue;
            }
            if self.replica.mkdir(folder).is_err() {
                return Ok(false);
            }
            writer.put(folder, &StateRecord::dir())?;
        }
        writer.commit()?;
        let dir = Entry::dir();
        if self.replica.rename(from, to, &dir).is_err() {
            return Ok(false);
        }
        self.db.move_folder(from, to, &StateRecord::dir())?;
        let action = Action::Rename {
            side: Side::Destination,
            from: from.into(),
            to: to.into(),
            entry: Box::new(dir),
            counterpart: None,
        };
        observer.applied(&action);
        Ok(true)
    }

    /// A live mailbox: its metadata captured under lock, its messages from the index.
    fn mailbox(
        &self,
        name: &str,
        path: &MbPath,
        repair: bool,
    ) -> std::result::Result<(Read, String, Option<Action>), MailboxError> {
        let roots = self.spool.roots();
        let folder = roots.replica_path(&path.data, "data").filter(|f| f.starts_with("data/")).ok_or_else(|| {
            MailboxError::Problem(format!("{}: not below any partition of imapd.conf", path.data.display()))
        })?;
        let (_, partition_root, rel) = roots.master_of(&folder).expect("just mapped");
        let partition = folder.split('/').nth(1).unwrap_or_default().to_string();
        let meta_file = |kind: &str, file: &str| -> PathBuf {
            self.job.conf.meta_partition_of(&partition, kind).unwrap_or(partition_root).join(rel).join(file)
        };
        let paths: Vec<PathBuf> = METADATA.iter().map(|(kind, file)| meta_file(kind, file)).collect();
        let (state, _) = self
            .db
            .load_folders([folder.as_str(), split(&folder).0])
            .map_err(|e| MailboxError::Problem(e.to_string()))?;
        let index_path = &paths[3];
        let others = &paths[..3];
        // The files whose size and mtime the state has are only stat'ed (a flag change leaves
        // a large cyrus.cache as it was): the lock is held no longer than needed.
        let known = |path: &Path, entry: &Entry| -> bool {
            // The header is always read: it says which mailbox (uniqueid) the folder holds.
            let Some(file) = path.file_name().and_then(|n| n.to_str()).filter(|f| *f != "cyrus.header") else {
                return false;
            };
            !repair && state.get(&format!("{folder}/{file}")).is_some_and(|r| r.source == entry.observed())
        };
        let captured = capture::together(index_path, others, &known)
            .map_err(|e| MailboxError::Problem(format!("reading its metadata: {e}")))?;
        // Cyrus lists it, but there is no index: an unmounted partition (or a delete that came
        // between mbpath and this read). Said, never taken for a deletion.
        let Some((index_bytes, others)) = captured else {
            return Err(MailboxError::Problem(format!(
                "Cyrus lists it, but {} is missing (an unmounted partition?); left as it is on the replica",
                index_path.display()
            )));
        };
        let header_bytes = others[2].as_ref().ok_or_else(|| {
            MailboxError::Problem(format!("{}: no cyrus.header beside cyrus.index", path.data.display()))
        })?;
        let header = index::header(&header_bytes.bytes).map_err(|e| MailboxError::Problem(e.to_string()))?;
        let records = index::records(&index_bytes.bytes).map_err(|e| MailboxError::Problem(e.to_string()))?;
        let mut metadata = Vec::new();
        let all: Vec<(&str, Option<&Captured>)> = METADATA
            .iter()
            .zip(others.iter().map(Option::as_ref).chain(std::iter::once(Some(&index_bytes))))
            .map(|((_, file), c)| (*file, c))
            .collect();
        let mut appended = None;
        for (file, captured) in all {
            let Some(captured) = captured else { continue };
            let replica_path = format!("{folder}/{file}");
            if file == "cyrus.cache" && !repair && !captured.unread {
                appended = self.append_cache(&folder, &replica_path, captured, &state)?;
            }
            self.spool.hold(&replica_path, captured.clone());
            metadata.push((replica_path, captured.entry));
        }
        let mut messages = Vec::new();
        for record in records.iter().filter(|r| r.has_file()) {
            // An archived message lives on the archive partition; the replica keeps it in the
            // mailbox's data folder, where a restore with no archive partition finds it.
            let file = record.file_name();
            let replica_path = format!("{folder}/{file}");
            if !repair {
                if let Some(r) = state.get(&replica_path).filter(|r| r.kind == Kind::File) {
                    messages.push((replica_path, Entry::file(r.source.size, r.source.mtime)));
                    continue;
                }
            }
            let master = if record.archived() { path.archive.join(&file) } else { path.data.join(&file) };
            match std::fs::symlink_metadata(&master) {
                Ok(meta) => {
                    let Some(entry) = crate::endpoint::local::entry_of(&meta) else { continue };
                    if record.archived() && path.archive != path.data {
                        self.spool.redirect(&replica_path, master);
                    }
                    messages.push((replica_path, entry));
                }
                // Expired since the index was read: the next round reads the index again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(MailboxError::Problem(format!("{}: {e}", master.display()))),
            }
        }
        let _ = name;
        Ok((
            Read {
                prefix: format!("{folder}/"),
                folder,
                exact: false,
                owns_folder: true,
                files: Some((messages, metadata)),
            },
            header.uniqueid,
            appended,
        ))
    }

    /// Sends only what Cyrus appended to a mailbox's `cyrus.cache` since the last send, when
    /// it is still the file sent then (same inode: Cyrus appends to it in place and replaces
    /// it, by rename, only when it rewrites it) and the replica can append. Records it at once
    /// (the replica synced first), so the plan then finds nothing to copy. `None`: the plan
    /// copies it whole.
    fn append_cache(
        &self,
        folder: &str,
        path: &str,
        cache: &Captured,
        state: &State,
    ) -> std::result::Result<Option<Action>, MailboxError> {
        let problem = |e: Error| MailboxError::Problem(e.to_string());
        let id = format!("{}:{}", cache.id.0, cache.id.1);
        let note = format!("c:{folder}");
        let Some(record) = state.get(path).filter(|r| r.kind == Kind::File) else { return Ok(None) };
        let sent = record.source.size;
        if sent >= cache.entry.size || self.db.note(&note).map_err(problem)?.as_deref() != Some(id.as_str()) {
            return Ok(None);
        }
        let tail = &cache.bytes[sent as usize..];
        let expect = Entry::file(record.destination.size, record.destination.mtime);
        let Ok(now) = self.replica.append(path, &mut &*tail, &expect, &cache.entry) else { return Ok(None) };
        self.replica.flush().map_err(|e| MailboxError::Problem(format!("{path}: {e}")))?;
        let mut writer = self.db.writer();
        writer.put(path, &StateRecord::synced(&cache.entry, &now, None)).map_err(problem)?;
        writer.commit().map_err(problem)?;
        let shown = Entry { size: tail.len() as u64, ..cache.entry };
        Ok(Some(Action::Copy { from: Side::Source, path: path.to_string(), entry: shown, replaces: None }))
    }

    /// Where a user's databases are on the replica, as its note holds it: `dir:FOLDER` (the
    /// UUID layout: the user's own folder, `.../<uniqueid>/sub.db`), or `files:PATH\tPATH...`
    /// (the legacy layout: `conf/user/j/john.doe.sub` beside other users' files, so each file is
    /// its own unit: `john.` is a prefix of `john.doe.`); and its Sieve folder.
    fn places(&self, path: &MbPath) -> [Option<String>; 2] {
        let roots = self.spool.roots();
        let files: Vec<(&String, String)> =
            path.user_files.iter().filter_map(|(kind, f)| Some((kind, roots.replica_path(f, "conf")?))).collect();
        let own_folder = files.iter().all(|(kind, p)| split(p).1 == format!("{kind}.db"));
        let dbs = match files.first() {
            None => None,
            Some((_, first)) if own_folder => Some(format!("dir:{}", split(first).0)),
            Some(_) => Some(format!("files:{}", files.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>().join("\t"))),
        };
        let sieve =
            path.sieve.as_ref().and_then(|s| roots.replica_path(s, "sieve")).filter(|f| f.starts_with("sieve/"));
        [dbs, sieve]
    }

    /// The units of a user's databases at `place` (see [`CyrusReplicator::places`]), each gone
    /// (`files` None) or with the files given.
    fn db_units(place: &str, files: Option<&[(String, Entry)]>) -> Vec<Read> {
        if let Some(folder) = place.strip_prefix("dir:") {
            return vec![Read {
                folder: folder.to_string(),
                prefix: format!("{folder}/"),
                exact: false,
                owns_folder: true,
                files: files.map(|f| (Vec::new(), f.to_vec())),
            }];
        }
        let paths = place.strip_prefix("files:").unwrap_or(place).split('\t').filter(|p| !p.is_empty());
        paths
            .map(|path| Read {
                folder: split(path).0.to_string(),
                prefix: path.to_string(),
                exact: true,
                owns_folder: false,
                files: files.map(|f| (Vec::new(), f.iter().filter(|(p, _)| p == path).cloned().collect())),
            })
            .collect()
    }

    /// A user's databases and Sieve folder, live (`found`) or gone: then what the notes say
    /// it had goes, unless a live user holds it now (a renamed user).
    fn user_files(&self, user: &str, found: Option<&MbPath>, claimed: &Claimed) -> Result<Vec<Read>> {
        let mut units = Vec::new();
        let note_key = format!("u:{user}");
        let sieve_key = format!("s:{user}");
        let Some(path) = found else {
            for key in [&note_key, &sieve_key] {
                let Some(note) = self.db.note(key)? else { continue };
                self.db.set_note(key, None)?;
                if claimed.places.contains(&note) {
                    continue;
                }
                if key == &sieve_key {
                    units.push(Read {
                        folder: note.clone(),
                        prefix: format!("{note}/"),
                        exact: false,
                        owns_folder: true,
                        files: None,
                    });
                } else {
                    units.extend(Self::db_units(&note, None));
                }
            }
            return Ok(units);
        };
        let [dbs, sieve_place] = self.places(path);
        if let Some(place) = dbs {
            let mut files = Vec::new();
            for file in path.user_files.values() {
                let Some(replica_path) = self.spool.roots().replica_path(file, "conf") else { continue };
                if let Some(captured) =
                    capture::one(file, &self.known(&replica_path)?).map_err(io_error("a user database"))?
                {
                    self.spool.hold(&replica_path, captured.clone());
                    files.push((replica_path, captured.entry));
                }
            }
            // A place the user had before and no longer has (the layout changed) goes.
            if let Some(old) = self.db.note(&note_key)?.filter(|old| *old != place && !claimed.places.contains(old)) {
                units.extend(Self::db_units(&old, None));
            }
            self.db.set_note(&note_key, Some(&place))?;
            units.extend(Self::db_units(&place, Some(&files)));
        }
        if let (Some(folder), Some(sieve)) = (sieve_place, &path.sieve) {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(sieve).into_iter().flatten().flatten() {
                let Ok(name) = entry.file_name().into_string() else { continue };
                // Not followed: a link is carried as what it says (below).
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_file() {
                    let mut e = crate::endpoint::local::entry_of(&meta).expect("a file");
                    e.mode = None;
                    files.push((format!("{folder}/{name}"), e));
                } else if meta.file_type().is_symlink() {
                    // `defaultbc -> main.bc` says which script runs: carried as
                    // `defaultbc.link` holding the target (no replica needs to hold links); a
                    // restore makes the link again.
                    let Some(link) = sieve_link(&entry.path(), &meta) else { continue };
                    let path = format!("{folder}/{name}{LINK}");
                    self.spool.hold(&path, link.clone());
                    files.push((path, link.entry));
                }
            }
            if sieve.is_dir() {
                self.db.set_note(&sieve_key, Some(&folder))?;
                units.push(Read {
                    prefix: format!("{folder}/"),
                    folder,
                    exact: false,
                    owns_folder: true,
                    files: Some((Vec::new(), files)),
                });
            }
        }
        Ok(units)
    }

    /// A quota root's file (`{configdirectory}/quota/<h>/<root>`), found where Cyrus keeps it.
    fn quota(&self, root: &str) -> Result<Read> {
        let top = self.job.conf.configdirectory.join("quota");
        let note_key = format!("q:{root}");
        if !root.contains('/') && !root.is_empty() {
            for hashed in std::fs::read_dir(&top).into_iter().flatten().flatten() {
                let file = hashed.path().join(root);
                if let Some(replica_path) = self.spool.roots().replica_path(&file, "conf") {
                    if let Some(captured) =
                        capture::one(&file, &self.known(&replica_path)?).map_err(io_error("a quota file"))?
                    {
                        self.spool.hold(&replica_path, captured.clone());
                        self.db.set_note(&note_key, Some(&replica_path))?;
                        let folder = split(&replica_path).0.to_string();
                        return Ok(Read {
                            folder,
                            prefix: replica_path.clone(),
                            exact: true,
                            owns_folder: false,
                            files: Some((Vec::new(), vec![(replica_path, captured.entry)])),
                        });
                    }
                }
            }
        }
        let gone = self.db.note(&note_key)?.unwrap_or_else(|| format!("conf/quota/none/{root}"));
        self.db.set_note(&note_key, None)?;
        Ok(Read { folder: split(&gone).0.to_string(), prefix: gone, exact: true, owns_folder: false, files: None })
    }

    /// A file of the config directory, read under its own lock when it changed.
    fn server_file(&self, file: &Path, replica_path: &str) -> Result<Read> {
        let folder = split(replica_path).0.to_string();
        let captured = capture::one(file, &self.known(replica_path)?).map_err(io_error(replica_path))?;
        let files = captured.map(|captured| {
            self.spool.hold(replica_path, captured.clone());
            (Vec::new(), vec![(replica_path.to_string(), captured.entry)])
        });
        Ok(Read {
            folder,
            prefix: replica_path.to_string(),
            exact: true,
            owns_folder: false,
            files: files.or(Some((Vec::new(), Vec::new()))),
        })
    }

    /// Whether the state has the master's file at `replica_path` with this size and mtime.
    fn known(&self, replica_path: &str) -> Result<impl Fn(&Path, &Entry) -> bool> {
        let (state, _) = self.db.load_folders([split(replica_path).0])?;
        let recorded = state.get(replica_path).map(|r| r.source);
        Ok(move |_: &Path, entry: &Entry| recorded == Some(entry.observed()))
    }

    /// The mailbox list dump, when it is not the one the replica has.
    fn dump_unit(&self, bytes: Vec<u8>) -> Result<Option<Read>> {
        let hash = blake3::hash(&bytes).to_hex().to_string();
        if self.db.note("dump")?.as_deref() == Some(hash.as_str()) {
            return Ok(None);
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let entry = Entry::file(bytes.len() as u64, now.as_nanos() as i64);
        self.spool.hold(DUMP, Captured { entry, bytes: bytes.into(), unread: false, id: (0, 0) });
        self.db.set_note("dump", Some(&hash))?;
        Ok(Some(Read {
            folder: "conf".into(),
            prefix: DUMP.into(),
            exact: true,
            owns_folder: false,
            files: Some((Vec::new(), vec![(DUMP.to_string(), entry)])),
        }))
    }

    /// Plans and applies units, the replica listed first when repairing.
    fn apply(&self, units: Vec<Read>, repair: bool, observer: &dyn Observer) -> Result<Outcome> {
        if units.is_empty() {
            self.spool.release();
            return Ok(Outcome::default());
        }
        let mut keys: BTreeSet<&str> = BTreeSet::new();
        for unit in &units {
            keys.insert(&unit.folder);
            keys.extend(ancestors(&unit.folder));
            keys.insert(split(&unit.folder).0);
            keys.insert("");
        }
        let (state, _) = self.db.load_folders(keys.iter().copied())?;
        let filter = Filter::new(std::iter::empty::<(&str, &str)>(), true)?;
        let listings: Vec<Option<Snapshot>> = units
            .iter()
            .map(|unit| {
                if !repair {
                    return Ok(None);
                }
                let scan = self
                    .replica
                    .scan_part(&filter, std::slice::from_ref(&unit.folder), &[])
                    .map_err(|e| Error::Safety(format!("the replica cannot be listed: {e}")))?;
                Ok(Some(scan.snapshot))
            })
            .collect::<Result<_>>()?;
        let plan_units: Vec<Unit> = units
            .iter()
            .zip(&listings)
            .map(|(unit, listing)| Unit {
                folder: &unit.folder,
                prefix: &unit.prefix,
                exact: unit.exact,
                owns_folder: unit.owns_folder,
                master: unit.files.as_ref().map(|(messages, metadata)| Files {
                    messages: messages.iter().map(|(p, e)| (p.as_str(), *e)).collect(),
                    metadata: metadata.iter().map(|(p, e)| (p.as_str(), *e)).collect(),
                }),
                replica: listing.as_ref(),
            })
            .collect();
        let plan = cyrus_plan::plan(&Input { units: plan_units, state: &state, expunge: self.job.expunge });
        let executor = Executor {
            endpoints: [&self.spool, self.replica.as_ref()],
            observer,
            workers: workers(self.replica.as_ref()),
            durable: true,
            versions: None,
        };
        let outcome = executor.apply(&plan, &self.db);
        self.spool.release();
        outcome
    }
}

/// The suffix of a replica file standing for a symbolic link of a Sieve folder.
pub const LINK: &str = ".link";

/// A Sieve folder's link as a small file holding its target: only a target in the same folder
/// (a plain file name) is carried.
fn sieve_link(path: &Path, meta: &std::fs::Metadata) -> Option<Captured> {
    let target = std::fs::read_link(path).ok()?;
    let target = target.to_str()?;
    if target.is_empty() || target.contains('/') || target.starts_with('.') {
        return None;
    }
    let mtime = filetime::FileTime::from_last_modification_time(meta);
    let entry = Entry::file(target.len() as u64, mtime.unix_seconds() * 1_000_000_000 + i64::from(mtime.nanoseconds()));
    Some(Captured { entry, bytes: target.as_bytes().into(), unread: false, id: (0, 0) })
}

/// What live mailboxes and users hold in this pass: replica folders of mailboxes, and places
/// of users' databases and Sieve folders (as their notes are written).
struct Claimed {
    folders: BTreeSet<String>,
    places: BTreeSet<String>,
}

/// Why a mailbox could not be read.
enum MailboxError {
    Problem(String),
}

/// Holds problems until the round is known to be the last (as the Maildir replicator does).
struct HoldProblems<'a> {
    inner: &'a dyn Observer,
    held: std::sync::Mutex<Vec<Problem>>,
}

impl Observer for HoldProblems<'_> {
    fn applied(&self, action: &Action) {
        self.inner.applied(action);
    }

    fn problem(&self, problem: &Problem) {
        self.held.lock().expect("not poisoned").push(problem.clone());
    }

    fn should_stop(&self) -> bool {
        self.inner.should_stop()
    }
}

/// The state's records below `folder` as (path, record), for a restore.
pub fn records_in(db: &StateDb, folder: &str) -> Result<State> {
    Ok(db.load_folders([folder])?.0)
}

impl crate::mail::rolling::Cycles for CyrusReplicator {
    fn run_cycle(
        &self,
        lines: &[crate::mail::synclog::LogLine],
        rolling: Option<&crate::mail::rolling::Rolling>,
        narrator: &dyn crate::mail::rolling::Narrator,
    ) -> Result<Passed> {
        let work = crate::mail::synclog::merge(lines);
        let cut = rolling.map(|r| (std::time::Instant::now() + r.timeout, r.log.as_path()));
        self.pass_until(&work, false, cut, narrator)
    }
}
