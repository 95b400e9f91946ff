//! `pairsync mail --restore` into a Cyrus spool (running or stopped): the replica's mailbox
//! folders, the users' databases, Sieve folders and quota files put back where the target's
//! imapd.conf wants them, never over a file that is there; owned by the spool's owner; then
//! the reconstruct steps that were verified to work (`reconstruct -P FOLDER...`, then
//! `reconstruct -r -u USER` for each user), run or, with `--print-only`, printed.
//!
//! What the replica holds is found from the replica alone (the state may be lost with the
//! server): the mailbox list dump (`conf/mailboxes.json`) names the mailboxes and their
//! uniqueids, and each replica folder's `cyrus.header` says which uniqueid it holds. A legacy
//! folder renamed by Cyrus keeps the old name in its header: the header is restored with the
//! name the mailbox has. A mailbox the target holds under another uniqueid is not overwritten
//! (exit 2 naming it) unless `--force replica|spool` says which one wins.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};
use crate::core::filter::Filter;
use crate::core::model::{split, Entry, Kind, Side, Snapshot};
use crate::core::plan::Action;
use crate::endpoint::local::LocalEndpoint;
use crate::endpoint::Endpoint;
use crate::engine::executor::{Observer, Outcome, Problem};
use crate::mail::cyrus::replicate::{CyrusReplicator, DUMP, LINK};
use crate::mail::cyrus::spool::{inbox_name, parse_mboxlist, Listed};
use crate::mail::cyrus::{give, index};
use crate::mail::replicate::Passed;
use crate::mail::synclog::user_of_mailbox;

/// The kinds of a user's databases, as Cyrus 3.6 names them (`mbpath -j`, `user`).
const USER_FILES: [&str; 6] = ["conversations", "counters", "dav", "seen", "sub", "xapianactive"];

/// Which copy wins where the target has a mailbox of the same name and another uniqueid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Force {
    /// The replica's mailbox is restored; the target's record is replaced by reconstruct.
    Replica,
    /// The target's mailbox stays; the replica's is skipped.
    Spool,
}

/// A mailbox to restore: its name, uniqueid and replica folder.
#[derive(Debug, Clone)]
struct Wanted {
    name: String,
    uniqueid: String,
    folder: String,
}

fn read_all(replica: &dyn Endpoint, path: &str, entry: &Entry) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    replica
        .open(path, entry)
        .and_then(|mut r| r.read_to_end(&mut bytes).map_err(Into::into))
        .map_err(|e| Error::Safety(format!("replica {path}: {e}")))?;
    Ok(bytes)
}

