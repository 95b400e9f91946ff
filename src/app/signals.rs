//! SIGINT and SIGTERM during `sync` and `run`: the run stops after the current file, commits
//! what was applied, prints its summary, and the process exits 130 or 143 (128 + the signal),
//! as shells report a command ended by it. A second signal ends the process at once, the
//! progress line cleared first.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// Installed for the life of the value; dropping it restores the default behaviour.
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    handle: Handle,
}

impl Interrupt {
    pub fn install() -> std::io::Result<Interrupt> {
        let (stop, signal) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let (flag, which) = (stop.clone(), signal.clone());
        // The signals are taken by a thread, not in the handler: the second one clears the
        // progress line (no handler may do that) before it ends the process.
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for sig in signals.forever() {
                if flag.load(Ordering::SeqCst) {
                    crate::app::progress::clear_active();
                    std::process::exit(128 + sig);
                }
                // Which one first: the run may end the moment the flag is set.
                which.store(sig as usize, Ordering::SeqCst);
                flag.store(true, Ordering::SeqCst);
            }
        })?;
        Ok(Interrupt { stop, signal, handle })
    }

    /// Set once a signal came: the executor asks it before each file.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// 128 + the signal that came, if one did.
    pub fn exit_code(&self) -> Option<u8> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(128 + sig as u8),
        }
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.handle.close();
    }
}
