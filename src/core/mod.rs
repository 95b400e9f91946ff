//! The pure core: what a pair is made of and how a run is decided, with no I/O, no clock, no
//! sled and no command line. Everything here is a function of its arguments.

pub mod check;
pub mod debounce;
pub mod error;
pub mod exit;
pub mod filter;
pub mod model;
pub mod names;
pub mod plan;
pub mod safety;
pub mod schedule;
pub mod versions;