/// Shell-quotes a word for a printed command line.
fn quoted(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@^".contains(&b)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// What a restore did, and the reconstruct commands (run, or to be run with `--print-only`).
pub struct Restored {
    pub passed: Passed,
    pub commands: Vec<String>,
}

pub fn restore(
    rep: &CyrusReplicator,
    mode: &str,
    objects: &[String],
    force: Option<Force>,
    print_only: bool,
    observer: &dyn crate::mail::rolling::Narrator,
) -> Result<Restored> {
    let replica = rep.replica();
    let filter = Filter::new(std::iter::empty::<(&str, &str)>(), true)?;
    let listing = replica
        .scan_part(&filter, &[], &["data".into(), "conf".into(), "sieve".into()])
        .map_err(|e| Error::Safety(format!("the replica cannot be listed: {e}")))?
        .snapshot;
    let Some(dump_entry) = listing.get(DUMP).copied() else {
        return Err(Error::Usage(format!("the replica {} holds no {DUMP}: not a Cyrus replica", replica.url())));
    };
    let listed =
        parse_mboxlist(&read_all(replica, DUMP, &dump_entry)?).map_err(|e| Error::Safety(format!("{DUMP}: {e}")))?;
    // Which folder holds which uniqueid, from the headers themselves.
    let mut folders: BTreeMap<String, String> = BTreeMap::new();
    for (path, entry) in listing.iter() {
        if entry.kind == Kind::File && path.starts_with("data/") && split(path).1 == "cyrus.header" {
            if let Ok(header) = index::header(&read_all(replica, path, entry)?) {
                folders.insert(header.uniqueid, split(path).0.to_string());
            }
        }
    }
    let live: Vec<&Listed> = listed.iter().filter(|l| !l.is_tombstone()).collect();
    let deleted_prefix = format!("{}.", rep.job.conf.deletedprefix);
    let chosen: Vec<&Listed> = match mode {
        "-A" => live.iter().copied().filter(|l| !l.name.starts_with(&deleted_prefix)).collect(),
        "-u" => {
            let mut all = Vec::new();
            for user in objects {
                let of_user: Vec<&Listed> = live
                    .iter()
                    .copied()
                    .filter(|l| {
                        !l.name.starts_with(&deleted_prefix) && user_of_mailbox(&l.name).as_deref() == Some(user)
                    })
                    .collect();
                if of_user.is_empty() {
                    return Err(Error::Usage(format!("unknown user {user:?}: no mailbox of it on the replica")));
                }
                all.extend(of_user);
            }
            all
        }
        "-m" => {
            let mut all = Vec::new();
            for name in objects {
                let found = live.iter().copied().find(|l| &l.name == name);
                all.push(found.ok_or_else(|| Error::Usage(format!("mailbox {name:?}: not on the replica")))?);
            }
            all
        }
        _ => return Err(Error::Usage(format!("mail --restore goes with -u, -m or -A, not {mode}"))),
    };
    let mut wanted = Vec::new();
    for l in chosen {
        match folders.get(&l.uniqueid) {
            Some(folder) => {
                wanted.push(Wanted { name: l.name.clone(), uniqueid: l.uniqueid.clone(), folder: folder.clone() })
            }
            None => {
                let problem =
                    Problem { path: l.name.clone(), message: "restore: its folder is not on the replica".into() };
                observer.problem(&problem);
            }
        }
    }
    // What the target holds: a name under another uniqueid is not silently replaced.
    let (_, target) = rep.mboxlist()?;
    let target: BTreeMap<&str, &Listed> =
        target.iter().filter(|l| !l.is_tombstone()).map(|l| (l.name.as_str(), l)).collect();
    let mut skip_existing = BTreeSet::new();
    for w in &wanted {
        if let Some(there) = target.get(w.name.as_str()) {
            if there.uniqueid == w.uniqueid {
                skip_existing.insert(w.name.clone());
                continue;
            }
            match force {
                None => {
                    return Err(Error::Usage(format!(
                        "mailbox {:?} exists in the target spool with another uniqueid ({} there, {} on the replica): \
                         nothing restored; give --force replica or --force spool to say which one wins",
                        w.name, there.uniqueid, w.uniqueid
                    )))
                }
                Some(Force::Spool) => {
                    skip_existing.insert(w.name.clone());
                }
                // In the legacy layout the target's mailbox is in the very folder the replica's
                // would go to: it is not merged into, nor moved away.
                Some(Force::Replica) if target_has_folder(rep, &w.folder) => {
                    return Err(Error::Usage(format!(
                        "mailbox {:?}: the target's mailbox of that name is in the folder the replica's would go to \
                         (the legacy layout); delete it on the target first, then restore",
                        w.name
                    )))
                }
                Some(Force::Replica) => {}
            }
        }
    }
    let mut outcome = Outcome::default();
    let mut reconstruct_folders = Vec::new();
    let mut users = BTreeSet::new();
    for w in &wanted {
        if observer.should_stop() {
            outcome.interrupted = true;
            break;
        }
        users.extend(user_of_mailbox(&w.name));
        // A mailbox the target has (the same one, or the one `--force spool` keeps) is left as
        // it is: nothing is merged into a live mailbox.
        if skip_existing.contains(&w.name) {
            continue;
        }
        let master_folder = copy_folder(rep, &listing, w, &mut outcome, observer)?;
        if let Some(folder) = master_folder {
            reconstruct_folders.push(folder);
        }
    }
    // The users' databases, Sieve folders and quota files, where they are not already.
    for user in &users {
        let inbox = live.iter().find(|l| l.name == inbox_name(user)).map(|l| l.uniqueid.clone());
        for (path, entry) in listing.iter() {
            if entry.kind != Kind::File {
                continue;
            }
            let (folder, name) = split(path);
            let own = match &inbox {
                Some(id) if folder.ends_with(&format!("/{id}")) => {
                    path.starts_with("conf/user/") || path.starts_with("sieve/")
                }
                _ => false,
            };
            // Legacy: `conf/user/j/john.doe.sub` (the user's name as it is, dots and all) beside
            // other users' files, and the Sieve folder `sieve/j/john.doe`.
            let legacy = (path.starts_with("conf/user/")
                && USER_FILES.iter().any(|kind| name == format!("{user}.{kind}")))
                || (path.starts_with("sieve/") && split(folder).1 == user.as_str());
            let quota = path.starts_with("conf/quota/") && name == inbox_name(user);
            if (own || legacy) && path.starts_with("sieve/") && name.ends_with(LINK) {
                restore_link(rep, path, entry, &mut outcome, observer)?;
            } else if own || legacy || quota {
                restore_file(rep, path, entry, None, &mut outcome, observer)?;
            }
        }
    }
    // The reconstruct steps.
    let tools = &rep.job.tools;
    let conf = tools.conf.display().to_string();
    let mut commands: Vec<Vec<String>> = Vec::new();
    if !reconstruct_folders.is_empty() {
        let mut command =
            vec![tools.dir.join("reconstruct").display().to_string(), "-C".into(), conf.clone(), "-P".into()];
        command.extend(reconstruct_folders.iter().map(|f| f.display().to_string()));
        commands.push(command);
    }
    for user in &users {
        commands.push(vec![
            tools.dir.join("reconstruct").display().to_string(),
            "-C".into(),
            conf.clone(),
            "-r".into(),
            "-u".into(),
            user.clone(),
        ]);
    }
    let mut lines = Vec::new();
    for command in &commands {
        let line = command.iter().map(|w| quoted(w)).collect::<Vec<_>>().join(" ");
        lines.push(line.clone());
        if print_only {
            continue;
        }
        let out = std::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::Safety(format!("{}: {e}", command[0])))?;
        if !out.status.success() {
            let problem = Problem {
                path: line.clone(),
                message: format!("failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
            };
            observer.problem(&problem);
            outcome.problems.push(problem);
        }
    }
    let mut passed = Passed::default();
    passed.add(outcome, wanted.len());
    Ok(Restored { passed, commands: lines })
}

/// Whether the target spool has a mailbox (its `cyrus.header`) in the folder of replica folder
/// `folder`.
fn target_has_folder(rep: &CyrusReplicator, folder: &str) -> bool {
    let Some((prefix, root, rel)) = rep.spool().roots().master_of(folder) else { return false };
    let partition = prefix.strip_prefix("data/").unwrap_or(prefix);
    let header_root = rep.job.conf.meta_partition_of(partition, "header").unwrap_or(root);
    header_root.join(rel).join("cyrus.header").exists()
}

/// Copies one mailbox folder back; returns
/// its data folder on the target, for `reconstruct -P`.
fn copy_folder(
    rep: &CyrusReplicator,
    listing: &Snapshot,
    w: &Wanted,
    outcome: &mut Outcome,
    observer: &dyn Observer,
) -> Result<Option<PathBuf>> {
    let prefix = format!("{}/", w.folder);
    let mut any = false;
    for (path, entry) in listing.iter() {
        let Some(name) = path.strip_prefix(&prefix) else { continue };
        if entry.kind != Kind::File || name.contains('/') {
            continue;
        }
        let content = if name == "cyrus.header" {
            // A legacy folder renamed keeps the old name in its header: restored with its name.
            let bytes = read_all(rep.replica(), path, entry)?;
            match index::header(&bytes) {
                Ok(h) if h.name != w.name => {
                    Some(index::with_name(&bytes, &w.name).map_err(|e| Error::Safety(e.to_string()))?)
                }
                _ => None,
            }
        } else {
            None
        };
        let kind = name.strip_prefix("cyrus.");
        restore_file(rep, path, entry, kind.map(|k| (k, content)), outcome, observer)?;
        any = true;
    }
    if !any {
        return Ok(None);
    }
    let (prefix, root, rel) = rep
        .spool()
        .roots()
        .master_of(&w.folder)
        .ok_or_else(|| Error::Usage(format!("{}: the target's imapd.conf has no such partition", w.folder)))?;
    // reconstruct -P reads the folder's cyrus.header: on the meta partition when it is there.
    let partition = prefix.strip_prefix("data/").unwrap_or(prefix);
    let header_root = rep.job.conf.meta_partition_of(partition, "header").unwrap_or(root);
    Ok(Some(header_root.join(rel)))
}

/// Writes one replica file to its place in the target spool, never over a file there, owned
/// like the root it goes in. `metadata`: a `cyrus.*` file (placed by metapartition_files), with
/// replacement bytes when they differ from the replica's.
fn restore_file(
    rep: &CyrusReplicator,
    path: &str,
    entry: &Entry,
    metadata: Option<(&str, Option<Vec<u8>>)>,
    outcome: &mut Outcome,
    observer: &dyn Observer,
) -> Result<()> {
    let roots = rep.spool().roots();
    let Some((prefix, root, rel)) = roots.master_of(path) else {
        let problem =
            Problem { path: path.into(), message: "restore: no place for it in the target's imapd.conf".into() };
        observer.problem(&problem);
        outcome.problems.push(problem);
        return Ok(());
    };
    let mut target = root.join(rel);
    if let (Some((kind, _)), Some(partition)) = (&metadata, prefix.strip_prefix("data/")) {
        if let Some(meta) = rep.job.conf.meta_partition_of(partition, kind) {
            target = meta.join(rel);
        }
    }
    if std::fs::symlink_metadata(&target).is_ok() {
        return Ok(());
    }
    let result = (|| -> std::io::Result<usize> {
        let owner = std::fs::metadata(root)?;
        // The folder the target path is below: the meta partition's or the root itself.
        let mut base = target.clone();
        for _ in Path::new(rel).components() {
            base.pop();
        }
        let made = make_folders(&base, target.parent().unwrap_or(&base), &owner)?;
        let bytes = match metadata.and_then(|(_, b)| b) {
            Some(bytes) => bytes,
            None => {
                let mut bytes = Vec::new();
                rep.replica().open(path, entry).map_err(std::io::Error::other)?.read_to_end(&mut bytes)?;
                bytes
            }
        };
        let local = LocalEndpoint::new(base.clone(), "restore0");
        let like = Entry { mode: Some(0o600), ..Entry::file(bytes.len() as u64, entry.mtime) };
        local.write(rel, &mut bytes.as_slice(), &like, None, 0).map_err(std::io::Error::other)?;
        local.flush().map_err(std::io::Error::other)?;
        give(&target, &owner)?;
        Ok(made)
    })();
    let copy = Action::Copy { from: Side::Destination, path: path.into(), entry: *entry, replaces: None };
    match result {
        Ok(made) => {
            outcome.tally.folders_created += made;
            outcome.tally.add(&copy);
            observer.applied(&copy);
        }
        Err(e) => {
            let problem = Problem { path: path.into(), message: format!("restore to {}: {e}", target.display()) };
            observer.problem(&problem);
            outcome.problems.push(problem);
        }
    }
    Ok(())
}

/// Makes the link a `NAME.link` file of a Sieve folder stands for (`defaultbc -> main.bc`),
/// unless something is there.
fn restore_link(
    rep: &CyrusReplicator,
    path: &str,
    entry: &Entry,
    outcome: &mut Outcome,
    observer: &dyn Observer,
) -> Result<()> {
    let target = read_all(rep.replica(), path, entry)?;
    let link_path = &path[..path.len() - LINK.len()];
    let Some((_, root, rel)) = rep.spool().roots().master_of(link_path) else { return Ok(()) };
    let at = root.join(rel);
    let result = (|| -> std::io::Result<()> {
        let target = std::str::from_utf8(&target).map_err(std::io::Error::other)?;
        if target.is_empty() || target.contains('/') || target.starts_with('.') {
            return Err(std::io::Error::other(format!("link target {target:?} is not a file of the folder")));
        }
        if std::fs::symlink_metadata(&at).is_ok() {
            return Ok(());
        }
        let owner = std::fs::metadata(root)?;
        outcome.tally.folders_created += make_folders(root, at.parent().unwrap_or(root), &owner)?;
        std::os::unix::fs::symlink(target, &at)?;
        give(&at, &owner)
    })();
    if let Err(e) = result {
        let problem = Problem { path: path.into(), message: format!("restore link {}: {e}", at.display()) };
        observer.problem(&problem);
        outcome.problems.push(problem);
    }
    Ok(())
}

/// Creates the folders from `root` down to `folder`, owned like `root`.
fn make_folders(root: &Path, folder: &Path, owner: &std::fs::Metadata) -> std::io::Result<usize> {
    let Ok(rel) = folder.strip_prefix(root) else { return Err(std::io::Error::other("outside the root")) };
    let mut at = root.to_path_buf();
    let mut made = 0;
    for part in rel.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => return Err(std::io::Error::other(format!("{}: not a folder", at.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&at)?;
                std::fs::set_permissions(&at, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
                give(&at, owner)?;
                made += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(made)
}
