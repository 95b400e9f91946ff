//! The documented exit codes, as a type that merges: the result of several runs is the worst.

/// Exit codes of DESIGN.md "Command line", ordered so that `max` is "the worst".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitCode {
    /// 0: in sync.
    Synced = 0,
    /// 1: finished with per-path problems.
    Problems = 1,
    /// 2: usage or configuration error.
    Usage = 2,
    /// 3: a file check was not satisfied; nothing was done.
    CheckFailed = 3,
    /// 4: safety stop; nothing was done.
    SafetyStop = 4,
    /// 5: another run of the pair is in progress.
    Locked = 5,
    /// 6: an endpoint is unreachable or refused the login.
    Unreachable = 6,
}

impl ExitCode {
    pub fn merge(self, other: ExitCode) -> ExitCode {
        self.max(other)
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}
