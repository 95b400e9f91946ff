//! The engine: one run of a pair ([`sync::sync`]), from opening its sides to the summary, and
//! the executor that applies a plan through the endpoints and commits the state.

pub mod executor;
pub mod job;
pub mod scope;
pub mod stream;
pub mod sync;
pub mod versions;
