//! End-to-end: named items, groups, Sync Now, logs and the daemon, through the real binary.

mod util;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{Side::Destination as D, Side::Source as S, TestEnv};

/// A TestEnv with a config file path in it.
struct Items {
    env: TestEnv,
    config: PathBuf,
}

impl Items {
    fn new() -> Items {
        let env = TestEnv::new();
        let config = env.root.join("conf/pairsync.toml");
        Items { env, config }
    }

    fn cmd(&self, args: &[&str]) -> util::Run {
        let mut all = vec!["-C", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        self.env.run(&all)
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> util::Run {
        let run = self.cmd(args);
        self.env.expect(&run, 0);
        run
    }

    fn add(&self, name: &str, extra: &[&str]) {
        let (src, dst) = (self.env.src.to_str().unwrap(), self.env.dst.to_str().unwrap());
        let mut args = vec!["add", name, "--source", src, "--destination", dst];
        args.extend_from_slice(extra);
        self.ok(&args);
    }
}

#[test]
fn add_list_show_run_and_logs() {
    let it = Items::new();
    it.env.put(S, "a.txt", "a");
    it.add("docs", &["--group", "work", "--schedule", "mon-fri every 15m", "--description", "Work documents"]);
    let list = it.ok(&["list"]);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("NEXT RUN"), "{list}");
    assert!(lines[1].starts_with("docs") && lines[1].contains("work") && lines[1].contains("never"), "{list}");

    let run = it.ok(&["run", "docs"]);
    assert!(run.stdout.contains("copied 1"), "{run}");
    assert_eq!(it.env.read(D, "a.txt"), "a");
    let list = it.ok(&["list"]);
    assert!(list.stdout.lines().nth(1).unwrap().contains(" ok "), "{list}");

    let show = it.ok(&["show", "docs"]);
    for want in [
        "description:  Work documents",
        "group:        work",
        "schedule:     mon-fri every 15m",
        "mode:         two-way",
    ] {
        assert!(show.stdout.contains(want), "missing {want:?}\n{show}");
    }
    let logs = it.ok(&["logs", "docs", "--lines", "2"]);
    assert_eq!(logs.stdout.lines().count(), 2, "{logs}");
    assert!(logs.stdout.contains("copy   source -> destination: a.txt"), "{logs}");
    assert!(logs.stdout.lines().last().unwrap().contains(" end ") && logs.stdout.contains("(exit 0)"), "{logs}");
}

#[test]
fn edits_keep_the_users_comments_and_copy_delete_work() {
    let it = Items::new();
    it.add("docs", &[]);
    let text = fs::read_to_string(&it.config).unwrap();
    fs::write(&it.config, format!("# my pairs, do not touch this line\n{text}")).unwrap();
    it.ok(&["edit", "docs", "--mode", "clone", "--max-delete", "10%"]);
    it.ok(&["copy", "docs", "docs-copy"]);
    let text = fs::read_to_string(&it.config).unwrap();
    assert!(text.starts_with("# my pairs, do not touch this line\n"), "{text}");
    assert!(text.contains("mode = \"clone\"") && text.contains("max_delete = 10"), "{text}");
    assert!(text.contains("name = \"docs-copy\""), "{text}");
    it.ok(&["delete", "docs"]);
    let groups = it.ok(&["groups"]);
    assert_eq!(groups.stdout.trim(), "(no group): docs-copy", "{groups}");
}

#[test]
fn run_by_group_returns_the_worst_exit_code() {
    let it = Items::new();
    it.env.put(S, "a", "1");
    it.add("good", &["--group", "nightly"]);
    // A USB drive that is not plugged in: the file check fails, exit 3, nothing written.
    let (src, usb) = (it.env.src.to_str().unwrap(), it.env.root.join("usb"));
    fs::create_dir(&usb).unwrap();
    it.ok(&[
        "add",
        "usb",
        "--source",
        src,
        "--destination",
        usb.to_str().unwrap(),
        "--group",
        "nightly",
        "--check-destination",
        ".disk=usb-1",
    ]);
    let run = it.cmd(&["run", "--group", "nightly"]);
    it.env.expect(&run, 3);
    assert!(run.stdout.contains("good: ") && run.stderr.contains("usb: file check"), "{run}");
    assert!(fs::read_dir(&usb).unwrap().next().is_none());
    let logs = it.ok(&["logs", "usb"]);
    assert!(logs.stdout.contains("skipped: file check of the destination not satisfied"), "{logs}");
    let list = it.ok(&["list"]);
    assert!(list.stdout.contains("check failed (3)"), "{list}");

    // --json: one object for the whole command, each item's summary named, the worst exit code.
    let run = it.cmd(&["--json", "run", "--group", "nightly"]);
    it.env.expect(&run, 3);
    let object: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!(object["exit_code"], 3, "{run}");
    let items = object["items"].as_array().unwrap_or_else(|| panic!("no items array\n{run}"));
    let named: Vec<(&str, i64)> =
        items.iter().map(|i| (i["item"].as_str().unwrap(), i["exit_code"].as_i64().unwrap())).collect();
    assert_eq!(named, [("good", 0), ("usb", 3)], "{run}");
    assert!(items[1]["error"].as_str().unwrap().contains("file check"), "{run}");
    // An unknown item: nothing runs, and the error is the one object.
    let run = it.cmd(&["--json", "run", "good", "nosuch"]);
    it.env.expect(&run, 2);
    let object: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert!(object["error"].as_str().unwrap().contains("nosuch") && object["exit_code"] == 2, "{run}");
    // One item: its summary object alone, as for `sync --json`.
    let run = it.cmd(&["--json", "run", "good"]);
    it.env.expect(&run, 0);
    let object: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!((object["exit_code"].as_i64(), object.get("items")), (Some(0), None), "{run}");
}

#[test]
fn bad_item_input_exits_2_naming_the_culprit() {
    let it = Items::new();
    it.add("docs", &[]);
    let (src, dst) = (it.env.src.to_str().unwrap(), it.env.dst.to_str().unwrap());
    let inner = format!("{src}/inner");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "nosuch"], "no item named \"nosuch\""),
        (vec!["show", "nosuch"], "nosuch"),
        (vec!["add", "docs", "--source", src, "--destination", dst], "docs"),
        (vec!["add", "x", "--source", src], "--source and --destination are required"),
        (vec!["add", "x", "--source", src, "--destination", dst, "--schedule", "sometimes"], "sometimes"),
        (vec!["add", "x", "--source", src, "--destination", dst, "--ignore", "(("], "invalid regex"),
        (vec!["add", "x", "--source", "ftp://bob:secret@host/dir", "--destination", dst], "password in the URL"),
        // Regression: add stored these, which sync then refused at run time.
        (vec!["add", "x", "--source", src, "--destination", "ftp://h:notaport/x"], "--destination: bad port"),
        (vec!["add", "x", "--source", src, "--destination", "ftp://h/a/../../etc"], "--destination: '.' and '..'"),
        (vec!["add", "x", "--source", "sftp://h/x", "--destination", dst], "--source: unsupported"),
        (vec!["add", "x", "--source", src, "--destination", &inner], "is inside"),
        (vec!["run", "--group", "none"], "no item is in group"),
        (vec!["run"], "--group G or --all"),
    ];
    for (args, culprit) in cases {
        let run = it.cmd(&args);
        assert_eq!(run.code, 2, "{run}");
        assert!(run.stderr.contains(culprit), "stderr must name {culprit:?}\n{run}");
        assert!(!run.stderr.contains("secret"), "a password was echoed\n{run}");
    }
    // A broken file: exit 2 with the file and line.
    fs::write(&it.config, "[[item]]\nname = \"a\"\nmode = 7\n").unwrap();
    let run = it.cmd(&["list"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("pairsync.toml:3"), "{run}");
}

