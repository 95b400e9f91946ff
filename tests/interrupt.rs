//! A run asked to stop (a signal, in the daemon) stops between files, keeps what it applied
//! recorded, and the next run finishes the rest.

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use pairsync::executor::Observer;
use pairsync::plan::Action;
use pairsync::sync::{sync, Reporter};

/// Asks to stop once `after` actions were applied.
struct StopAfter {
    after: usize,
    applied: AtomicUsize,
}

impl Observer for StopAfter {
    fn applied(&self, _action: &Action) {
        self.applied.fetch_add(1, Ordering::SeqCst);
    }
    fn should_stop(&self) -> bool {
        self.applied.load(Ordering::SeqCst) >= self.after
    }
}
impl Reporter for StopAfter {}

#[test]
fn a_stopped_run_keeps_what_it_did_and_the_next_run_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (tmp.path().join("src"), tmp.path().join("dst"), tmp.path().join("state"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    for i in 0..200 {
        fs::write(src.join(format!("f{i:03}")), format!("file {i}")).unwrap();
    }
    use clap::Parser;
    let argv = ["pairsync", "sync", src.to_str().unwrap(), dst.to_str().unwrap()];
    let pairsync::cli::Command::Sync(args) = pairsync::cli::Args::try_parse_from(argv).unwrap().command else {
        unreachable!("parsed as sync")
    };
    let job = pairsync::cli::job(&args, Some(state.clone())).unwrap();

    let stopper = StopAfter { after: 5, applied: AtomicUsize::new(0) };
    let first = sync(&job, &stopper).unwrap();
    assert!(first.interrupted, "{first:?}");
    let copied = fs::read_dir(&dst).unwrap().count();
    // Workers finish the file they hold when asked to stop: a few more than 5, far fewer than 200.
    assert!((5..20).contains(&copied), "copied {copied}");
    assert_eq!(first.tally.copied, copied, "every file copied is counted (and recorded)");

    let second = sync(&job, &StopAfter { after: usize::MAX, applied: AtomicUsize::new(0) }).unwrap();
    assert!(!second.interrupted);
    assert_eq!(second.tally.copied, 200 - copied, "the second run copies only what the first did not");
    assert_eq!(fs::read_dir(&dst).unwrap().count(), 200);
}
