//! A watched item and the waits its tests need.

#![allow(dead_code)]

use super::util;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::TestEnv;

pub struct Live {
    pub env: TestEnv,
    pub config: PathBuf,
    child: Option<Child>,
}

impl Live {
    /// An item `live` over the env's folders, watched by `pairsync ARGS` (`watch live ...` or
    /// `daemon`).
    pub fn start(args: &[&str], add_flags: &[&str], before: impl FnOnce(&TestEnv)) -> Live {
        Live::start_with(args, add_flags, |env| {
            before(env);
            None
        })
    }

    /// The same, with the destination `before` returns instead of the env's folder (an FTP URL).
    pub fn start_with(args: &[&str], add_flags: &[&str], before: impl FnOnce(&TestEnv) -> Option<String>) -> Live {
        let env = TestEnv::new();
        let destination = before(&env).unwrap_or_else(|| env.dst.to_str().unwrap().to_string());
        let config = env.root.join("pairsync.toml");
        let src = env.src.to_str().unwrap();
        let mut add =
            vec!["-C", config.to_str().unwrap(), "add", "live", "--source", src, "--destination", destination.as_str()];
        add.extend_from_slice(add_flags);
        env.expect(&env.run(&add), 0);
        let child = Command::new(env!("CARGO_BIN_EXE_pairsync"))
            .args(["-C", config.to_str().unwrap()])
            .args(args)
            .env("HOME", &env.home)
            .env("PAIRSYNC_STATE_DIR", &env.state)
            .stdout(std::fs::File::create(env.root.join("stdout.log")).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Live { env, config, child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What it printed on standard output so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.env.root.join("stdout.log")).unwrap_or_default()
    }

    /// Sends it a signal (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -{name} failed");
    }

    /// `pairsync -C CONFIG ARGS...`, which must exit 0 (an edit of the item, say).
    #[track_caller]
    pub fn cli(&self, args: &[&str]) {
        let mut all = vec!["-C", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        self.env.expect(&self.env.run(&all), 0);
    }

    /// Stops it with SIGTERM; returns its exit code, how long that took, and its stderr.
    pub fn stop_with_stderr(&mut self) -> (Option<i32>, Duration, String) {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let exited = wait_for(DEADLINE, || child.try_wait().unwrap().is_some());
        if !exited {
            child.kill().unwrap();
        }
        let took = started.elapsed();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), took, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Stops it with SIGTERM; returns its exit code and how long that took.
    pub fn stop(&mut self) -> (Option<i32>, Duration) {
        let (code, took, _) = self.stop_with_stderr();
        (code, took)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// How long a test waits for the watcher to carry a change: generous, because a debug build
/// on a loaded machine (and a two-way run's syncfs) can take seconds. How fast changes are
/// carried is measured by `bench/watch.py`, not asserted here.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// User + system CPU time of a process so far, from /proc (clock ticks, 100 a second).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Waits ([`DEADLINE`] at most) until the watcher's CPU time stays put for a second: the runs
/// the last changes caused, and their echo, are over.
#[track_caller]
pub fn wait_idle(live: &Live) {
    let mut last = cpu_ticks(live.pid());
    let idle = wait_for(DEADLINE, || {
        std::thread::sleep(Duration::from_secs(1));
        let now = cpu_ticks(live.pid());
        std::mem::replace(&mut last, now) == now
    });
    assert!(idle, "the watcher never went idle");
}

/// Waits until `what` holds ([`DEADLINE`] at most); fails naming the step.
#[track_caller]
pub fn carried(live: &Live, step: &str, what: impl FnMut() -> bool) {
    assert!(wait_for(DEADLINE, what), "{step}: not carried within {DEADLINE:?}\n{}", live.env.trees());
}
