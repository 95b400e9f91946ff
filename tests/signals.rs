//! `sync` and `run` stopped by SIGINT or SIGTERM: the run ends after the current file, commits
//! what it applied, prints its summary and exits 128 + the signal (130, 143), as `watch` stops;
//! the next run finishes the job. And a closed stdout (`| head -1`) ends output quietly.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pairsync");

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for dir in ["home", "state", "src", "dst"] {
            fs::create_dir(root.join(dir)).unwrap();
        }
        Env { _tmp: tmp, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--state-dir").arg(self.path("state")).arg("-C").arg(self.path("home/pairsync.toml"));
        cmd.args(args)
            .env("HOME", self.path("home"))
            .env_remove("PAIRSYNC_STATE_DIR")
            .env_remove("PAIRSYNC_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `files` files of 64 KiB in 10 folders: enough that a debug build takes a moment.
    fn fill(&self, files: usize) {
        let block: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
        for i in 0..files {
            let dir = self.path("src").join(format!("d{}", i % 10));
            fs::create_dir_all(&dir).unwrap();
            let mut content = block.clone();
            content[..8].copy_from_slice(&(i as u64).to_le_bytes());
            fs::write(dir.join(format!("f{i}")), content).unwrap();
        }
    }
}

fn files_in(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count()
}

fn explain(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts `args`, sends `signal` once some files have landed in dst, and returns what the
/// process did; `None` when it finished before the signal could be sent (the caller retries
/// with a larger tree).
fn stop_midway(env: &Env, args: &[&str], signal: i32) -> Option<Output> {
    let mut child = env.command(args).spawn().unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "the run failed before the signal\n{}", explain(&out));
            return None;
        }
        if files_in(&env.path("dst")) >= 20 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no file landed within a minute");
        std::thread::sleep(Duration::from_millis(2));
    }
    unsafe { libc::kill(child.id() as i32, signal) };
    Some(child.wait_with_output().unwrap())
}

fn stopped_run_ends_well(args: &[&str], signal: i32, config: bool) {
    let mut files = 1000;
    for _ in 0..4 {
        let env = Env::new();
        env.fill(files);
        if config {
            let add = env
                .command(&["add", "backup", "--source", env.path("src").to_str().unwrap(), "--destination"])
                .arg(env.path("dst"))
                .args(["--mode", "clone"])
                .output()
                .unwrap();
            assert!(add.status.success(), "add failed\n{}", explain(&add));
        }
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("SRC", env.path("src").to_str().unwrap()).replace("DST", env.path("dst").to_str().unwrap())
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let Some(out) = stop_midway(&env, &args, signal) else {
            files *= 2;
            continue;
        };
        // If the run ended on its own between the check and the signal, it exited 0.
        if out.status.success() {
            files *= 2;
            continue;
        }
        assert_eq!(out.status.code(), Some(128 + signal), "not 128 + the signal\n{}", explain(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("copied"), "no summary printed\n{}", explain(&out));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", explain(&out));
        let copied = files_in(&env.path("dst"));
        assert!(copied < files, "the run was not stopped: all {files} files copied\n{}", explain(&out));
        // What was applied was committed: the next run copies only the rest.
        let next = env.command(&["--json"]).args(&args).output().unwrap();
        assert!(next.status.success(), "the next run failed\n{}", explain(&next));
        let summary: serde_json::Value = serde_json::from_slice(&next.stdout).unwrap();
        assert_eq!(summary["copied"], files - copied, "the next run copied again what was done\n{}", explain(&next));
        assert_eq!(files_in(&env.path("dst")), files);
        return;
    }
    panic!("the run always finished before it could be stopped");
}

#[test]
fn sync_stopped_by_sigterm_exits_143_and_keeps_what_it_did() {
    stopped_run_ends_well(&["sync", "SRC", "DST", "--mode", "clone"], libc::SIGTERM, false);
}

#[test]
fn sync_stopped_by_sigint_exits_130() {
    stopped_run_ends_well(&["sync", "SRC", "DST", "--mode", "clone"], libc::SIGINT, false);
}

#[test]
fn run_stopped_by_sigterm_exits_143_and_keeps_what_it_did() {
    stopped_run_ends_well(&["run", "backup"], libc::SIGTERM, true);
}

/// Runs `args` with stdout a pipe whose reader is already closed: every write fails with EPIPE.
fn with_closed_stdout(env: &Env, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = env.command(args);
    cmd.stdout(writer);
    let child = cmd.spawn().unwrap();
    drop(cmd);
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    // Regression: `pairsync completions bash | head -1` and `pairsync -v sync --dry-run A B |
    // head -1` panicked with exit 101 on the closed pipe.
    let env = Env::new();
    env.fill(30);
    let dst = env.path("dst");
    let src = env.path("src");
    for args in [
        vec!["completions", "bash"],
        vec!["-v", "sync", "--dry-run", src.to_str().unwrap(), dst.to_str().unwrap()],
        vec!["-v", "sync", src.to_str().unwrap(), dst.to_str().unwrap()],
    ] {
        let out = with_closed_stdout(&env, &args);
        assert_eq!(out.status.code(), Some(0), "{args:?}\n{}", explain(&out));
        assert!(out.stderr.is_empty(), "{args:?}: said something\n{}", explain(&out));
    }
    // The real sync ran to its end although nobody read its output.
    assert_eq!(files_in(&dst), 30);
}
