//! Errors that end a run before or instead of syncing, each with its exit code.
//! Problems with single paths are not errors: they are collected (see `executor::Problem`).

use std::path::PathBuf;

use crate::core::exit::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad flag, value, regex, check spec or pair of roots.
    #[error("{0}")]
    Usage(String),
    /// The file check of a side does not hold (a missing or wrong drive).
    #[error("file check of the {side} not satisfied: {reason}; nothing done")]
    Check { side: crate::core::model::Side, reason: String },
    /// Something looks dangerous: nothing was done.
    #[error("safety stop: {0}; nothing done")]
    Safety(String),
    #[error("another run of this pair is in progress (lock {}); nothing done", .0.display())]
    Locked(PathBuf),
    #[error("{0}")]
    Unreachable(String),
    /// The state database could not be opened or written.
    #[error("state {}: {message}", path.display())]
    State { path: PathBuf, message: String },
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Check { .. } => ExitCode::CheckFailed,
            Error::Safety(_) => ExitCode::SafetyStop,
            Error::Locked(_) => ExitCode::Locked,
            Error::Unreachable(_) => ExitCode::Unreachable,
            // The run did not happen; the user must look at the state folder.
            Error::State { .. } => ExitCode::Usage,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
