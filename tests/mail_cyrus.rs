//! `pairsync mail` against a real Cyrus IMAP 3.6 (issue 12, item 6): a private server
//! (tests/cyrus) takes mail over LMTP and changes over IMAP and ManageSieve and writes its own
//! sync log; the real binary replicates it by rolling cycles; the replica is restored into a
//! fresh Cyrus, which must then serve every message with its UID, flags, keywords, date and
//! bytes, the same folders, subscriptions and Sieve scripts.
//!
//! Skipped (passing, with a note) without cyrus-imapd or when not root, unless
//! `PAIRSYNC_TEST_CYRUS=1` (CI), which makes that a failure. Every failure shows the pairsync
//! run (command line, exit code, stdout, stderr).

mod cyrus;
mod ftp_server;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cyrus::{Cyrus, CyrusServer, Msg, Options};

const DEADLINE: Duration = Duration::from_secs(30);

/// What one run of the binary did.
struct Run {
    command: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nexit: {}\n--- stdout\n{}--- stderr\n{}---",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    fn actions_of(&self, verb: &str) -> Vec<&str> {
        self.stdout.lines().filter(|l| l.starts_with(&format!("{verb} "))).collect()
    }
}

/// A server, a directory replica, a state folder and the config naming them.
struct Env {
    server: CyrusServer,
    _tmp: tempfile::TempDir,
    /// HOME of every run (an FTP replica's password is in its .netrc).
    home: PathBuf,
    dir: PathBuf,
    replica: PathBuf,
    state: PathBuf,
    config: PathBuf,
}

impl Env {
    fn new(opts: Options) -> Option<Env> {
        Env::with(opts, "")
    }

    fn with(opts: Options, extra: &str) -> Option<Env> {
        if Cyrus::skip() {
            return None;
        }
        let server = CyrusServer::start(opts);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let replica = dir.join("replica");
        let state = dir.join("state");
        let config = dir.join("pairsync.toml");
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        write_config(&config, &server.conf(), &replica, extra);
        Some(Env { server, _tmp: tmp, home, dir, replica, state, config })
    }

    fn run(&self, args: &[&str]) -> Run {
        run_in(&self.home, &self.config, &self.state, args)
    }

    /// Runs and requires exit 0.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{run}");
        run
    }

    /// One rolling cycle over what Cyrus logged since the last.
    #[track_caller]
    fn cycle(&self) -> Run {
        self.ok(&["-v", "mail", "-r", "-1"])
    }

    /// Restores the replica into a fresh server like this one and checks that it serves what
    /// this one serves, for these users.
    #[track_caller]
    fn restored_equals(&self, users: &[&str]) -> CyrusServer {
        let fresh = CyrusServer::start(self.server.options().clone());
        let config = self.dir.join("restore.toml");
        write_config(&config, &fresh.conf(), &self.replica, "");
        let run = run_with(&config, &self.dir.join("restore-state"), &["-v", "mail", "--restore", "-A"]);
        assert_eq!(run.code, 0, "{run}");
        // Shown with a failure below.
        eprintln!("the restore:\n{run}");
        for user in users {
            assert_same_user(&self.server, &fresh, user);
        }
        fresh
    }
}

fn write_config(config: &Path, imapd: &Path, replica: &Path, extra: &str) {
    std::fs::write(
        config,
        format!(
            "[mail]\nlayout = \"cyrus\"\ncyrus_config = \"{}\"\n{extra}\n[[mail.replica]]\nname = \"backup\"\ndirectory = \"{}\"\n",
            imapd.display(),
            replica.display()
        ),
    )
    .unwrap();
}

fn run_with(config: &Path, state: &Path, args: &[&str]) -> Run {
    run_in(Path::new("/nonexistent"), config, state, args)
}

