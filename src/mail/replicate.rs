//! One replication pass: some mailboxes of one user, from the master store to the replica.
//!
//! The stages are the pair engine's, with the mail planner in the middle: list the named
//! mailboxes on the master (and, in a repair pass, on the replica), read their state by key,
//! plan, and apply through the executor, which compares before it mutates and commits a record
//! per action that succeeded. A message that vanished between the listing and its copy (a flag
//! changed, Dovecot moved it to cur/) is looked up again by its unique name on a second round,
//! not reported.

use std::path::{Path, PathBuf};

use regex::RegexSet;

use crate::core::error::{Error, Result};
use crate::core::filter::Filter;
use std::collections::HashSet;

use crate::core::model::{join, parent, split, Entry, Kind, Side, Snapshot, SortedMap, StateRecord};
use crate::core::plan::Action;
use crate::core::plan::Plan;
use crate::core::plan::{Mode, PlanOptions};
use crate::endpoint::credentials::Auth;
use crate::endpoint::local::LocalEndpoint;
use crate::endpoint::spec::{self, EndpointSpec};
use crate::endpoint::{Endpoint, ErrorKind};
use crate::engine::executor::{Executor, Observer, Outcome};
use crate::engine::job::Job;
use crate::engine::sync::{sync, Reporter};
use crate::mail::colon::ColonMap;
use crate::mail::maildir::{classify, FileKind};
use crate::mail::maildir::{uidvalidity, unique_name};
use crate::mail::moved::{renamed, Gone, New};
use crate::mail::names::{Layout, Mailbox};
use crate::mail::plan::{self as mail_plan, MailPlanInput, MailboxView};
use crate::mail::Expunge;
use crate::state::{pair_id, PairLock, StateDb};

/// Everything a mail replication needs, resolved by whoever read the config.
#[derive(Debug, Clone)]
pub struct MailJob {
    /// The master: the store's root folder.
    pub store: PathBuf,
    pub layout: Layout,
    /// The replica's name in the config (or the -S value), for messages.
    pub replica_name: String,
    pub replica: EndpointSpec,
    pub auth: Auth,
    /// Written in place of ':' in message names on a replica that cannot hold it.
    pub colon: Option<char>,
    pub expunge: Expunge,
    /// Regexes on file names not worth replicating (Dovecot's caches).
    pub ignore: Vec<String>,
    pub state_dir: PathBuf,
    pub connections: usize,
}

/// What a pass did, added up over its users.
#[derive(Debug, Default)]
pub struct Passed {
    pub outcome: Outcome,
    pub mailboxes: usize,
}

impl Passed {
    pub fn add(&mut self, other: Outcome, mailboxes: usize) {
        let t = &mut self.outcome.tally;
        t.copied += other.tally.copied;
        t.bytes += other.tally.bytes;
        t.deleted += other.tally.deleted;
        t.renamed += other.tally.renamed;
        t.folders_created += other.tally.folders_created;
        self.outcome.problems.extend(other.problems);
        self.outcome.interrupted |= other.interrupted;
        self.mailboxes += mailboxes;
    }
}

/// An open replication: the store, the replica, the state, and the lock that keeps a second
/// `mail` run on the same (store, replica) out (exit 5).
pub struct Replicator {
    pub job: MailJob,
    master: LocalEndpoint,
    replica: Box<dyn Endpoint>,
    db: StateDb,
    ignore: RegexSet,
    /// The store's root, canonical.
    store: PathBuf,
    _lock: PairLock,
}

/// Copies run on this many threads at most.
fn workers(replica: &dyn Endpoint) -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4).max(replica.parallelism())
}

