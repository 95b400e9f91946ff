//! `pairsync mail --restore`: the replica copied back into the store.
//!
//! Never overwrites: a message whose unique name is already in the mailbox (under any flags)
//! stays as it is, and a control file that is there is kept. What is copied back gets the
//! owner of the folder it lands in, and that folder's mode without the execute bits, so that
//! Dovecot, running as the store's user, can rename and expunge it.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::core::error::{Error, Result};
use crate::core::filter::Filter;
use crate::core::model::{join, Kind, Snapshot};
use crate::core::plan::Action;
use crate::endpoint::Endpoint;
use crate::engine::executor::{Observer, Outcome, Problem};
use crate::mail::maildir::{classify, FileKind};
use crate::mail::names::Mailbox;
use crate::mail::replicate::Replicator;

impl Replicator {
    /// Copies what the replica holds of `mailboxes` back into the store, never overwriting.
    pub fn restore(&self, mailboxes: &[Mailbox], observer: &dyn Observer) -> Result<Outcome> {
        let (master, replica) = self.ends();
        let mut outcome = Outcome::default();
        let filter = Filter::new(std::iter::empty::<(&str, &str)>(), true)?;
        for mailbox in mailboxes {
            if observer.should_stop() {
                outcome.interrupted = true;
                break;
            }
            let folder = mailbox.folder.as_str();
            let shallow = [folder.to_string(), format!("{folder}/cur"), format!("{folder}/new")];
            let from = replica
                .scan_part(&filter, &shallow, &[])
                .map_err(|e| Error::Safety(format!("the replica cannot be listed: {e}")))?
                .snapshot;
            if from.get(folder).is_none() {
                return Err(Error::Usage(format!("mailbox {}: not on the replica ({folder})", mailbox.name)));
            }
            let there = master
                .scan_part(&filter, &shallow, &[])
                .map_err(|e| Error::Safety(format!("the mail store cannot be listed: {e}")))?
                .snapshot;
            self.make_folders(folder, &mut outcome, observer)?;
            let have: HashSet<String> = messages(&there, folder, self).into_iter().map(|(_, unique)| unique).collect();
            let prefix = format!("{folder}/");
            for (path, entry) in crate::core::model::inside(&from, folder) {
                if entry.kind != Kind::File {
                    continue;
                }
                let rel = &path[prefix.len()..];
                let wanted = match classify(rel, self.ignore()) {
                    FileKind::Message { unique } => !have.contains(&unique),
                    FileKind::Control | FileKind::Other => rel.split('/').count() == 1 && there.get(path).is_none(),
                    _ => false,
                };
                if !wanted {
                    continue;
                }
                let copy = Action::Copy {
                    from: crate::core::model::Side::Destination,
                    path: path.clone(),
                    entry: *entry,
                    replaces: None,
                };
                let copied = replica
                    .open(path, entry)
                    .and_then(|mut reader| master.write(path, &mut reader, entry, None, 0))
                    .map_err(|e| e.to_string())
                    .and_then(|_| self.give_to_owner(path).map_err(|e| e.to_string()));
                match copied {
                    Ok(()) => {
                        outcome.tally.add(&copy);
                        observer.applied(&copy);
                    }
                    Err(message) => {
                        let problem = Problem { path: path.clone(), message: format!("restore: {message}") };
                        observer.problem(&problem);
                        outcome.problems.push(problem);
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// The mailbox folder and its cur/, new/ and tmp/ in the store, each owned like its parent.
    fn make_folders(&self, folder: &str, outcome: &mut Outcome, observer: &dyn Observer) -> Result<()> {
        let (master, _) = self.ends();
        let mut made = String::new();
        let parts: Vec<&str> = folder.split('/').collect();
        let subfolders = ["cur", "new", "tmp"].map(|sub| format!("{folder}/{sub}"));
        let paths = parts
            .iter()
            .map(|part| {
                made = join(&made, part);
                made.clone()
            })
            .collect::<Vec<_>>()
            .into_iter()
            .chain(subfolders);
        for path in paths {
            if master.stat(&path).ok().flatten().is_some_and(|e| e.is_dir()) {
                continue;
            }
            master.mkdir(&path).map_err(|e| Error::Safety(format!("the mail store: cannot create {path}: {e}")))?;
            self.give_to_owner(&path).map_err(|e| Error::Safety(format!("the mail store: {path}: {e}")))?;
            let mkdir = Action::Mkdir { side: crate::core::model::Side::Source, path: path.clone() };
            outcome.tally.add(&mkdir);
            observer.applied(&mkdir);
        }
        Ok(())
    }

    /// Gives `path` (in the store) the owner of its folder, and for a file that folder's mode
    /// without the execute bits.
    fn give_to_owner(&self, path: &str) -> std::io::Result<()> {
        let full = self.store().join(path);
        let parent = full.parent().unwrap_or(self.store());
        let folder = std::fs::metadata(parent)?;
        std::os::unix::fs::lchown(&full, Some(folder.uid()), Some(folder.gid()))?;
        let meta = std::fs::symlink_metadata(&full)?;
        if meta.is_file() {
            let mode = folder.permissions().mode() & 0o666;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))?;
        } else if meta.is_dir() {
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(folder.permissions().mode() & 0o7777))?;
        }
        Ok(())
    }
}

/// The messages of `folder` in a listing: (path, unique name).
fn messages(listing: &Snapshot, folder: &str, replicator: &Replicator) -> Vec<(String, String)> {
    let prefix = format!("{folder}/");
    crate::core::model::inside(listing, folder)
        .filter_map(|(path, entry)| {
            let rel = path.strip_prefix(&prefix)?;
            match (entry.kind, classify(rel, replicator.ignore())) {
                (Kind::File, FileKind::Message { unique }) => Some((path.clone(), unique)),
                _ => None,
            }
        })
        .collect()
}