fn run_in(home: &Path, config: &Path, state: &Path, args: &[&str]) -> Run {
    let mut all =
        vec!["-C".to_string(), config.display().to_string(), "--state-dir".into(), state.display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_pairsync"))
        .args(&all)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        command: format!("pairsync {}", all.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every folder, subscription, message (UID, flags, date, bytes) and Sieve script of `user`.
#[derive(Debug, PartialEq)]
struct Seen {
    folders: Vec<String>,
    subscribed: Vec<String>,
    messages: BTreeMap<String, Vec<Msg>>,
}

fn seen(server: &CyrusServer, user: &str) -> Seen {
    let folders = server.list(user);
    let messages = folders.iter().map(|f| (f.clone(), server.messages(user, f))).collect();
    Seen { subscribed: server.lsub(user), folders, messages }
}

#[track_caller]
fn assert_same_user(original: &CyrusServer, restored: &CyrusServer, user: &str) {
    let (want, got) = (seen(original, user), seen(restored, user));
    assert!(!want.folders.is_empty(), "{user} has no folder on the original");
    assert_eq!(got.folders, want.folders, "{user}: folders");
    assert_eq!(got.subscribed, want.subscribed, "{user}: subscriptions");
    for (folder, messages) in &want.messages {
        assert_eq!(&got.messages[folder], messages, "{user} {folder}: messages (uid, flags, date, bytes)");
    }
}

/// The files of a replica folder, by name.
fn files_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .map(|d| {
            d.flatten().filter(|e| e.path().is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The replica folder of a mailbox (its data folder below the partition, under data/default).
fn replica_folder(env: &Env, internal: &str) -> PathBuf {
    // The tests that look at replica folders use '.' as the separator: admin name = internal.
    let path = env.server.mailbox_path(internal);
    let rel = path.strip_prefix(env.server.spool()).unwrap();
    env.replica.join("data/default").join(rel)
}

fn message_files(folder: &Path) -> Vec<String> {
    files_in(folder)
        .into_iter()
        .filter(|n| n.ends_with('.') && n[..n.len() - 1].bytes().all(|b| b.is_ascii_digit()))
        .collect()
}

#[test]
fn a_uuid_spool_replicated_by_rolling_cycles_restores_into_a_fresh_cyrus() {
    let Some(env) = Env::new(Options { sieve: true, ..Options::default() }) else { return };
    let s = &env.server;
    s.create_user("alice");
    s.create_user("bob");
    s.create("alice", "INBOX.Sent");
    s.create("alice", "INBOX.Trash");
    for n in 0..5 {
        s.deliver("alice", None, &s.message(&format!("hello {n}"), 2000 + n * 100));
    }
    s.deliver("bob", None, &s.message("for bob", 800));
    // A shared folder (no user's): -A takes it too.
    s.create("cyrus", "shared.news");
    s.setacl("shared.news", "cyrus", "lrswipkxtecda");
    s.append("cyrus", "shared.news", &[r"\Flagged"], Some("01-Jan-2024 10:00:00 +0000"), &s.message("news", 600));
    let first = env.ok(&["-v", "mail", "-A"]);
    assert_eq!(message_files(&replica_folder(&env, "user.alice")), ["1.", "2.", "3.", "4.", "5."], "{first}");
    assert!(env.replica.join("conf/mailboxes.json").is_file());

    // Flags, keywords, copy, move, expunge made final, a rename, a delete, a subscription, a
    // quota, a server annotation and a Sieve script, each replicated by a rolling cycle.
    s.add_flags("alice", "INBOX", "1", &[r"\Flagged", "$Work"]);
    s.add_flags("alice", "INBOX", "2", &[r"\Seen", r"\Answered"]);
    env.cycle();
    s.copy("alice", "INBOX", "1", "INBOX.Sent");
    s.move_("alice", "INBOX", "3", "INBOX.Trash");
    // Names the log quotes (a space) and writes in modified UTF-7 (Straße).
    s.create("alice", "INBOX.My Folder");
    s.create("alice", "INBOX.Stra&AN8-e");
    s.copy("alice", "INBOX", "2", "INBOX.My Folder");
    s.copy("alice", "INBOX", "5", "INBOX.Stra&AN8-e");
    env.cycle();
    s.expunge("alice", "INBOX", Some("4"));
    s.expire(&["-X", "0"]);
    env.cycle();
    s.rename("alice", "INBOX.Sent", "INBOX.Archive");
    s.create("alice", "INBOX.Old");
    s.delete("alice", "INBOX.Old");
    s.subscribe("alice", "INBOX.Archive");
    s.setquota("user.bob", "STORAGE 100000");
    s.setmetadata("cyrus", "", "/shared/comment", Some("pairsync test"));
    s.sieve_put(
        "alice",
        "main",
        "require [\"fileinto\"];\r\nif header :contains \"subject\" \"x\" { fileinto \"INBOX.Trash\"; }\r\n",
        true,
    );
    let last = env.cycle();
    let quota: Vec<PathBuf> = walk(&env.replica.join("conf/quota"));
    assert!(quota.iter().any(|p| p.ends_with("user.bob")), "quota root not replicated: {quota:?}\n{last}");
    assert!(env.replica.join("conf/annotations.db").is_file());
    assert!(walk(&env.replica.join("sieve")).iter().any(|p| p.ends_with("defaultbc.link")), "{last}");

    // Nothing is left for a further cycle, and the restore is the original.
    let idle = env.cycle();
    assert!(idle.actions_of("copy").is_empty(), "an idle cycle copied:\n{idle}");
    let fresh = env.restored_equals(&["alice", "bob"]);
    assert_eq!(fresh.sieve_scripts("alice"), [("main".to_string(), true)]);
    assert_eq!(fresh.messages("cyrus", "shared.news"), s.messages("cyrus", "shared.news"));
    assert_eq!(fresh.messages("cyrus", "shared.news").len(), 1);
    // The active script is the link Cyrus follows when it delivers.
    assert!(walk(&fresh.sieve_dir()).iter().any(|p| p.ends_with("defaultbc") && p.is_symlink()));
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_flag_change_sends_the_index_and_never_a_message() {
    let Some(env) = Env::new(Options::default()) else { return };
    let s = &env.server;
    s.create_user("alice");
    for n in 0..3 {
        s.deliver("alice", None, &s.message(&format!("m{n}"), 5000));
    }
    env.cycle();
    s.add_flags("alice", "INBOX", "1:3", &[r"\Seen"]);
    let run = env.cycle();
    let copies = run.actions_of("copy");
    assert!(copies.iter().all(|c| !c.contains("/1. ") && !c.contains("/2. ") && !c.contains("/3. ")), "{run}");
    assert!(copies.iter().any(|c| c.contains("cyrus.index")), "{run}");
    assert!(copies.iter().all(|c| !c.contains("cyrus.cache") && !c.contains("cyrus.header")), "{run}");
    // --json: the same, as an object.
    s.add_flags("alice", "INBOX", "1", &[r"\Flagged"]);
    let run = env.ok(&["--json", "mail", "-r", "-1"]);
    let summary: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{run}"));
    let copied: Vec<&str> = summary["actions"].as_array().unwrap().iter().filter_map(|a| a["path"].as_str()).collect();
    assert!(copied.len() == 1 && copied[0].ends_with("/cyrus.index"), "{run}");
    assert_eq!((summary["copied"].as_u64(), summary["exit_code"].as_u64()), (Some(1), Some(0)), "{run}");
    // A new keyword rewrites the header too.
    s.add_flags("alice", "INBOX", "2", &["$Important"]);
    let run = env.cycle();
    let copies = run.actions_of("copy");
    assert!(
        copies.iter().any(|c| c.contains("cyrus.header")) && copies.iter().any(|c| c.contains("cyrus.index")),
        "{run}"
    );
    assert!(copies.iter().all(|c| !c.contains("/2. ")), "{run}");
}

#[test]
fn an_expunged_message_leaves_the_replica_only_when_cyr_expire_removes_it() {
    let Some(env) = Env::new(Options::default()) else { return };
    let s = &env.server;
    s.create_user("alice");
    s.deliver("alice", None, &s.message("keep", 100));
    s.deliver("alice", None, &s.message("drop", 100));
    env.cycle();
    let folder = replica_folder(&env, "user.alice");
    s.expunge("alice", "INBOX", Some("2"));
    env.cycle();
    assert_eq!(message_files(&folder), ["1.", "2."], "expunged, not yet expired: still in the index");
    s.expire(&["-X", "0"]);
    let run = env.cycle();
    assert_eq!(message_files(&folder), ["1."], "{run}");
}

#[test]
fn expunge_keep_leaves_expired_messages_on_the_replica() {
    let Some(env) = Env::with(Options::default(), "expunge = \"keep\"") else { return };
    let s = &env.server;
    s.create_user("alice");
    s.deliver("alice", None, &s.message("a", 100));
    s.deliver("alice", None, &s.message("b", 100));
    env.cycle();
    s.expunge("alice", "INBOX", Some("1"));
    s.expire(&["-X", "0"]);
    env.cycle();
    assert_eq!(message_files(&replica_folder(&env, "user.alice")), ["1.", "2."]);
}

#[test]
fn a_legacy_spool_renames_a_folder_without_sending_its_messages() {
    let Some(env) = Env::new(Options { legacy_dirs: true, ..Options::default() }) else { return };
    let s = &env.server;
    s.create_user("alice");
    s.create("alice", "INBOX.Work");
    for n in 0..3 {
        s.deliver("alice", Some("INBOX.Work"), &s.message(&format!("w{n}"), 3000));
    }
    env.cycle();
    let before = env.replica.join("data/default/a/user/alice/Work");
    assert_eq!(message_files(&before), ["1.", "2.", "3."]);
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(before.join("1.")).unwrap());
    s.rename("alice", "INBOX.Work", "INBOX.Job");
    let run = env.cycle();
    let after = env.replica.join("data/default/a/user/alice/Job");
    assert!(!before.exists(), "{run}");
    assert_eq!(message_files(&after), ["1.", "2.", "3."], "{run}");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(after.join("1.")).unwrap()),
        inode,
        "moved, not copied:\n{run}"
    );
    assert!(run.actions_of("copy").iter().all(|c| !c.ends_with(". (3") && !c.contains("/1. ")), "{run}");
    // Deleted (delayed): under DELETED/ on the spool, and on the replica.
    s.delete("alice", "INBOX.Job");
    env.cycle();
    assert!(!after.exists());
    s.expire(&["-D", "0"]);
    env.cycle();
    assert!(walk(&env.replica.join("data/default")).iter().all(|p| !p.to_string_lossy().contains("DELETED")));
    env.restored_equals(&["alice"]);
}

#[test]
fn a_metapartition_spool_and_a_dotted_user_with_unixhierarchysep() {
    let opts = Options { metapartition: true, unixhierarchysep: true, ..Options::default() };
    let Some(env) = Env::new(opts) else { return };
    let s = &env.server;
    s.create_user("john.doe");
    s.create("john.doe", "INBOX/Sent");
    s.deliver("john.doe", None, &s.message("dotted", 1000));
    s.copy("john.doe", "INBOX", "1", "INBOX/Sent");
    let run = env.cycle();
    assert!(run.stdout.contains("cyrus.index"), "{run}");
    env.restored_equals(&["john.doe"]);
}

#[test]
fn deleting_and_renaming_users() {
    let Some(env) = Env::new(Options { allow_user_moves: true, ..Options::default() }) else { return };
    let s = &env.server;
    for user in ["bob", "carol"] {
        s.create_user(user);
        s.deliver(user, None, &s.message(user, 500));
    }
    s.subscribe("bob", "INBOX");
    env.cycle();
    // A renamed user keeps its mail on the replica: UNUSER bob removes nothing of robert's,
    // and nothing is sent again (the UUID layout keeps the folder).
    let bob = replica_folder(&env, "user.bob");
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&bob.join("1."));
    s.rename_user("bob", "robert");
    let run = env.cycle();
    assert!(s.list("robert").contains(&"INBOX".to_string()));
    let robert = replica_folder(&env, "user.robert");
    assert_eq!(message_files(&robert), ["1."], "{run}");
    assert_eq!(inode(&robert.join("1.")), before, "robert's message was sent again:\n{run}");
    assert!(run.actions_of("delete").is_empty(), "{run}");
    // A deleted user goes, once Cyrus expires its DELETED mailboxes (the UUID layout keeps
    // the folder under the DELETED name until then).
    let carol = replica_folder(&env, "user.carol");
    assert_eq!(message_files(&carol), ["1."]);
    s.delete_user("carol");
    env.cycle();
    assert_eq!(message_files(&carol), ["1."], "a delayed delete keeps the mailbox until cyr_expire -D");
    s.expire(&["-D", "0"]);
    let run = env.cycle();
    assert!(!carol.exists(), "{run}");
    let fresh = env.restored_equals(&["robert"]);
    assert!(fresh.list("carol").is_empty());
}

#[test]
fn the_channel_log_the_shutdown_file_and_a_kept_alternate_log() {
    let Some(env) = Env::new(Options { channels: Some("pairsync".into()), ..Options::default() }) else { return };
    let s = &env.server;
    s.create_user("alice");
    s.deliver("alice", None, &s.message("one", 100));
    // Cyrus writes only sync/pairsync/log: without -n that is refused, naming the channel.
    let run = env.run(&["mail", "-r", "-1"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("give -n pairsync"), "{run}");
    let channel_log = s.sync_log(Some("pairsync"));
    assert!(channel_log.is_file());
    env.ok(&["mail", "-r", "-1", "-n", "pairsync"]);
    assert!(!channel_log.exists(), "the log was consumed");
    assert_eq!(message_files(&replica_folder(&env, "user.alice")), ["1."]);

    // -f FILE: an alternate log, processed once and kept.
    s.deliver("alice", None, &s.message("two", 100));
    let alternate = env.dir.join("alternate.log");
    std::fs::copy(&channel_log, &alternate).unwrap();
    env.ok(&["mail", "-r", "-f", alternate.to_str().unwrap()]);
    assert!(alternate.is_file());
    assert_eq!(message_files(&replica_folder(&env, "user.alice")), ["1.", "2."]);

    // A leftover log-run is processed first, the log left for the next cycle.
    s.deliver("alice", None, &s.message("three", 100));
    std::fs::rename(&channel_log, channel_log.with_file_name("log-run")).unwrap();
    s.create_user("bob");
    assert!(channel_log.is_file());
    env.ok(&["mail", "-r", "-1", "-n", "pairsync"]);
    assert_eq!(message_files(&replica_folder(&env, "user.alice")), ["1.", "2.", "3."]);
    assert!(channel_log.is_file(), "-1 with a leftover log-run processes only that");
    assert!(!channel_log.with_file_name("log-run").exists());

    // The shutdown file (sync_shutdown_file of imapd.conf) ends a rolling run with 0.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pairsync"))
        .args([
            "-C",
            env.config.to_str().unwrap(),
            "--state-dir",
            env.state.to_str().unwrap(),
            "mail",
            "-r",
            "-n",
            "pairsync",
            "-d",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while channel_log.exists() && started.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!channel_log.exists(), "the running replicator took the log");
    std::fs::write(s.shutdown_file(), b"").unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < DEADLINE, "mail -r did not stop at the shutdown file");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(!s.shutdown_file().exists(), "the shutdown file is removed");
}

#[test]
fn rotation_while_cyrus_delivers_loses_no_line() {
    let Some(env) = Env::new(Options::default()) else { return };
    let s = &env.server;
    s.create_user("alice");
    env.cycle();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pairsync"))
        .args(["-C", env.config.to_str().unwrap(), "--state-dir", env.state.to_str().unwrap(), "mail", "-r", "-d", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for n in 0..40 {
        s.deliver("alice", None, &s.message(&format!("burst {n}"), 200));
    }
    // Wait until the running replicator has taken every line, then stop it.
    let log = s.sync_log(None);
    let started = Instant::now();
    while message_files(&replica_folder(&env, "user.alice")).len() < 40 && started.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(s.shutdown_file(), b"").unwrap();
    assert!(child.wait().unwrap().success());
    // Whatever a last rotation left is processed by one more cycle; then all 40 are there.
    if log.exists() || log.with_file_name("log-run").exists() {
        env.cycle();
    }
    assert_eq!(message_files(&replica_folder(&env, "user.alice")).len(), 40);
    env.restored_equals(&["alice"]);
}

#[test]
fn restore_never_replaces_a_mailbox_of_another_uniqueid_unless_forced() {
    let Some(env) = Env::new(Options::default()) else { return };
    let s = &env.server;
    s.create_user("alice");
    s.deliver("alice", None, &s.message("from the replica", 300));
    env.ok(&["mail", "-A"]);
    let fresh = CyrusServer::start(Options::default());
    fresh.create_user("alice");
    fresh.deliver("alice", None, &fresh.message("newer", 300));
    let config = env.dir.join("fresh.toml");
    write_config(&config, &fresh.conf(), &env.replica, "");
    let state = env.dir.join("fresh-state");
    let run = run_with(&config, &state, &["mail", "--restore", "-A"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("\"user.alice\" exists in the target spool with another uniqueid"), "{run}");
    let run = run_with(&config, &state, &["mail", "--restore", "-A", "--force", "spool"]);
    assert_eq!(run.code, 0, "{run}");
    let kept = fresh.messages("alice", "INBOX");
    assert_eq!(kept.len(), 1, "nothing merged into the mailbox kept: {kept:?}");
    assert_eq!(kept[0].subject().as_deref(), Some("newer"));
    let run = run_with(&config, &state, &["mail", "--restore", "-A", "--force", "replica"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(fresh.messages("alice", "INBOX")[0].subject().as_deref(), Some("from the replica"));
}

#[test]
fn print_only_prints_the_reconstruct_steps_that_then_work() {
    let Some(env) = Env::new(Options::default()) else { return };
    let s = &env.server;
    s.create_user("alice");
    s.deliver("alice", None, &s.message("x", 300));
    env.ok(&["mail", "-A"]);
    let fresh = CyrusServer::start(Options::default());
    let config = env.dir.join("fresh.toml");
    write_config(&config, &fresh.conf(), &env.replica, "");
    let run = run_with(&config, &env.dir.join("fresh-state"), &["-q", "mail", "--restore", "-A", "--print-only"]);
    assert_eq!(run.code, 0, "{run}");
    let commands: Vec<&str> = run.stdout.lines().collect();
    assert!(commands.iter().any(|c| c.contains("reconstruct -C") && c.contains(" -P ")), "{run}");
    assert!(commands.iter().any(|c| c.ends_with("-r -u alice")), "{run}");
    assert!(fresh.list("alice").is_empty(), "nothing reconstructed yet");
    for command in commands {
        let out = Command::new("sh").args(["-c", command]).output().unwrap();
        assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_same_user(&env.server, &fresh, "alice");
}

#[test]
fn bad_setups_get_one_line_and_their_exit_code() {
    let Some(env) = Env::new(Options::default()) else { return };
    // A missing imapd.conf: exit 2, naming it.
    let config = env.dir.join("missing.toml");
    write_config(&config, Path::new("/nowhere/imapd.conf"), &env.replica, "");
    let run = run_with(&config, &env.state, &["mail", "-A"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("/nowhere/imapd.conf"), "{run}");
    // sync_log off: -r refused (the log would never be written).
    let conf = env.dir.join("nolog.conf");
    let text = std::fs::read_to_string(env.server.conf()).unwrap().replace("sync_log: 1", "sync_log: 0");
    std::fs::write(&conf, text).unwrap();
    write_config(&config, &conf, &env.replica, "");
    let run = run_with(&config, &env.state, &["mail", "-r", "-1"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("sync_log is off"), "{run}");
    // A spool whose config directory is not there (unmounted): a safety stop, exit 4.
    let conf = env.dir.join("unmounted.conf");
    let text = std::fs::read_to_string(env.server.conf())
        .unwrap()
        .replace(&format!("configdirectory: {}", env.server.config_dir().display()), "configdirectory: /nowhere/conf");
    std::fs::write(&conf, text).unwrap();
    write_config(&config, &conf, &env.replica, "");
    let run = run_with(&config, &env.state, &["mail", "-A"]);
    assert_eq!(run.code, 4, "{run}");
    // No users: exit 2, not a silent success.
    let run = env.run(&["mail", "-A"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("no users"), "{run}");
    // --force takes replica or spool only; -n a channel imapd.conf does not list.
    let run = env.run(&["mail", "--restore", "-A", "--force", "mine"]);
    assert_eq!((run.code, run.stderr.contains("--force \"mine\": give replica or spool")), (2, true), "{run}");
    let run = env.run(&["mail", "-r", "-1", "-n", "other"]);
    assert_eq!((run.code, run.stderr.contains("-n other: not among sync_log_channels")), (2, true), "{run}");
    // An unknown user or mailbox: exit 2, naming it.
    env.server.create_user("alice");
    let run = env.run(&["mail", "-u", "nobody"]);
    assert_eq!((run.code, run.stderr.contains("\"nobody\"")), (2, true), "{run}");
    let run = env.run(&["mail", "-m", "user.alice.Nope"]);
    assert_eq!((run.code, run.stderr.contains("user.alice.Nope")), (2, true), "{run}");
}

#[test]
fn an_ftp_replica_restores_like_a_folder() {
    let Some(env) = Env::new(Options::default()) else { return };
    let s = &env.server;
    s.create_user("alice");
    s.create("alice", "INBOX.Sent");
    for n in 0..4 {
        s.deliver("alice", None, &s.message(&format!("ftp {n}"), 4000));
    }
    s.copy("alice", "INBOX", "1:2", "INBOX.Sent");
    let served = env.dir.join("ftp");
    std::fs::create_dir_all(served.join("spool")).unwrap();
    let ftp = ftp_server::FtpServer::start(&served);
    ftp.write_netrc(&env.home);
    let url = ftp.url("spool");
    env.ok(&["mail", "-A", "-S", &url]);
    s.add_flags("alice", "INBOX", "3", &[r"\Seen"]);
    s.expunge("alice", "INBOX", Some("4"));
    s.expire(&["-X", "0"]);
    let run = env.ok(&["-v", "mail", "-r", "-1", "-S", &url]);
    assert!(run.actions_of("copy").iter().all(|c| !c.contains("/3. ")), "{run}");
    // Restored from the FTP server into a fresh Cyrus.
    let fresh = CyrusServer::start(Options::default());
    let config = env.dir.join("fresh.toml");
    write_config(&config, &fresh.conf(), &env.replica, "");
    let run = run_in(&env.home, &config, &env.dir.join("fresh-state"), &["mail", "--restore", "-A", "-S", &url]);
    assert_eq!(run.code, 0, "{run}");
    assert_same_user(s, &fresh, "alice");
}

#[test]
fn a_run_killed_mid_copy_loses_nothing_and_the_next_one_completes() {
    let Some(env) = Env::new(Options::default()) else { return };
    let s = &env.server;
    s.create_user("alice");
    for n in 0..150 {
        s.deliver("alice", None, &s.message(&format!("kill {n}"), 20_000));
    }
    let folder = replica_folder(&env, "user.alice");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pairsync"))
        .args(["-C", env.config.to_str().unwrap(), "--state-dir", env.state.to_str().unwrap(), "mail", "-A"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while message_files(&folder).len() < 10 && started.elapsed() < DEADLINE {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    child.wait().unwrap();
    // Whatever was there when the kill came: never an index naming a message the replica
    // lacks (the index is written after every message).
    if folder.join("cyrus.index").exists() {
        let copied = message_files(&folder).len();
        assert!(copied == 150, "the index was written before all {copied} of 150 messages");
    }
    let run = env.ok(&["mail", "-A"]);
    assert_eq!(message_files(&folder).len(), 150, "{run}");
    env.restored_equals(&["alice"]);
}

#[test]
fn mail_log_appends_to_every_channel_and_leaves_the_log_cyrus_s() {
    let Some(env) = Env::new(Options { channels: Some("pairsync \"\"".into()), ..Options::default() }) else { return };
    let s = &env.server;
    s.create_user("alice");
    env.ok(&["mail", "-r", "-1", "-n", "pairsync"]);
    let (channel, unnamed) = (s.sync_log(Some("pairsync")), s.sync_log(None));
    let _ = std::fs::remove_file(&unnamed);
    env.ok(&["mail", "log", "MAILBOX", "user.alice"]);
    for log in [&channel, &unnamed] {
        assert_eq!(std::fs::read_to_string(log).unwrap(), "MAILBOX user.alice\n", "{}", log.display());
        let meta = std::fs::metadata(log).unwrap();
        let account = s.account();
        assert_eq!(
            (std::os::unix::fs::MetadataExt::uid(&meta), std::os::unix::fs::MetadataExt::gid(&meta)),
            (account.uid, account.gid)
        );
    }
    // Cyrus goes on appending to the file pairsync created.
    s.deliver("alice", None, &s.message("after", 100));
    assert!(std::fs::read_to_string(&channel).unwrap().contains("APPEND user.alice"));
    env.ok(&["mail", "-r", "-1", "-n", "pairsync"]);
    assert_eq!(message_files(&replica_folder(&env, "user.alice")), ["1."]);
}

#[test]
fn a_fulldirhash_legacy_spool_restores_into_a_stopped_cyrus_with_its_quota() {
    let Some(env) = Env::new(Options { legacy_dirs: true, fulldirhash: true, ..Options::default() }) else { return };
    let s = &env.server;
    s.create_user("alice");
    s.create("alice", "INBOX.Projects");
    s.deliver("alice", None, &s.message("hashed", 700));
    s.copy("alice", "INBOX", "1", "INBOX.Projects");
    s.setquota("user.alice", "STORAGE 5000");
    s.subscribe("alice", "INBOX.Projects");
    env.ok(&["mail", "-A"]);
    // fulldirhash puts alice under L (Cyrus's own hash, as mbpath said).
    assert!(env.replica.join("data/default/L/user/alice/1.").is_file());
    let mut fresh = CyrusServer::start(Options { legacy_dirs: true, fulldirhash: true, ..Options::default() });
    fresh.stop();
    let config = env.dir.join("fresh.toml");
    write_config(&config, &fresh.conf(), &env.replica, "");
    let run = run_with(&config, &env.dir.join("fresh-state"), &["mail", "--restore", "-u", "alice"]);
    assert_eq!(run.code, 0, "{run}");
    fresh.restart();
    assert_same_user(s, &fresh, "alice");
    let quota = walk(&fresh.config_dir().join("quota"));
    assert!(quota.iter().any(|p| p.ends_with("user.alice")), "{quota:?}");
}

#[test]
fn an_emptied_mailbox_list_is_a_safety_stop_not_a_wipe() {
    let Some(mut env) = Env::new(Options::default()) else { return };
    env.server.create_user("alice");
    env.server.deliver("alice", None, &env.server.message("precious", 300));
    env.ok(&["mail", "-A"]);
    let folder = replica_folder(&env, "user.alice");
    // The same imapd.conf now names a config directory whose mailboxes.db lists nothing.
    env.server.stop();
    let empty = env.server.base().join("empty-conf");
    std::fs::create_dir_all(&empty).unwrap();
    env.server.chown_to_cyrus(&empty);
    let conf = env.server.conf();
    let text = std::fs::read_to_string(&conf).unwrap();
    let old = format!("configdirectory: {}", env.server.config_dir().display());
    assert!(text.contains(&old));
    std::fs::write(&conf, text.replace(&old, &format!("configdirectory: {}", empty.display()))).unwrap();
    env.server.tool("ctl_mboxlist", &["-d"]);
    let run = env.run(&["mail", "-A"]);
    assert_eq!(run.code, 4, "{run}");
    assert!(run.stderr.contains("lists no mailbox at all"), "{run}");
    assert_eq!(message_files(&folder), ["1."], "nothing deleted");
}

#[test]
fn legacy_users_whose_names_prefix_each_other_keep_their_own_databases() {
    let opts = Options { legacy_dirs: true, unixhierarchysep: true, sieve: true, ..Options::default() };
    let Some(env) = Env::new(opts.clone()) else { return };
    let s = &env.server;
    for user in ["john", "john.doe"] {
        s.create_user(user);
        s.create(user, "INBOX/Lists");
        s.subscribe(user, "INBOX/Lists");
        s.deliver(user, None, &s.message(user, 400));
        s.sieve_put(user, "main", "keep;\r\n", true);
    }
    env.ok(&["mail", "-u", "john"]);
    env.ok(&["mail", "-u", "john.doe"]);
    let run = env.ok(&["-v", "mail", "-u", "john"]);
    assert!(run.actions_of("delete").is_empty(), "{run}");
    let files: Vec<String> = walk(&env.replica.join("conf/user"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["john.sub", "john.doe.sub"] {
        assert!(files.iter().any(|f| f == want), "{want} missing from the replica: {files:?}");
    }
    let fresh = env.restored_equals(&["john", "john.doe"]);
    for user in ["john", "john.doe"] {
        assert_eq!(fresh.sieve_scripts(user), [("main".to_string(), true)], "{user}");
    }
}

#[test]
fn a_delivery_sends_only_what_cyrus_appended_to_its_cache() {
    let Some(env) = Env::new(Options::default()) else { return };
    let s = &env.server;
    s.create_user("alice");
    for n in 0..20 {
        s.deliver("alice", None, &s.message(&format!("c{n}"), 3000));
    }
    env.ok(&["mail", "-A"]);
    let master = s.mailbox_path("user.alice").join("cyrus.cache");
    let replica = replica_folder(&env, "user.alice").join("cyrus.cache");
    let sent_for = |run: &Run| -> u64 {
        let line =
            run.actions_of("copy").into_iter().find(|l| l.contains("cyrus.cache")).unwrap_or_else(|| panic!("{run}"));
        line.rsplit('(').next().unwrap().split(' ').next().unwrap().parse().unwrap()
    };
    for round in 0..2 {
        let before = std::fs::metadata(&master).unwrap().len();
        s.deliver("alice", None, &s.message(&format!("more {round}"), 3000));
        let run = env.cycle();
        let after = std::fs::metadata(&master).unwrap().len();
        assert_eq!(sent_for(&run), after - before, "only the appended bytes:\n{run}");
        assert_eq!(std::fs::read(&replica).unwrap(), std::fs::read(&master).unwrap(), "{run}");
    }
    // cyr_expire rewrites the cache (a new file): sent whole, then appended to again.
    s.expunge("alice", "INBOX", Some("1:5"));
    s.expire(&["-X", "0"]);
    let run = env.cycle();
    assert_eq!(sent_for(&run), std::fs::metadata(&master).unwrap().len(), "{run}");
    assert_eq!(std::fs::read(&replica).unwrap(), std::fs::read(&master).unwrap());
    let before = std::fs::metadata(&master).unwrap().len();
    s.deliver("alice", None, &s.message("last", 3000));
    let run = env.cycle();
    assert_eq!(sent_for(&run), std::fs::metadata(&master).unwrap().len() - before, "{run}");
    assert_eq!(std::fs::read(&replica).unwrap(), std::fs::read(&master).unwrap());
    env.restored_equals(&["alice"]);
}
