//! Symlinks are never followed, never written through, never overwritten, and never taken for
//! "nothing there" (which would delete the other side's file).

mod util;

use std::fs;
use std::os::unix::fs::symlink;
use std::sync::atomic::{AtomicBool, Ordering};

use pairsync::engine::executor::Observer;
use pairsync::engine::sync::{sync, Reporter};
use util::{Side::Destination as D, Side::Source as S, TestEnv};

#[test]
fn a_file_replaced_by_a_symlink_does_not_delete_the_other_side() {
    // Regression: a symlink was reported, then treated as absent, so the two-way run deleted
    // the source's file.
    let env = TestEnv::new();
    env.put(S, "data", "precious").put(S, "other", "o");
    env.sync_ok(&[]);
    let elsewhere = env.root.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::rename(env.dst.join("data"), elsewhere.join("data")).unwrap();
    symlink(elsewhere.join("data"), env.dst.join("data")).unwrap();
    let run = env.sync_ok(&[]);
    assert!(run.stderr.contains("data: symbolic link, not followed; left alone"), "{run}");
    assert_eq!(env.read(S, "data"), "precious", "{run}");
}

#[test]
fn a_symlink_where_the_source_has_a_file_is_not_overwritten() {
    let env = TestEnv::new();
    let outside = env.root.join("outside");
    fs::write(&outside, "not yours").unwrap();
    symlink(&outside, env.dst.join("notes")).unwrap();
    env.put(S, "notes", "mine").put(S, "a", "1");
    for mode in ["two-way", "clone", "simple"] {
        env.sync_ok(&["--mode", mode, "--force"]);
        assert!(fs::symlink_metadata(env.dst.join("notes")).unwrap().file_type().is_symlink(), "{mode}");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "not yours", "{mode}");
    }
    assert_eq!(env.read(D, "a"), "1");
}

/// Swaps the destination's `sub` for a symlink to `outside` once it holds a copied file. Done
/// when a copy worker asks whether to stop, which it does before each file: the copies after
/// the swap are certain, however far the workers ran ahead of the recording thread.
struct SwapAfterFirstCopy {
    dst: std::path::PathBuf,
    outside: std::path::PathBuf,
    done: AtomicBool,
}

impl Observer for SwapAfterFirstCopy {
    fn should_stop(&self) -> bool {
        let copied = || {
            fs::read_dir(self.dst.join("sub"))
                .map(|d| d.flatten().any(|e| !e.file_name().to_string_lossy().starts_with(".pairsync-")))
                .unwrap_or(false)
        };
        if !self.done.load(Ordering::SeqCst) && copied() && !self.done.swap(true, Ordering::SeqCst) {
            fs::rename(self.dst.join("sub"), self.dst.join("sub-moved")).unwrap();
            symlink(&self.outside, self.dst.join("sub")).unwrap();
        }
        false
    }
}
impl Reporter for SwapAfterFirstCopy {}

#[test]
fn a_folder_swapped_for_a_symlink_during_a_run_receives_nothing() {
    // Regression: checked folders were cached for the whole run, so files kept going into a
    // folder after it had been replaced by a link to elsewhere.
    let env = TestEnv::new();
    for i in 0..60 {
        env.put(S, &format!("sub/f{i:02}"), &"x".repeat(10_000));
    }
    env.mkdir(D, "sub");
    let outside = env.root.join("outside");
    fs::create_dir(&outside).unwrap();
    use clap::Parser;
    let argv = ["pairsync", "sync", env.src.to_str().unwrap(), env.dst.to_str().unwrap(), "--mode", "clone"];
    let pairsync::app::args::Command::Sync(args) = pairsync::app::args::Args::try_parse_from(argv).unwrap().command
    else {
        unreachable!()
    };
    let job = pairsync::app::cli::job(&args, Some(env.state.clone()), None).unwrap();
    let swapper = SwapAfterFirstCopy { dst: env.dst.clone(), outside: outside.clone(), done: AtomicBool::new(false) };
    let summary = sync(&job, &swapper).unwrap();
    assert!(swapper.done.load(Ordering::SeqCst));
    let leaked: Vec<_> = fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leaked.is_empty(), "written outside the root: {leaked:?}; {summary:?}");
    assert!(!summary.problems.is_empty(), "the refused writes are problems");
}
