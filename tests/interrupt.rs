//! A run asked to stop (a signal, in the daemon) stops between files, keeps what it applied
//! recorded, and the next run finishes the rest.

mod ftp_server;

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use pairsync::engine::executor::Observer;
use pairsync::engine::sync::{sync, Reporter};

/// Asks to stop from the `after`-th time it is asked on (a copy worker asks before each file).
struct StopAsked {
    after: usize,
    asked: AtomicUsize,
}

impl Observer for StopAsked {
    fn should_stop(&self) -> bool {
        self.asked.fetch_add(1, Ordering::SeqCst) >= self.after
    }
}
impl Reporter for StopAsked {}

fn job(argv: &[&str], state: &std::path::Path) -> pairsync::engine::job::Job {
    use clap::Parser;
    let pairsync::app::args::Command::Sync(args) = pairsync::app::args::Args::try_parse_from(argv).unwrap().command
    else {
        unreachable!("parsed as sync")
    };
    pairsync::app::cli::job(&args, Some(state.to_path_buf()), None).unwrap()
}

/// Stopped while filling staged folders on an FTP server (new folders are filled under a temp
/// name): the folders being filled are moved into place with the files they hold, which are
/// recorded; no temp folder is left; the next run copies only the rest.
#[test]
fn a_run_stopped_while_filling_staged_folders_moves_what_they_hold_into_place() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (tmp.path().join("src"), tmp.path().join("dst"), tmp.path().join("state"));
    for d in 0..4 {
        fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for i in 0..50 {
            fs::write(src.join(format!("d{d}/f{i:02}")), format!("file {d}/{i}")).unwrap();
        }
    }
    let server = ftp_server::FtpServer::start(&dst);
    // The password in the URL (accepted with a warning): no ~/.netrc for an in-process run.
    let url =
        server.url("").replacen(&format!("{}@", server.user), &format!("{}:{}@", server.user, server.password), 1);
    let job = job(&["pairsync", "sync", "--mode", "clone", src.to_str().unwrap(), &url], &state);

    let first = sync(&job, &StopAsked { after: 30, asked: AtomicUsize::new(0) }).unwrap();
    assert!(first.interrupted, "{first:?}");
    let tree = |root: &std::path::Path| -> Vec<String> {
        walkdir::WalkDir::new(root)
            .min_depth(1)
            .into_iter()
            .map(|e| e.unwrap().path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .filter(|p| p.contains('/'))
            .collect()
    };
    let landed = tree(&dst);
    assert!(landed.iter().all(|p| !p.contains(".pairsync-")), "temp left: {landed:?}");
    assert!((1..=30).contains(&landed.len()), "{} files landed: {landed:?}", landed.len());
    assert_eq!(first.tally.copied, landed.len(), "every file moved into place is counted (and recorded)");

    let second = sync(&job, &StopAsked { after: usize::MAX, asked: AtomicUsize::new(0) }).unwrap();
    assert!(!second.interrupted);
    assert_eq!(second.tally.copied, 200 - landed.len(), "the second run copies only what the first did not");
    assert_eq!(tree(&dst).len(), 200);
}

#[test]
fn a_stopped_run_keeps_what_it_did_and_the_next_run_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, state) = (tmp.path().join("src"), tmp.path().join("dst"), tmp.path().join("state"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    for i in 0..200 {
        fs::write(src.join(format!("f{i:03}")), format!("file {i}")).unwrap();
    }
    let job = job(&["pairsync", "sync", src.to_str().unwrap(), dst.to_str().unwrap()], &state);

    // A worker asks before each file: once told to stop, none takes another. (Stopping on a
    // count of applied actions would depend on how far the workers ran ahead of the thread
    // that records them.)
    let first = sync(&job, &StopAsked { after: 10, asked: AtomicUsize::new(0) }).unwrap();
    assert!(first.interrupted, "{first:?}");
    let copied = fs::read_dir(&dst).unwrap().count();
    assert!((1..=10).contains(&copied), "copied {copied}");
    assert_eq!(first.tally.copied, copied, "every file copied is counted (and recorded)");

    let second = sync(&job, &StopAsked { after: usize::MAX, asked: AtomicUsize::new(0) }).unwrap();
    assert!(!second.interrupted);
    assert_eq!(second.tally.copied, 200 - copied, "the second run copies only what the first did not");
    assert_eq!(fs::read_dir(&dst).unwrap().count(), 200);
}