#[test]
fn a_password_never_shows_and_a_readable_file_is_warned_about() {
    let it = Items::new();
    fs::create_dir_all(it.config.parent().unwrap()).unwrap();
    fs::write(
        &it.config,
        "[[item]]\nname = \"ftp\"\n[item.source]\ndirectory = \"/srv\"\n[item.destination]\ntype = \"ftp\"\nserver = \"h\"\nusername = \"u\"\npassword = \"hunter2\"\ndirectory = \"/d\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&it.config, fs::Permissions::from_mode(0o644)).unwrap();
    for args in [&["list"][..], &["show", "ftp"], &["run", "ftp"], &["logs", "ftp"]] {
        let run = it.cmd(args);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains("hunter2"), "password printed by {args:?}\n{run}");
    }
    let run = it.cmd(&["list"]);
    assert!(run.stderr.contains("holds a password") && run.stderr.contains("chmod 600"), "{run}");
    let show = it.ok(&["show", "ftp"]);
    assert!(show.stdout.contains("password:   (set in the config file)"), "{show}");
}

#[test]
fn completions_are_generated() {
    let it = Items::new();
    let run = it.ok(&["completions", "bash"]);
    assert!(
        run.stdout.contains("_pairsync") && run.stdout.contains("daemon"),
        "{}",
        &run.stdout[..200.min(run.stdout.len())]
    );
}

