//! pairsync keeps pairs of folders in sync, one-way or two-way, with embedded state, and
//! replicates mail stores like Cyrus `sync_client`.
//!
//! The words used throughout (DESIGN.md "Vocabulary"):
//! - **item**: a named synchronization definition in the config file; a **group** labels items.
//! - **side**: `source` or `destination`; each is an **endpoint** (a local folder, an FTP or
//!   FTPS folder), given as an **endpoint spec** and opened in one place ([`endpoint::spec`]).
//! - **pair**: the (source, destination) of one item or one `pairsync sync` call, with its own
//!   state database, keyed by an id derived from both roots.
//! - **job**: everything one run of a pair needs, resolved into plain types ([`engine::job`]),
//!   whether it came from flags, an item or (later) a mail replica.
//! - **snapshot**: what a scan of one side found: relative path -> entry (kind, size, mtime,
//!   optional hash).
//! - **state record**: for one path, what both sides looked like right after it was last
//!   synced; each side is compared only with its own previous observation.
//! - **plan**: the actions (copy, mkdir, delete, rename, record, forget) computed by the pure
//!   planner from (mode, state, source, destination, options), plus the conflicts it resolved.
//! - **apply**: the executor runs a plan through the endpoints and commits one state record per
//!   action that succeeded; a failing path is a problem, never the end of the run.
//! - **mailbox** (mail replication): a folder of a mail store, named as Cyrus names it
//!   (`user.alice`, `user.alice.Sent`, `example.com!user.alice`); its **master** is the store,
//!   its **replica** an endpoint; the **sync log** says which mailboxes changed.
//!
//! Layers, each a folder, arrows pointing down only (`tests/layers.rs` checks them):
//! - [`app`]: the edge: command line, commands, daemon and watch loop, reports. Prints errors.
//! - [`config`]: the TOML file, and the one conversion of an item into a job.
//! - [`engine`]: one run of a pair (open, gate, filter, state, scan, plan, apply) and the
//!   executor.
//! - [`endpoint`] and [`state`]: where the sides live, and the sled databases.
//! - [`core`]: pure: model, planner, filter, file check, safety, schedule, debounce.

pub mod app;
pub mod config;
pub mod core;
pub mod endpoint;
pub mod engine;
pub mod mail;
pub mod state;
