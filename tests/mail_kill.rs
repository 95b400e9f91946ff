//! `pairsync mail` killed with SIGKILL at any moment converges on the next run: nothing lost,
//! no message on the replica twice under two names, no temp file left.
//!
//! Drives the real binary on a store big enough that a debug build takes a while, kills it once
//! a given share of the work is visible on the replica (polling, not sleeping and hoping), then
//! runs it again and checks the replica against the store. If a run ends before it could be
//! killed, the store is doubled and the attempt repeated (a bounded number of times).

use std::collections::{BTreeMap, BTreeSet};
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
        for dir in ["store", "state", "home"] {
            fs::create_dir(root.join(dir)).unwrap();
        }
        let config = format!(
            "[mail]\nstore = \"{}\"\n[[mail.replica]]\nname = \"backup\"\ndirectory = \"{}\"\n",
            root.join("store").display(),
            root.join("replica").display()
        );
        fs::write(root.join("pairsync.toml"), config).unwrap();
        Env { _tmp: tmp, root }
    }

    fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    fn replica(&self) -> PathBuf {
        self.root.join("replica")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("-C").arg(self.root.join("pairsync.toml")).arg("--state-dir").arg(self.root.join("state"));
        cmd.arg("mail").args(args);
        cmd.env("HOME", self.root.join("home"))
            .env_remove("PAIRSYNC_STATE_DIR")
            .env_remove("PAIRSYNC_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        assert!(out.status.success(), "mail {args:?} failed\n{}", explain(&out));
        out
    }

    /// `messages` messages over 2 users x 3 mailboxes, 4-20 KiB each, Dovecot-named.
    fn fill(&self, messages: usize, seed: u64) {
        let mut rng = seed;
        for i in 0..messages {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let user = ["alice", "bob"][i % 2];
            let folder = ["", ".Sent", ".Work"][(i / 2) % 3];
            let dir = self.store().join(user).join("Maildir").join(folder);
            for sub in ["cur", "new", "tmp"] {
                fs::create_dir_all(dir.join(sub)).unwrap();
            }
            let size = 4096 + (rng >> 40) as usize % 16384;
            let name = format!("17000{i:05}.M{}P{seed}.host,S={size},W={}", rng % 1_000_000, size + 20);
            let (sub, name) = if i % 4 == 0 { ("new", name) } else { ("cur", format!("{name}:2,S")) };
            let mut body = format!("Subject: {i}\n\n").into_bytes();
            body.resize(size, b'x' + (i % 7) as u8);
            fs::write(dir.join(sub).join(name), body).unwrap();
        }
    }
}

fn explain(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Relative path -> content, of the message files (cur/, new/) under `root`.
fn message_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let rel = e.path().strip_prefix(root).ok()?.to_str()?.to_string();
            let parent = rel.rsplit('/').nth(1)?;
            // Read while the run renames: a file gone between listing and reading is skipped.
            let content = fs::read(e.path()).ok()?;
            matches!(parent, "cur" | "new").then_some((rel, content))
        })
        .collect()
}

fn count(root: &Path) -> usize {
    if !root.exists() {
        return 0;
    }
    walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count()
}

/// Every file of the replica; none may be one of pairsync's temp files.
fn temps(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pairsync-"))
        .map(|e| e.path().display().to_string())
        .collect()
}

/// The replica holds the store's messages exactly: same names, same bytes, and no unique name
/// twice (under two flag sets or in two places of one mailbox).
fn assert_converged(env: &Env) {
    let (store, replica) = (message_files(&env.store()), message_files(&env.replica()));
    let missing: Vec<&String> = store.keys().filter(|k| !replica.contains_key(*k)).collect();
    let extra: Vec<&String> = replica.keys().filter(|k| !store.contains_key(*k)).collect();
    let differ: Vec<&String> =
        store.iter().filter(|(k, v)| replica.get(*k).is_some_and(|r| r != *v)).map(|(k, _)| k).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "replica differs from the store: missing {missing:?}, extra {extra:?}, content {differ:?}"
    );
    let mut seen = BTreeSet::new();
    for path in replica.keys() {
        let (folder, name) = path.rsplit_once('/').unwrap();
        let mailbox = folder.rsplit_once('/').unwrap().0;
        let unique = name.split(":2,").next().unwrap();
        assert!(seen.insert(format!("{mailbox}/{unique}")), "{unique} twice in {mailbox}");
    }
    assert!(temps(&env.replica()).is_empty(), "temp files left: {:?}", temps(&env.replica()));
}

