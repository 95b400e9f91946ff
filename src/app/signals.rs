//! SIGINT and SIGTERM during `sync` and `run`: the run stops after the current file, commits
//! what was applied, prints its summary, and the process exits 130 or 143 (128 + the signal),
//! as shells report a command ended by it. A second signal ends the process at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::{flag, SigId};

/// Installed for the life of the value; dropping it restores the default behaviour.
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    ids: Vec<SigId>,
}

impl Interrupt {
    pub fn install() -> std::io::Result<Interrupt> {
        let (stop, signal) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it runs before the flag is set: only a second signal finds
            // the flag set, and then the user insists.
            ids.push(flag::register_conditional_shutdown(sig, 128 + sig, stop.clone())?);
            ids.push(flag::register_usize(sig, signal.clone(), sig as usize)?);
            ids.push(flag::register(sig, stop.clone())?);
        }
        Ok(Interrupt { stop, signal, ids })
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
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
