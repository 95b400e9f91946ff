//! Standard output that a closed pipe ends quietly, as ripgrep does: `pairsync list | head -1`
//! or `pairsync -v sync --dry-run A B | head` must not panic (Rust's `println!` does on EPIPE).
//! Once the reader has gone, nothing more is printed; a sync still runs to its end, commits its
//! state and exits with its own code, since leaving it half done helps nobody.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to standard output, unless its reader has gone.
pub fn line(text: std::fmt::Arguments) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()) {
        gone_if_broken(&e);
    }
}

/// Writes `bytes` as they are to standard output, unless its reader has gone.
pub fn bytes(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        gone_if_broken(&e);
    }
}

fn gone_if_broken(error: &io::Error) {
    // Any other error (a full disk behind a redirect) is not worth a panic either; but a broken
    // pipe is the one that means "stop writing".
    if error.kind() == io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` for the app: see [`line`].
macro_rules! outln {
    () => {
        $crate::app::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::app::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