impl Replicator {
    /// Opens both ends. A missing store is a safety stop (exit 4); another run on the same pair
    /// is exit 5; an unreachable replica exit 6. A missing replica root is created on the first
    /// run only (no state yet): later, it is an unmounted drive, and a safety stop.
    pub fn open(job: MailJob) -> Result<Replicator> {
        let store = job.store.canonicalize().map_err(|e| {
            Error::Safety(format!("the mail store {} is missing or unreadable: {e}", job.store.display()))
        })?;
        if !store.is_dir() {
            return Err(Error::Safety(format!("the mail store {} is not a folder", store.display())));
        }
        let replica_spec = job.replica.clone().canonical();
        let store_url = format!("mail:{}", store.display());
        let id = pair_id(&store_url, &replica_spec.url());
        let lock = PairLock::acquire(&job.state_dir, &id)?;
        let existed = job.state_dir.join("pairs").join(&id).exists();
        let tag = &id[..8];
        let replica = open_replica(&replica_spec, &job.auth, tag, job.connections, existed)?;
        let replica: Box<dyn Endpoint> = match job.colon {
            Some(sep) => Box::new(ColonMap::new(replica, sep)),
            None => replica,
        };
        let (db, _) = StateDb::open(&job.state_dir, &id, [&store_url, &replica_spec.url()], false)?;
        let ignore = RegexSet::new(&job.ignore).map_err(|e| Error::Usage(format!("mail ignore list: {e}")))?;
        let master = LocalEndpoint::new(store.clone(), tag);
        Ok(Replicator { job, master, replica, db, ignore, store, _lock: lock })
    }

    pub fn store(&self) -> &Path {
        &self.store
    }

    /// The master and the replica, for a restore.
    pub(crate) fn ends(&self) -> (&LocalEndpoint, &dyn Endpoint) {
        (&self.master, self.replica.as_ref())
    }

    /// File names not worth replicating.
    pub(crate) fn ignore(&self) -> &RegexSet {
        &self.ignore
    }

    /// The mailboxes of `user` the state knows: those replicated before, present or not on the
    /// master now (so that a deleted folder is seen as such).
    pub fn recorded_mailboxes(&self, user: &str) -> Result<Vec<Mailbox>> {
        let root = self.job.layout.user_root(user).map_err(|e| Error::Usage(e.to_string()))?;
        let (state, _) = self.db.load_folders([root.as_str()])?;
        let mut found = Vec::new();
        if state.iter().next().is_some() {
            found.push(
                self.job.layout.mailbox(&self.job.layout.name(user, None)).map_err(|e| Error::Usage(e.to_string()))?,
            );
        }
        for (path, record) in state.iter() {
            let name = split(path).1;
            if record.kind == Kind::Dir && name.len() > 1 && name.starts_with('.') {
                if let Ok(mailbox) = self.job.layout.mailbox(&self.job.layout.name(user, Some(&name[1..]))) {
                    found.push(mailbox);
                }
            }
        }
        Ok(found)
    }

    /// Replicates these mailboxes of one user. With `repair`, the replica is listed too and
    /// any difference from the state is mended; without, the state is trusted for the replica.
    pub fn user(&self, mailboxes: &[Mailbox], repair: bool, observer: &dyn Observer) -> Result<Outcome> {
        let mut total = Passed::default();
        // Up to two more rounds, only for what vanished between listing and copying.
        for round in 0..3 {
            let held = HoldProblems { inner: observer, held: std::sync::Mutex::new(Vec::new()) };
            // A path that was not as the state said (a run killed between an action and its
            // record, a message moved meanwhile) is looked at again with the replica listed.
            let outcome = self.round(mailboxes, repair || round > 0, &held)?;
            let again = round < 2 && !outcome.changed.is_empty() && !outcome.interrupted;
            if !again {
                for problem in held.held.into_inner().unwrap_or_default() {
                    observer.problem(&problem);
                }
                total.add(outcome, mailboxes.len());
                break;
            }
            // The next round looks again: this one's problems were only "it moved".
            total.add(Outcome { problems: Vec::new(), changed: Vec::new(), ..outcome }, 0);
        }
        Ok(total.outcome)
    }

