//! What went wrong at an endpoint, as data: a kind the engine decides by, and the error that
//! caused it. Nothing downstream reads meaning out of an error's text.

use std::fmt;
use std::io;

/// Why an endpoint call failed, as far as the engine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The path is no longer what the plan saw (compare, then mutate): left alone, retried.
    ChangedSinceScan,
    /// Nothing is at the path.
    NotFound,
    /// The endpoint cannot be reached (no route, connection lost, no such host): exit 6.
    Unreachable,
    /// The endpoint refused us: a login, or a permission.
    Refused,
    /// Anything else.
    Other,
}

/// An endpoint's error: its [`ErrorKind`] and the error behind it (`source()`).
#[derive(Debug)]
pub struct EndpointError {
    kind: ErrorKind,
    source: io::Error,
}

pub type Result<T, E = EndpointError> = std::result::Result<T, E>;

impl EndpointError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> EndpointError {
        EndpointError { kind, source: io::Error::other(message.into()) }
    }

    /// The error `source`, taken to be of `kind` whatever its own io kind says.
    pub fn with_kind(kind: ErrorKind, source: io::Error) -> EndpointError {
        EndpointError { kind, source }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when the run cannot go on with this endpoint at all: unreachable or refused login.
    pub fn is_unreachable(&self) -> bool {
        self.kind == ErrorKind::Unreachable
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for EndpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

/// An io error is classified by its io kind, unless it carries an endpoint error (from a
/// reader, which can only fail with io errors): then that one, kind and all, comes back out.
impl From<io::Error> for EndpointError {
    fn from(error: io::Error) -> EndpointError {
        if error.get_ref().is_some_and(|inner| inner.is::<EndpointError>()) {
            let inner = error.into_inner().expect("checked above");
            return *inner.downcast::<EndpointError>().expect("checked above");
        }
        let kind = match error.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::NotConnected
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::TimedOut
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable => ErrorKind::Unreachable,
            io::ErrorKind::PermissionDenied => ErrorKind::Refused,
            _ => ErrorKind::Other,
        };
        EndpointError { kind, source: error }
    }
}

impl From<rustix::io::Errno> for EndpointError {
    fn from(errno: rustix::io::Errno) -> EndpointError {
        io::Error::from(errno).into()
    }
}

/// For a reader (whose errors must be io errors): the endpoint error rides inside, and
/// `From<io::Error>` takes it out again unchanged.
impl From<EndpointError> for io::Error {
    fn from(error: EndpointError) -> io::Error {
        let kind = match error.kind {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::Unreachable => io::ErrorKind::NotConnected,
            ErrorKind::Refused => io::ErrorKind::PermissionDenied,
            ErrorKind::ChangedSinceScan | ErrorKind::Other => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

/// The path changed since the scan saw it (`what`): nothing was done to it.
pub fn changed_since_scan(what: &str) -> EndpointError {
    EndpointError::new(
        ErrorKind::ChangedSinceScan,
        format!("changed since the scan ({what}); left alone, retried next run"),
    )
}

/// The file changed while it was being read: the copy is not recorded.
pub fn changed_while_copying() -> EndpointError {
    EndpointError::new(ErrorKind::ChangedSinceScan, "changed while being read; not recorded, retried next run")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_are_classified() {
        for (io_kind, want) in [
            (io::ErrorKind::NotFound, ErrorKind::NotFound),
            (io::ErrorKind::NotConnected, ErrorKind::Unreachable),
            (io::ErrorKind::ConnectionRefused, ErrorKind::Unreachable),
            (io::ErrorKind::TimedOut, ErrorKind::Unreachable),
            (io::ErrorKind::PermissionDenied, ErrorKind::Refused),
            (io::ErrorKind::InvalidData, ErrorKind::Other),
        ] {
            assert_eq!(EndpointError::from(io::Error::new(io_kind, "x")).kind(), want, "{io_kind:?}");
        }
    }

    #[test]
    fn a_kind_survives_a_trip_through_a_reader() {
        let through: io::Error = changed_while_copying().into();
        let back = EndpointError::from(through);
        assert_eq!(back.kind(), ErrorKind::ChangedSinceScan);
        assert_eq!(back.to_string(), "changed while being read; not recorded, retried next run");
    }
}