/// Starts `mail args`, SIGKILLs it once `progress()` reaches `target`; `None` if it ended first.
fn kill_at(env: &Env, args: &[&str], target: usize, progress: impl Fn() -> usize) -> Option<usize> {
    let mut child = env.command(args).spawn().unwrap();
    let started = Instant::now();
    let killed_at = loop {
        if child.try_wait().unwrap().is_some() {
            break None;
        }
        let done = progress();
        if done >= target || started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            break Some(done);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = child.wait_with_output().unwrap();
    match std::os::unix::process::ExitStatusExt::signal(&out.status) {
        Some(9) if killed_at.is_some() => killed_at,
        _ => {
            assert!(out.status.success(), "the run failed before it was killed\n{}", explain(&out));
            None
        }
    }
}

fn with_retries(scenario: impl Fn(usize) -> bool) {
    let mut messages = 1500;
    for _ in 0..4 {
        if scenario(messages) {
            return;
        }
        messages *= 2;
    }
    panic!("every run finished before it could be killed");
}

#[test]
fn an_initial_replication_killed_midway_converges() {
    for share in [0.1, 0.5, 0.9] {
        with_retries(|messages| {
            let env = Env::new();
            env.fill(messages, 1);
            let target = (messages as f64 * share) as usize;
            if kill_at(&env, &["-A"], target, || count(&env.replica())).is_none() {
                return false;
            }
            env.run_ok(&["-A"]);
            assert_converged(&env);
            true
        });
    }
}

#[test]
fn flag_changes_killed_midway_converge_without_sending_a_message_twice() {
    with_retries(|messages| {
        let env = Env::new();
        env.fill(messages, 2);
        env.run_ok(&["-A"]);
        // Flag every message of cur/ and move every new/ message to cur/, as an IMAP client would.
        let mut renamed = 0;
        for (path, _) in message_files(&env.store()) {
            let full = env.store().join(&path);
            let to = match path.strip_suffix(":2,S") {
                Some(base) => format!("{base}:2,FS"),
                None => path.replacen("/new/", "/cur/", 1) + ":2,",
            };
            fs::rename(&full, env.store().join(&to)).unwrap();
            renamed += 1;
        }
        let flagged =
            || message_files(&env.replica()).keys().filter(|k| k.ends_with(":2,FS") || k.ends_with(":2,")).count();
        if kill_at(&env, &["-v", "-A"], renamed / 2, flagged).is_none() {
            return false;
        }
        let out = env.run_ok(&["-v", "-A"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("copy "), "a message was sent again instead of renamed\n{}", explain(&out));
        assert_converged(&env);
        true
    });
}

#[test]
fn a_rolling_cycle_killed_after_taking_the_log_is_finished_by_the_next() {
    // Killed with log-run in place (after the rename, before the unlink): the next cycle takes
    // log-run first and finishes the work.
    with_retries(|messages| {
        let env = Env::new();
        env.fill(messages, 3);
        for mailbox in
            ["user.alice", "user.alice.Sent", "user.alice.Work", "user.bob", "user.bob.Sent", "user.bob.Work"]
        {
            env.run_ok(&["log", "MAILBOX", mailbox]);
        }
        let run_log = env.root.join("state/mail/log-run");
        let progress = || if run_log.exists() { count(&env.replica()) } else { 0 };
        if kill_at(&env, &["-r", "-1"], messages / 2, progress).is_none() {
            return false;
        }
        assert!(run_log.exists(), "the killed cycle's log-run must still be there");
        env.run_ok(&["-r", "-1"]);
        assert!(!run_log.exists(), "the finished cycle unlinks log-run");
        assert_converged(&env);
        true
    });
}