    fn round(&self, mailboxes: &[Mailbox], repair: bool, observer: &dyn Observer) -> Result<Outcome> {
        let folders: Vec<&str> = mailboxes.iter().map(|m| m.folder.as_str()).collect();
        let shallow: Vec<String> =
            folders.iter().flat_map(|f| [f.to_string(), format!("{f}/cur"), format!("{f}/new")]).collect();
        let filter = Filter::new(std::iter::empty::<(&str, &str)>(), true)?;
        let listed = |endpoint: &dyn Endpoint, side: &str| {
            endpoint
                .scan_part(&filter, &shallow, &[])
                .map_err(|e| Error::Safety(format!("the {side} cannot be listed: {e}")))
        };
        // The state of each mailbox folder, its cur/ and new/, and the folders on the way.
        let mut keys: Vec<String> = shallow.clone();
        keys.push(String::new());
        for folder in &folders {
            keys.extend(crate::core::model::ancestors(folder).map(str::to_string));
            keys.push(parent(folder).unwrap_or("").to_string());
        }
        let (state, bad) = self.db.load_folders(keys.iter().map(String::as_str))?;
        if bad > 0 {
            observer.problem(&crate::engine::executor::Problem {
                path: folders.join(", "),
                message: format!("{bad} unreadable state records dropped; compared afresh"),
            });
        }
        let master = if repair {
            listed(&self.master, "mail store")?.snapshot
        } else {
            // A rolling cycle stats only what it does not know: a Maildir message never
            // changes under its name (a flag change renames it), so a message the state
            // recorded at this very path is as it was. Control files are stat'ed: they change
            // in place. A -u/-A pass stats everything.
            let known = |path: &str| -> Option<Entry> {
                let (folder, _) = split(path);
                if !(folder.ends_with("/cur") || folder.ends_with("/new")) {
                    return None;
                }
                let record = state.get(path).filter(|r| r.kind == Kind::File)?;
                let seen = record.side(Side::Source);
                Some(Entry::file(seen.size, seen.mtime))
            };
            self.master
                .scan_part_known(&filter, &shallow, &known)
                .map_err(|e| Error::Safety(format!("the mail store cannot be listed: {e}")))?
                .snapshot
        };
        // Temp files a killed run left on the replica: removed once this round has applied.
        let mut leftovers = Vec::new();
        let replica = if repair {
            let scan = listed(self.replica.as_ref(), "replica")?;
            leftovers = scan.leftovers;
            Some(scan.snapshot)
        } else {
            None
        };
        // A rolling cycle trusts the state for the replica, except in a mailbox whose
        // UIDVALIDITY changed (Dovecot rebuilt it): that one's replica is listed and mended.
        let reset: Vec<&str> = if repair {
            Vec::new()
        } else {
            folders.iter().copied().filter(|folder| self.uidvalidity_changed(folder, &master, &state)).collect()
        };
        let replica = match replica {
            None if !reset.is_empty() => {
                let shallow: Vec<String> =
                    reset.iter().flat_map(|f| [f.to_string(), format!("{f}/cur"), format!("{f}/new")]).collect();
                let scan = self.replica.scan_part(&filter, &shallow, &[]);
                Some(scan.map_err(|e| Error::Safety(format!("the replica cannot be listed: {e}")))?.snapshot)
            }
            other => other,
        };
        let views: Vec<(Option<Snapshot>, Option<Snapshot>)> = folders
            .iter()
            .map(|folder| {
                let exists = self.master.stat(folder).ok().flatten().is_some_and(|e| e.is_dir());
                let master = exists.then(|| self.mailbox_part(&master, folder));
                let listed = repair || reset.contains(folder);
                let replica = replica.as_ref().filter(|_| listed).map(|r| self.mailbox_part(r, folder));
                (master, replica)
            })
            .collect();
        let renamed = self.rename_mailboxes(&folders, &views, &state, observer)?;
        if renamed > 0 {
            // The listings and the state moved under our feet: look again.
            let mut outcome = self.round(mailboxes, repair, observer)?;
            outcome.tally.renamed += renamed;
            return Ok(outcome);
        }
        let input = MailPlanInput {
            mailboxes: folders
                .iter()
                .zip(&views)
                .map(|(folder, (master, replica))| MailboxView {
                    folder,
                    master: master.as_ref(),
                    replica: replica.as_ref(),
                })
                .collect(),
            state: &state,
            expunge: self.job.expunge,
        };
        let plan: Plan = mail_plan::plan(&input);
        let executor = Executor {
            endpoints: [&self.master, self.replica.as_ref()],
            observer,
            workers: workers(self.replica.as_ref()),
            durable: true,
            versions: None,
        };
        let outcome = executor.apply(&plan, &self.db)?;
        for leftover in leftovers {
            // A large copy cut off has been continued from its temp file by now; what is left is
            // stale. One that cannot be removed is tried again on the next listed pass.
            let _ = self.replica.remove_leftover(&leftover);
        }
        Ok(outcome)
    }

