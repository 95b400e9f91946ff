//! Replication of a Cyrus IMAP spool (`[mail] layout = "cyrus"`): pairsync in the place of
//! Cyrus's `sync_client`, reading the sync log Cyrus's imapd and lmtpd write, replicating onto
//! any endpoint without a replica Cyrus server.
//!
//! - [`conf`]: imapd.conf, read as Cyrus reads it (pure, plus the file reads);
//! - [`index`]: the messages `cyrus.index` names and what `cyrus.header` says (pure);
//! - [`capture`]: consistent copies under Cyrus's own fcntl locks (I/O);
//! - [`plan`]: the planner of units (a mailbox folder, a user's databases) (pure).
//!
//! - [`spool`]: where Cyrus says things are (`mbpath -j`, `ctl_mboxlist -d`), master paths to
//!   replica paths, and the master as a read-only endpoint;
//! - [`replicate`]: a pass (a rolling cycle, -u, -m, -A) over units, applied by the executor;
//! - [`restore`]: the replica back into a spool, then Cyrus's `reconstruct`.
//!
//! The replica is a spool laid out by role, so that a restore can put each file back where
//! the target server's imapd.conf wants it: `data/<partition>/<folder below the partition>/`
//! (message files, archived ones included, and every metadata file, wherever
//! `metapartition_files` keeps it on the master), `conf/user/...` (users' databases),
//! `conf/quota/...`, `conf/annotations.db`, `conf/mailboxes.json` (a `ctl_mboxlist -d` dump of
//! the master's mailbox list) and `sieve/...` (below `sievedir`; a link such as `defaultbc`
//! carried as `defaultbc.link`).

pub mod capture;
pub mod conf;
pub mod index;
pub mod plan;
pub mod replicate;
pub mod restore;
pub mod spool;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Gives `path`, and the folders between it and `top`, the owner of `top` where they have
/// another: a sync log pairsync created (running as root) must stay Cyrus's to append to and
/// to rotate. A process that may not change owners leaves them as they are.
pub fn give_to_owner_of(top: &Path, path: &Path) -> std::io::Result<()> {
    let owner = std::fs::metadata(top)?;
    let mut at = Some(path);
    while let Some(p) = at.filter(|p| p.starts_with(top) && *p != top) {
        let meta = std::fs::symlink_metadata(p)?;
        if meta.uid() != owner.uid() || meta.gid() != owner.gid() {
            give(p, &owner)?;
        }
        at = p.parent();
    }
    Ok(())
}

/// Gives `path` (not followed) the owner of `owner`; a process that may not is left as it is.
pub fn give(path: &Path, owner: &std::fs::Metadata) -> std::io::Result<()> {
    match std::os::unix::fs::lchown(path, Some(owner.uid()), Some(owner.gid())) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}
