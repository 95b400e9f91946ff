//! pairsync keeps pairs of folders in sync, one-way or two-way, with embedded state.
//!
//! The words used throughout (DESIGN.md "Vocabulary"):
//! - **item**: a named synchronization definition in the config file; a **group** labels items.
//! - **side**: `source` or `destination`; each is an **endpoint** (a local folder here).
//! - **pair**: the (source, destination) of one item or one `pairsync sync` call, with its own
//!   state database, keyed by an id derived from both roots.
//! - **snapshot**: what a scan of one side found: relative path -> entry (kind, size, mtime,
//!   optional hash).
//! - **state record**: for one path, what both sides looked like right after it was last
//!   synced; each side is compared only with its own previous observation.
//! - **plan**: the actions (copy, mkdir, delete, rename, record, forget) computed by the pure
//!   planner from (mode, state, source, destination, options), plus the conflicts it resolved.
//! - **apply**: the executor runs a plan through the endpoints and commits one state record per
//!   action that succeeded; a failing path is a problem, never the end of the run.
//!
//! Pure core: [`model`], [`plan`], [`filter`], [`check`], [`safety`]. I/O: [`endpoint`],
//! [`state`], [`executor`]. One run of a pair: [`sync`]. The edge: [`cli`], [`report`].

pub mod app;
pub mod config;
pub mod core;
pub mod endpoint;
pub mod engine;
pub mod state;