    /// True when `folder`'s dovecot-uidlist changed since the last pass and names another
    /// UIDVALIDITY than the replica's copy: Dovecot rebuilt the mailbox, and the replica is
    /// listed rather than trusted.
    fn uidvalidity_changed(&self, folder: &str, master: &Snapshot, state: &crate::core::model::State) -> bool {
        let path = format!("{folder}/dovecot-uidlist");
        let (Some(now), Some(record)) = (master.get(&path), state.get(&path)) else { return false };
        if record.side(Side::Source) == now.observed() {
            return false;
        }
        let read = |endpoint: &dyn Endpoint, entry: &Entry| -> Option<u32> {
            let mut bytes = Vec::new();
            let mut reader = endpoint.open(&path, entry).ok()?;
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut reader, 4096), &mut bytes).ok()?;
            uidvalidity(&bytes)
        };
        let seen = record.side(Side::Destination);
        let replica_entry = Entry::file(seen.size, seen.mtime);
        match (read(&self.master, now), read(self.replica.as_ref(), &replica_entry)) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        }
    }

    /// Renames on the replica, folder and all, each mailbox renamed on the master (see
    /// [`crate::mail::moved`]), and moves its records. Returns how many. A rename that fails
    /// is left to the planner, which carries it message by message.
    fn rename_mailboxes(
        &self,
        folders: &[&str],
        views: &[(Option<Snapshot>, Option<Snapshot>)],
        state: &crate::core::model::State,
        observer: &dyn Observer,
    ) -> Result<usize> {
        let mut gone_sets = Vec::new();
        let mut new_sets = Vec::new();
        for (folder, (master, _)) in folders.iter().zip(views) {
            let recorded = state.get(folder).is_some();
            match (master, recorded) {
                (None, true) => gone_sets.push((*folder, uniques(state, folder))),
                (Some(listing), false) => new_sets.push((*folder, uniques(listing, folder))),
                _ => {}
            }
        }
        if gone_sets.is_empty() || new_sets.is_empty() {
            return Ok(0);
        }
        let gone: Vec<Gone> = gone_sets
            .iter()
            .map(|(folder, set)| Gone { folder, recorded: set.iter().map(String::as_str).collect() })
            .collect();
        let new: Vec<New> = new_sets
            .iter()
            .map(|(folder, set)| New { folder, holds: set.iter().map(String::as_str).collect() })
            .collect();
        let mut done = 0;
        for (from, to) in renamed(&gone, &new) {
            let dir = Entry::dir();
            if self.replica.rename(&from, &to, &dir).is_err() {
                continue;
            }
            self.db.move_folder(&from, &to, &StateRecord::dir())?;
            let action = Action::Rename { side: Side::Destination, from, to, entry: Box::new(dir), counterpart: None };
            observer.applied(&action);
            done += 1;
        }
        Ok(done)
    }

    /// What of a listing belongs to the mailbox `folder`: the folder's cur/, new/ and tmp/
    /// folders, the messages in cur/ and new/, and the files directly in it that are worth
    /// replicating (control files); not tmp/'s content, not caches, not other mailboxes.
    fn mailbox_part(&self, listing: &Snapshot, folder: &str) -> Snapshot {
        let prefix = format!("{folder}/");
        let mut part = Vec::new();
        if let Some(entry) = listing.get(folder) {
            part.push((folder.to_string(), *entry));
        }
        for (path, entry) in crate::core::model::inside(listing, folder) {
            let Some(rel) = path.strip_prefix(&prefix) else { continue };
            let keep = match (entry.kind, rel) {
                (Kind::Dir, "cur" | "new" | "tmp") => true,
                (Kind::Dir, _) => false,
                (Kind::File, _) => {
                    matches!(
                        classify(rel, &self.ignore),
                        FileKind::Message { .. } | FileKind::Control | FileKind::Other
                    ) && rel.split('/').count() <= 2
                }
            };
            if keep {
                part.push((path.clone(), *entry));
            }
        }
        Snapshot::from_unique(part)
    }

    /// True when the state knows any user of the store (a store that now lists none is then
    /// an unmounted or emptied store, not a new one).
    pub fn knows_any_user(&self) -> Result<bool> {
        let top = self.job.layout.users_folder();
        let (state, _) = self.db.load_folders([top.as_str()])?;
        let any = state.iter().next().is_some();
        Ok(any)
    }

    /// The users the state knows (replicated before), from the records of the users' folder.
    pub fn recorded_users(&self) -> Result<Vec<String>> {
        let top = self.job.layout.users_folder();
        let (state, _) = self.db.load_folders([top.as_str()])?;
        let mut users = Vec::new();
        // A recorded folder is a user's when the user's Maildir under it was recorded too.
        for (path, record) in state.iter() {
            let name = split(path).1;
            if record.kind != Kind::Dir {
                continue;
            }
            let mut candidates = vec![name.to_string()];
            if self.job.layout.user_dir().contains("{domain}") {
                // {domain}/{localpart}/...: the users are one level down.
                let (below, _) = self.db.load_folders([path.as_str()])?;
                candidates = below.iter().map(|(p, _)| format!("{}@{name}", split(p).1)).collect();
            }
            for user in candidates {
                if self.knows_user(&user)? {
                    users.push(user);
                }
            }
        }
        Ok(users)
    }

    /// The users whose Maildir the replica holds, found by listing it: a restore after the
    /// state was lost with the server's disk.
    pub fn replica_users(&self) -> Result<Vec<String>> {
        let top = self.job.layout.users_folder();
        let names = self.replica_folders(&top)?;
        let mut candidates = Vec::new();
        if self.job.layout.user_dir().contains("{domain}") {
            for domain in names {
                let below = if top.is_empty() { domain.clone() } else { format!("{top}/{domain}") };
                candidates.extend(self.replica_folders(&below)?.into_iter().map(|local| format!("{local}@{domain}")));
            }
        } else {
            candidates = names;
        }
        let mut users = Vec::new();
        for user in candidates {
            let Ok(root) = self.job.layout.user_root(&user) else { continue };
            if self.replica.stat(&root).ok().flatten().is_some_and(|e| e.is_dir()) {
                users.push(user);
            }
        }
        Ok(users)
    }

    /// `user`'s mailboxes as the replica holds them: its INBOX and each `.Folder` in it.
    pub fn replica_mailboxes(&self, user: &str) -> Result<Vec<Mailbox>> {
        let layout = &self.job.layout;
        let root = layout.user_root(user).map_err(|e| Error::Usage(e.to_string()))?;
        if !self.replica.stat(&root).ok().flatten().is_some_and(|e| e.is_dir()) {
            return Ok(Vec::new());
        }
        let mut found = vec![layout.mailbox(&layout.name(user, None)).map_err(|e| Error::Usage(e.to_string()))?];
        for name in self.replica_folders(&root)? {
            if let Some(folder) = name.strip_prefix('.').filter(|f| !f.is_empty()) {
                if let Ok(mailbox) = layout.mailbox(&layout.name(user, Some(folder))) {
                    found.push(mailbox);
                }
            }
        }
        Ok(found)
    }

    /// The names of the folders directly in `folder` on the replica.
    fn replica_folders(&self, folder: &str) -> Result<Vec<String>> {
        let filter = Filter::new(std::iter::empty::<(&str, &str)>(), true)?;
        let scan = self
            .replica
            .scan_part(&filter, &[folder.to_string()], &[])
            .map_err(|e| Error::Safety(format!("the replica cannot be listed: {e}")))?;
        let prefix = if folder.is_empty() { String::new() } else { format!("{folder}/") };
        Ok(scan
            .snapshot
            .iter()
            .filter(|(path, entry)| entry.is_dir() && path.starts_with(&prefix) && !path[prefix.len()..].contains('/'))
            .map(|(path, _)| path[prefix.len()..].to_string())
            .filter(|name| !name.is_empty())
            .collect())
    }

    /// True when the state knows `user`'s Maildir.
    pub fn knows_user(&self, user: &str) -> Result<bool> {
        let Ok(root) = self.job.layout.user_root(user) else { return Ok(false) };
        let (state, _) = self.db.load_folders([parent(&root).unwrap_or("")])?;
        Ok(state.get(&root).is_some())
    }

    /// A safety stop when `user`'s Maildir is gone from the store while the state knows it:
    /// an unmounted or mangled store must not empty the replica. A user deleted on purpose is
    /// removed by an UNUSER line, which does not ask this.
    pub fn check_user_present(&self, user: &str) -> Result<()> {
        let root = self.job.layout.user_root(user).map_err(|e| Error::Usage(e.to_string()))?;
        if !self.store.join(&root).is_dir() && self.knows_user(user)? {
            return Err(Error::Safety(format!(
                "{user}'s Maildir {root} is gone from the mail store, but was replicated before: nothing deleted \
                 on the replica (an UNUSER line in the sync log removes a user on purpose)"
            )));
        }
        Ok(())
    }

    /// True when `mailbox` was replicated before (its folder is recorded).
    pub fn knows_mailbox(&self, mailbox: &Mailbox) -> Result<bool> {
        let (state, _) = self.db.load_folders([parent(&mailbox.folder).unwrap_or("")])?;
        Ok(state.get(&mailbox.folder).is_some())
    }

    /// Replicates `user`'s Sieve scripts (the layout's sieve_dir) as a one-way clone of that
    /// folder, with its own state; nothing when the layout has no sieve_dir or the user none.
    pub fn sieve(&self, user: &str, reporter: &dyn Reporter) -> Result<Outcome> {
        let Some(root) = self.job.layout.sieve_root(user) else { return Ok(Outcome::default()) };
        let root = root.map_err(|e| Error::Usage(e.to_string()))?;
        let master = self.job.store.join(&root);
        if !master.is_dir() {
            return Ok(Outcome::default());
        }
        let replica = match &self.job.replica {
            EndpointSpec::Local(path) => EndpointSpec::Local(path.join(&root)),
            EndpointSpec::Ftp(url) => {
                let mut url = url.clone();
                url.dir = format!("{}/{root}", url.dir);
                EndpointSpec::Ftp(url)
            }
        };
        let job = Job {
            sides: [EndpointSpec::Local(master.clone()), replica],
            auth: [Auth::default(), self.job.auth.clone()],
            mode: Mode::Clone,
            options: PlanOptions::default(),
            // The links in it are carried below, as links: the clone must not warn of them.
            filter: Filter::new(
                sieve_links(&master, None).iter().map(|(name, _)| ("sieve link", format!("^{}$", regex::escape(name)))),
                true,
            )?,
            checks: [None, None],
            max_delete: crate::core::safety::MaxDelete::Percent(100),
            force: true,
            dry_run: false,
            state_dir: self.job.state_dir.clone(),
            connections: 1,
            scope: None,
            notices: Vec::new(),
            backup: None,
        };
        // Its parent folders on the replica first: the user's Sieve folder may be its first file.
        let mut made = String::new();
        for name in root.split('/') {
            made = join(&made, name);
            self.replica.mkdir(&made).map_err(|e| Error::Safety(format!("replica {made}: {e}")))?;
        }
        let summary = sync(&job, reporter)?;
        let mut outcome = Outcome {
            tally: summary.tally,
            problems: summary.problems,
            interrupted: summary.interrupted,
            changed: Vec::new(),
        };
        // The active script is a symbolic link (in the Sieve folder, or Dovecot's
        // ~/.dovecot.sieve beside it), which the clone leaves alone: carried as a link.
        let home = parent(&root).unwrap_or("");
        let links = [(root.as_str(), None), (home, Some(".dovecot.sieve"))];
        for (folder, only) in links {
            for (name, target) in sieve_links(&self.store.join(folder), only) {
                let path = if folder.is_empty() { name } else { format!("{folder}/{name}") };
                match self.replica_link(&path, &target) {
                    Ok(()) => {}
                    // Not a failure of the backup: the scripts are there; only the link, which
                    // says which one is active, cannot be (an FTP replica holds no links).
                    Err(e) if !matches!(self.job.replica, EndpointSpec::Local(_)) => {
                        reporter.warning(&format!("{path}: sieve link to {}: {e}", target.display()))
                    }
                    Err(e) => {
                        let problem = crate::engine::executor::Problem { path, message: format!("sieve link: {e}") };
                        reporter.problem(&problem);
                        outcome.problems.push(problem);
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Makes `path` on the replica a symbolic link to `target` (a relative path that stays
    /// inside the user's folder), replacing a link that points elsewhere. Only a local replica
    /// holds links.
    fn replica_link(&self, path: &str, target: &Path) -> std::io::Result<()> {
        let EndpointSpec::Local(root) = &self.job.replica else {
            return Err(std::io::Error::other("an FTP replica cannot hold a symbolic link; not replicated"));
        };
        let full = root.join(path);
        // The folder it goes in must be a real folder of the replica, not a link out of it.
        let folder = full.parent().unwrap_or(root);
        if !folder.canonicalize()?.starts_with(root.canonicalize()?) {
            return Err(std::io::Error::other("its folder on the replica leads outside the replica"));
        }
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if std::fs::read_link(&full)? == target {
                    return Ok(());
                }
                std::fs::remove_file(&full)?;
            }
            Ok(_) => return Err(std::io::Error::other("something that is not a link is in the way; left alone")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::os::unix::fs::symlink(target, &full)
    }

    /// Makes the state durable (sled flushes on its own too; this is for an orderly end).
    pub fn flush(&self) -> Result<()> {
        self.db.flush()
    }
}

/// Opens a mail replica (any layout's): unreachable is exit 6; a missing local replica root is
/// created on the first run only (no state yet: `existed` false), later it is an unmounted
/// drive, a safety stop.
pub(crate) fn open_replica(
    spec: &EndpointSpec,
    auth: &Auth,
    tag: &str,
    connections: usize,
    existed: bool,
) -> Result<Box<dyn Endpoint>> {
    let replica = spec::open(spec, auth, tag, connections)
        .map_err(|e| Error::Unreachable { what: format!("replica {}", spec.url()), source: Box::new(e) })?;
    let Err(e) = replica.check_root() else { return Ok(replica) };
    match (e.kind(), spec) {
        (ErrorKind::Unreachable, _) => {
            Err(Error::Unreachable { what: format!("replica {}", replica.url()), source: Box::new(e) })
        }
        (ErrorKind::NotFound, EndpointSpec::Local(root)) if !existed && root.parent().is_some_and(Path::is_dir) => {
            std::fs::create_dir(root)
                .map_err(|e| Error::Safety(format!("the replica {} cannot be created: {e}", root.display())))?;
            Ok(replica)
        }
        _ => Err(Error::Safety(format!(
            "the replica {} is missing or unreadable: {e} (an unmounted drive?)",
            replica.url()
        ))),
    }
}

/// The symbolic links directly in `folder` (only the one named `only`, when given) whose
/// target is relative and stays within the folder's parent: (name, target).
fn sieve_links(folder: &Path, only: Option<&str>) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut links = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if only.is_some_and(|only| only != name) || !entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let mut depth = 0i32;
        let stays = target.is_relative()
            && target.components().all(|c| {
                depth += match c {
                    std::path::Component::ParentDir => -1,
                    std::path::Component::Normal(_) => 1,
                    _ => 0,
                };
                depth >= -1
            });
        if stays {
            links.push((name, target));
        }
    }
    links.sort();
    links
}

/// The unique names of the messages in `folder`'s cur/ and new/ of a listing or a state.
fn uniques<V>(listing: &SortedMap<V>, folder: &str) -> HashSet<String> {
    ["cur", "new"]
        .iter()
        .flat_map(|sub| {
            crate::core::model::inside(listing, &format!("{folder}/{sub}"))
                .map(|(path, _)| unique_name(split(path).1).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Passes everything through but the problems, which are held until the round is known to be
/// the last: a message that moved meanwhile is looked up again, not reported.
struct HoldProblems<'a> {
    inner: &'a dyn Observer,
    held: std::sync::Mutex<Vec<crate::engine::executor::Problem>>,
}

impl Observer for HoldProblems<'_> {
    fn applied(&self, action: &crate::core::plan::Action) {
        self.inner.applied(action);
    }

    fn problem(&self, problem: &crate::engine::executor::Problem) {
        self.held.lock().expect("not poisoned").push(problem.clone());
    }

    fn should_stop(&self) -> bool {
        self.inner.should_stop()
    }
}
