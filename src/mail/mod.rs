//! Mail replication (`pairsync mail`): a live backup of a mail store onto any endpoint, modelled
//! on Cyrus IMAP's `sync_client`.
//!
//! The master is a store on disk (Maildir here; Cyrus spools later); the replica an endpoint (a
//! local folder, a USB drive, an FTP/FTPS server) that mirrors the store's relative layout, so a
//! plain copy of it is a working store. Mailboxes carry Cyrus names (`user.alice.Sent`) in every
//! layout, so one Cyrus-format sync log drives either.
//!
//! - [`names`]: Cyrus mailbox names <-> folders of the store (pure), and finding the users and
//!   mailboxes of a store.
//! - [`maildir`]: what a file in a Maildir is: a message (its unique name), a control file,
//!   a cache not worth copying (pure).
//! - [`synclog`]: the sync log: parsing and quoting lines, merging them into work (pure), and
//!   the rotation `log` -> `log-run` -> unlink and the locked append (I/O).
//! - [`replicate`]: one pass over some mailboxes of a user (list, read state, plan, apply);
//!   [`rolling`]: the `-r` loop over the sync log; [`colon`]: replicas that cannot hold ':'.
//! - [`plan`]: the mail planner (pure): a user's mailboxes, as master and state know them, into
//!   the same actions the pair engine runs; a flag change is a rename.
//!
//! A message is identified by its unique name (the file name before `:2,`), so a flag change,
//! a move from new/ to cur/, or a move to another mailbox of the same user is one rename on the
//! replica and no byte sent.

pub mod colon;
pub mod cyrus;
pub mod maildir;
pub mod moved;
pub mod names;
pub mod plan;
pub mod replicate;
pub mod restore;
pub mod rolling;
pub mod synclog;
pub mod watch;

use crate::core::names::named;

/// What the replica does with a message the master expunged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expunge {
    /// Removed from the replica too (as sync_client does).
    #[default]
    Mirror,
    /// Left on the replica, and forgotten: never copied back.
    Keep,
}

named!(Expunge { Mirror => "mirror", Keep => "keep" });
