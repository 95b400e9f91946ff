//! The engine: one run of a pair, from opening its sides to the summary, and the executor that
//! applies a plan through the endpoints and commits the state.

pub mod executor;
pub mod sync;
