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
    /// An endpoint cannot be reached or refused the login; `what` names it, `source` says why.
    #[error("{what}")]
    Unreachable {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
            Error::Unreachable { .. } => ExitCode::Unreachable,
            // The run did not happen; the user must look at the state folder.
            Error::State { .. } => ExitCode::Usage,
        }
    }
}

impl Error {
    /// The error with its causes, `what: why: deeper why`: how every error is shown to a user.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            text.push_str(": ");
            text.push_str(&error.to_string());
            cause = error.source();
        }
        text
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