/// How long a test waits for the daemon: generous, as a debug build on a loaded machine (and a
/// two-way run's syncfs) can take seconds. Speed is measured by the benchmarks, not here.
const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `cond` every 50 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

#[test]
fn daemon_runs_a_scheduled_item_and_stops_cleanly_on_sigterm() {
    let it = Items::new();
    it.env.put(S, "first", "1");
    it.add("live", &["--schedule", "every 1s"]);
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_pairsync"))
        .args(["-C", it.config.to_str().unwrap(), "daemon"])
        .env("HOME", &it.env.home)
        .env("PAIRSYNC_STATE_DIR", &it.env.state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let synced = wait_for(DEADLINE, || it.env.exists(D, "first"));
    // A second change is picked up by a later scheduled run.
    it.env.put(D, "second", "2");
    let synced_back = synced && wait_for(DEADLINE, || it.env.exists(S, "second"));
    let pid = daemon.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap().success();
    let exited = wait_for(DEADLINE, || daemon.try_wait().unwrap().is_some());
    if !exited {
        daemon.kill().unwrap();
    }
    let out = daemon.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let context = format!("--- stdout\n{stdout}--- stderr\n{stderr}\n{}", it.env.trees());
    assert!(synced && synced_back, "the daemon did not run the item\n{context}");
    assert!(killed && exited, "the daemon did not stop on SIGTERM\n{context}");
    assert_eq!(out.status.code(), Some(0), "{context}");
    assert!(stdout.contains("stopped"), "{context}");
}

#[test]
fn delete_keeps_state_unless_purged() {
    let it = Items::new();
    it.env.put(S, "a", "1");
    it.add("docs", &[]);
    it.ok(&["run", "docs"]);
    let pairs = it.env.state.join("pairs");
    let databases = || fs::read_dir(&pairs).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
    it.add("again", &[]);
    it.ok(&["delete", "docs"]);
    assert_eq!(databases(), 1, "delete without --purge-state must keep the pair's state");
    it.ok(&["delete", "again", "--purge-state"]);
    assert_eq!(databases(), 0, "--purge-state must remove the pair's state");
    assert!(!it.env.state.join("items/again.json").exists());
}

#[test]
fn a_log_over_its_cap_is_rotated_once() {
    let it = Items::new();
    it.env.put(S, "a", "1");
    it.add("docs", &[]);
    let log = it.env.state.join("logs/docs.log");
    fs::create_dir_all(log.parent().unwrap()).unwrap();
    let big = "x".repeat(1024) + "\n";
    fs::write(&log, big.repeat(4 * 1024 + 1)).unwrap();
    it.ok(&["run", "docs"]);
    let rotated = fs::metadata(it.env.state.join("logs/docs.log.1")).unwrap().len();
    assert!(rotated > 4 * 1024 * 1024, "the old log must move to docs.log.1");
    let fresh = fs::read_to_string(&log).unwrap();
    assert!(fresh.lines().count() < 10 && fresh.contains(" end "), "{fresh}");
}

#[test]
fn logs_follow_prints_lines_as_they_are_written() {
    let it = Items::new();
    it.env.put(S, "a", "1");
    it.add("docs", &[]);
    it.ok(&["run", "docs"]);
    let mut follow = Command::new(env!("CARGO_BIN_EXE_pairsync"))
        .args(["-C", it.config.to_str().unwrap(), "logs", "docs", "--follow", "--lines", "1"])
        .env("PAIRSYNC_STATE_DIR", &it.env.state)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(DEADLINE).unwrap();
    it.env.put(S, "b", "2");
    it.ok(&["run", "docs"]);
    let mut seen = vec![first];
    let deadline = Instant::now() + DEADLINE;
    while !seen.iter().any(|l| l.contains("copy   source -> destination: b")) && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    follow.kill().unwrap();
    let _ = follow.wait();
    assert!(seen.iter().any(|l| l.contains("copy   source -> destination: b")), "{seen:#?}");
}

#[test]
fn sigterm_during_a_long_run_stops_after_the_current_file_and_the_next_run_finishes() {
    let it = Items::new();
    let chunk = "y".repeat(32 * 1024);
    for d in 0..20 {
        for f in 0..100 {
            it.env.put(S, &format!("d{d}/f{f}"), &chunk);
        }
    }
    it.add("big", &["--schedule", "every 1s"]);
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_pairsync"))
        .args(["-C", it.config.to_str().unwrap(), "daemon"])
        .env("PAIRSYNC_STATE_DIR", &it.env.state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = wait_for(Duration::from_secs(20), || it.env.dst.join("d0").exists());
    Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    let exited = wait_for(DEADLINE, || daemon.try_wait().unwrap().is_some());
    if !exited {
        daemon.kill().unwrap();
    }
    let out = daemon.wait_with_output().unwrap();
    let context = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(started && exited, "{context}");
    assert_eq!(out.status.code(), Some(0), "{context}");
    let temps = util::tree_of(&it.env.dst).into_keys().filter(|p| p.contains(".pairsync-")).count();
    assert_eq!(temps, 0, "no temp file may remain\n{context}");
    // Whatever was copied is whole; the next run completes the rest.
    it.ok(&["run", "big"]);
    it.env.assert_same();
}

#[test]
fn concurrent_adds_lose_no_item() {
    // Regression: parallel `add` calls each loaded, changed and saved the file; most were lost.
    let it = Items::new();
    let (src, dst) = (it.env.src.to_str().unwrap().to_string(), it.env.dst.to_str().unwrap().to_string());
    let children: Vec<_> = (0..12)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_pairsync"))
                .args([
                    "-C",
                    it.config.to_str().unwrap(),
                    "add",
                    &format!("item{i}"),
                    "--source",
                    &src,
                    "--destination",
                    &dst,
                ])
                .env("PAIRSYNC_STATE_DIR", &it.env.state)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let list = it.ok(&["list"]);
    assert_eq!(list.stdout.lines().filter(|l| l.starts_with("item")).count(), 12, "{list}");
}

#[test]
fn insecure_tls_is_stored_per_side_and_refused_without_tls() {
    let it = Items::new();
    let src = it.env.src.to_str().unwrap().to_string();
    it.ok(&["add", "site", "--source", &src, "--destination", "ftps://deploy@example.com/www", "--insecure-tls"]);
    let text = fs::read_to_string(&it.config).unwrap();
    assert!(text.contains("tls_verify = false"), "{text}");
    let show = it.ok(&["show", "site"]);
    for want in ["connections:  4 (default)", "certificate: NOT verified (tls_verify = false)"] {
        assert!(show.stdout.contains(want), "missing {want:?}\n{show}");
    }
    it.ok(&["edit", "site", "--connections", "2"]);
    assert!(it.ok(&["show", "site"]).stdout.contains("connections:  2\n"));
    fs::write(&it.config, text.replace("tls = true", "tls = false")).unwrap();
    let run = it.cmd(&["list"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("tls_verify applies only to tls = true"), "{run}");
}
