//! `pairsync mail` against a real Dovecot (issue 10, item 9): Maildirs filled by `dovecot-lda`
//! and changed by `doveadm` (tests/dovecot), replicated by the real binary to a directory replica
//! and to an FTP server (tests/ftp_server), restored and read back by `doveadm fetch`, and
//! replicated by rolling cycles from a sync log and from inotify.
//!
//! Skipped (passing, with a note) without dovecot-core, unless `PAIRSYNC_TEST_DOVECOT=1` (CI),
//! which makes a missing Dovecot a failure. Every failure shows the pairsync run (command line,
//! exit code, stdout, stderr) and how the replica differs from the store, path by path.
//!
//! What "the replica equals the store" means here: the harness's `tree()` (regular files with
//! bytes and mtime in seconds), which leaves out the caches Dovecot rewrites on every access
//! (`dovecot.index*`, `dovecot.list.index*`, `dovecot.mailbox.log`) and the contents of tmp/;
//! [`assert_no_transient_files`] checks separately that none of those reached the replica.

mod dovecot;
mod ftp_server;

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dovecot::{diff, ignored, inode, message_files, tree, Dovecot, Store, Tree};
use ftp_server::{FtpServer, ServerKind};

/// The received date (mtime) given to the first delivered message; each next one is an hour
/// later, so that a copy that does not keep the mtime shows (a delivery "now" would not).
const RECEIVED: i64 = 1_700_000_000;
/// How long a background run may take to do what is polled for.
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
    /// The `-v` lines that report an action on a side (`copy`, `rename`, `delete`, `mkdir`).
    fn actions(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| ["copy ", "rename ", "delete ", "mkdir "].iter().any(|verb| l.starts_with(verb)))
            .collect()
    }

    fn actions_of(&self, verb: &str) -> Vec<&str> {
        self.actions().into_iter().filter(|l| l.starts_with(&format!("{verb} "))).collect()
    }
}

/// The FTP replica: the server and the folder on disk it serves as the replica's root.
struct Ftp {
    server: FtpServer,
    /// `<served root>/vmail`: what the replica holds, as files.
    replica: PathBuf,
}

/// A Dovecot store, a directory replica "backup" (the default) and, optionally, an FTP replica
/// "ftp", a state folder, an isolated HOME (holding the FTP password in .netrc) and the config.
struct Env {
    store: Store,
    _tmp: tempfile::TempDir,
    replica: PathBuf,
    state: PathBuf,
    home: PathBuf,
    config: PathBuf,
    ftp: Option<Ftp>,
    /// Received dates handed out so far.
    delivered: std::cell::Cell<i64>,
}

impl Env {
    /// `None` (the test returns) when Dovecot is missing and not required.
    fn new(with_ftp: bool) -> Option<Env> {
        if Dovecot::skip() {
            return None;
        }
        let store = Store::new();
        let tmp = tempfile::Builder::new().prefix("pairsync-mail-dovecot-").tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let (replica, state, home, config) =
            (dir.join("backup"), dir.join("state"), dir.join("home"), dir.join("pairsync.toml"));
        std::fs::create_dir_all(&home).unwrap();
        let mut text = format!(
            "# written by tests/mail_dovecot.rs\n[mail]\nstore = \"{}\"\ndefault_replica = \"backup\"\n\n\
             [[mail.replica]]\nname = \"backup\"\ntype = \"directory\"\ndirectory = \"{}\"\n",
            store.root.display(),
            replica.display()
        );
        let ftp = with_ftp.then(|| {
            let served = dir.join("ftp");
            let ftp_replica = served.join("vmail");
            std::fs::create_dir_all(&ftp_replica).unwrap();
            let server = FtpServer::start(&served);
            server.write_netrc(&home);
            // ftp://tester@127.0.0.1:PORT/<dir>: the server and the directory as the server names it.
            let url = server.url("vmail");
            let (_, rest) = url.split_once('@').unwrap();
            let (host, directory) = rest.split_once('/').unwrap();
            text.push_str(&format!(
                "\n[[mail.replica]]\nname = \"ftp\"\ntype = \"ftp\"\nserver = \"{host}\"\nusername = \"{}\"\n\
                 directory = \"/{directory}\"\n",
                server.user
            ));
            Ftp { replica: ftp_replica.canonicalize().unwrap(), server }
        });
        std::fs::write(&config, text).unwrap();
        Some(Env { store, _tmp: tmp, replica, state, home, config, ftp, delivered: std::cell::Cell::new(0) })
    }

    fn ftp(&self) -> &Ftp {
        self.ftp.as_ref().expect("an Env with FTP")
    }

    /// The binary with HOME and XDG isolated, `-C CONFIG --state-dir STATE mail`.
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pairsync"));
        command
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_STATE_HOME", self.home.join("state"))
            .env_remove("PAIRSYNC_CONFIG")
            .env_remove("PAIRSYNC_STATE_DIR")
            .arg("-C")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("mail")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = self.command().args(args).output().unwrap();
        Run {
            command: format!(
                "pairsync -C {} --state-dir {} mail {}",
                self.config.display(),
                self.state.display(),
                args.join(" ")
            ),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A run that must exit 0.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "expected exit 0\n{run}\n{}", self.differences(&self.replica));
        run
    }

    /// Delivers a message with dovecot-lda and gives it the next received date (its mtime, as an
    /// IMAP APPEND with a date would). Returns its path.
    fn deliver(&self, user: &str, mailbox: Option<&str>, subject: &str) -> PathBuf {
        let n = self.delivered.get();
        self.delivered.set(n + 1);
        let size = 300 + (n as usize * 397) % 2_500;
        let path = self.store.deliver(user, mailbox, &self.store.message(subject, size));
        filetime::set_file_mtime(&path, filetime::FileTime::from_unix_time(RECEIVED + 3_600 * n, 0)).unwrap();
        path
    }

    /// How the replica at `replica` differs from the store (empty when equal).
    fn differences(&self, replica: &Path) -> String {
        let d = diff(&tree(&self.store.root), &tree(replica));
        if d.is_empty() {
            "(the replica equals the store)".into()
        } else {
            format!("replica {} (b) vs store {} (a):\n{d}", replica.display(), self.store.root.display())
        }
    }

    /// The directory replica holds the store's files, bytes and mtimes, and nothing else.
    #[track_caller]
    fn assert_replica_is_store(&self, after: &Run, step: &str) {
        let d = diff(&tree(&self.store.root), &tree(&self.replica));
        assert!(d.is_empty(), "{step}: the replica differs from the store\n{after}\nreplica (b) vs store (a):\n{d}");
        assert_no_transient_files(&self.replica, after);
    }
}

/// Nothing Dovecot rewrites on every access, and nothing of a tmp/ folder, reached the replica
/// (the tree comparison leaves those out on both sides, so it would not see them).
#[track_caller]
fn assert_no_transient_files(replica: &Path, after: &Run) {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(replica).min_depth(1) {
        let entry = entry.unwrap();
        let in_tmp = entry.path().parent().and_then(Path::file_name).is_some_and(|n| n == "tmp");
        if entry.file_type().is_file() && (in_tmp || ignored(&entry.file_name().to_string_lossy())) {
            found.push(entry.path().strip_prefix(replica).unwrap().display().to_string());
        }
    }
    assert!(found.is_empty(), "caches or tmp/ files on the replica {}: {found:?}\n{after}", replica.display());
}

/// The tree without mtimes, for a replica on a server that cannot set them.
fn contents_only(tree: Tree) -> Tree {
    tree.into_iter().map(|(path, (bytes, _))| (path, (bytes, 0))).collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The Maildir unique name: the file name before `:2,`.
fn unique(path: &Path) -> String {
    let name = file_name(path);
    name.split_once(":2,").map_or(name.clone(), |(u, _)| u.to_string())
}

/// The one message file of a mailbox folder (new/ or cur/) with this unique name.
#[track_caller]
fn find(folder: &Path, unique_name: &str) -> PathBuf {
    let found: Vec<PathBuf> = message_files(folder).into_iter().filter(|p| unique(p) == unique_name).collect();
    match &found[..] {
        [one] => one.clone(),
        _ => panic!("{unique_name} in {}: found {found:?} among {:?}", folder.display(), message_files(folder)),
    }
}

/// A store path as the same path under another root (the replica mirrors the store's layout).
fn on(root: &Path, store: &Store, path: &Path) -> PathBuf {
    root.join(path.strip_prefix(&store.root).unwrap())
}

/// What `doveadm fetch 'uid flags hdr.subject'` shows of a mailbox: (uid, flags sorted and
/// without \Recent, which only says whether a session has claimed the message yet, subject).
fn fetched(store: &Store, user: &str, mailbox: &str) -> Vec<(String, Vec<String>, String)> {
    store
        .fetch_rows(user, mailbox, "uid flags hdr.subject")
        .into_iter()
        .map(|row| {
            let mut flags: Vec<String> =
                row["flags"].split_whitespace().filter(|f| *f != r"\Recent").map(str::to_string).collect();
            flags.sort();
            (row["uid"].clone(), flags, row["hdr.subject"].clone())
        })
        .collect()
}

/// Polls `done` every 50 ms until it holds or `DEADLINE` passes; returns whether it held.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if done() {
            return true;
        }
        if started.elapsed() > DEADLINE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `pairsync mail` run in the background; killed (by its own handle) if the test ends first.
struct Background {
    child: Option<Child>,
}

impl Background {
    /// Waits up to `DEADLINE` for it to exit; its exit code and output.
    fn finish(mut self) -> Result<Run, String> {
        let mut child = self.child.take().unwrap();
        let exited = wait_until(|| child.try_wait().unwrap().is_some());
        if !exited {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let run = Run {
            command: "pairsync mail (background)".into(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if exited {
            Ok(run)
        } else {
            Err(format!("did not exit within {DEADLINE:?} (killed)\n{run}"))
        }
    }

    /// Kills it and returns what it printed, for a failure message.
    fn kill(mut self) -> String {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        format!(
            "--- its stdout\n{}--- its stderr\n{}---",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// alice and bob, each with INBOX, Sent and the nested Work.2024, filled by dovecot-lda:
/// 28 messages.
fn fill(env: &Env) {
    for (user, counts) in [("alice", [10, 4, 4]), ("bob", [6, 2, 2])] {
        for (mailbox, count) in [None, Some("Sent"), Some("Work.2024")].into_iter().zip(counts) {
            for i in 0..count {
                env.deliver(user, mailbox, &format!("{user} {} {i}", mailbox.unwrap_or("INBOX")));
            }
        }
    }
}

// ---- 1. a directory replica follows every kind of change Dovecot makes ----

#[test]
fn a_directory_replica_stays_byte_identical_through_every_doveadm_change() {
    // Guards -A and -u against what Dovecot really writes: after deliveries, flag changes (with
    // a keyword, and a new/ -> cur/ move), expunges, copies, moves, and mailbox create, rename
    // and delete, the directory replica holds the store's files byte for byte with their mtimes.
    let Some(env) = Env::new(false) else { return };
    let store = &env.store;
    fill(&env);
    let run = env.ok(&["-A"]);
    env.assert_replica_is_store(&run, "initial -A");
    let messages = tree(&env.replica).keys().filter(|p| p.contains("/new/") || p.contains("/cur/")).count();
    assert_eq!(messages, 28, "every delivered message on the replica\n{run}");

    // Flags, a keyword (dovecot-keywords is written), a removal, and new/ -> cur/.
    store.flags_add("alice", "INBOX", "subject \"alice INBOX 1\"", r"\Seen");
    store.flags_add("alice", "INBOX", "subject \"alice INBOX 2\"", r"\Flagged $Label1");
    store.flags_add("alice", "Sent", "all", r"\Seen \Answered");
    store.flags_remove("alice", "Sent", "subject \"alice Sent 0\"", r"\Answered");
    store.force_resync("alice", "Sent");
    store.flags_add("bob", "INBOX", "subject \"bob INBOX 3\"", r"\Deleted");
    let run = env.ok(&["-u", "alice", "bob"]);
    env.assert_replica_is_store(&run, "after flag changes, -u alice bob");

    store.expunge("alice", "INBOX", "subject \"alice INBOX 3\"");
    store.expunge("alice", "INBOX", "subject \"alice INBOX 4\"");
    store.expunge("bob", "INBOX", "deleted");
    let run = env.ok(&["-A"]);
    env.assert_replica_is_store(&run, "after expunges, -A");

    store.copy("alice", "INBOX", "Work.2024", "subject \"alice INBOX 5\"");
    store.copy("bob", "Sent", "INBOX", "all");
    let run = env.ok(&["-u", "alice", "bob"]);
    env.assert_replica_is_store(&run, "after copies, -u alice bob");

    store.move_("alice", "INBOX", "Sent", "subject \"alice INBOX 2\"");
    store.move_("alice", "INBOX", "Work.2024", "subject \"alice INBOX 6\"");
    store.move_("bob", "INBOX", "Work.2024", "subject \"bob INBOX 0\"");
    let run = env.ok(&["-A"]);
    env.assert_replica_is_store(&run, "after moves, -A");

    store.mailbox_create("alice", "Archive");
    store.mailbox_create("bob", "Lists.rust");
    env.deliver("bob", Some("Lists.rust"), "bob Lists.rust 0");
    let run = env.ok(&["-u", "alice", "bob"]);
    env.assert_replica_is_store(&run, "after mailbox create, -u alice bob");
    assert!(env.replica.join("alice/Maildir/.Archive/cur").is_dir(), "the empty mailbox's folders\n{run}");

    store.mailbox_rename("alice", "Work.2024", "Projects.2024");
    let run = env.ok(&["-u", "alice"]);
    env.assert_replica_is_store(&run, "after mailbox rename, -u alice");

    store.mailbox_delete("bob", "Work.2024");
    store.mailbox_delete("alice", "Archive");
    let run = env.ok(&["-A"]);
    env.assert_replica_is_store(&run, "after mailbox delete, -A");
    for gone in ["bob/Maildir/.Work.2024", "alice/Maildir/.Archive", "alice/Maildir/.Work.2024"] {
        assert!(!env.replica.join(gone).exists(), "{gone} is still on the replica\n{run}");
    }

    let again = env.ok(&["-v", "-A"]);
    assert_eq!(again.actions(), Vec::<&str>::new(), "a pass after the last one has nothing to do\n{again}");
}

// ---- 2. cost: a flag change and a mailbox rename are renames on the replica ----

#[test]
fn a_flag_change_is_one_rename_on_the_directory_replica_and_sends_no_bytes() {
    // Guards item 6's "a flag change is one rename and zero bytes sent" with Dovecot's real
    // renames: the replica's file keeps its inode, -v shows a rename and no copy.
    let Some(env) = Env::new(false) else { return };
    for i in 0..3 {
        env.deliver("alice", None, &format!("alpha {i}"));
    }
    let first = env.ok(&["-A"]);
    let inbox = env.store.mailbox_dir("alice", "INBOX");
    let target = message_files(&inbox).into_iter().next().unwrap();
    let id = unique(&target);
    let replica_inbox = on(&env.replica, &env.store, &inbox);
    let before = inode(&find(&replica_inbox, &id));

    env.store.flags_add("alice", "INBOX", &format!("guid {id}"), r"\Seen");
    let flagged = find(&inbox, &id);
    assert_ne!(flagged, target, "fixture: Dovecot renamed the file");
    let run = env.ok(&["-v", "-u", "alice"]);
    env.assert_replica_is_store(&run, "after \\Seen, -u alice");
    let on_replica = on(&env.replica, &env.store, &flagged);
    assert_eq!(inode(&on_replica), before, "{} was rewritten, not renamed\n{first}\n{run}", on_replica.display());
    let renames = run.actions_of("rename");
    assert_eq!(renames.len(), 1, "one rename, of {id}\n{run}");
    assert!(renames[0].contains(&id) && renames[0].contains(":2,S"), "{}\n{run}", renames[0]);
    assert_eq!(run.actions_of("copy"), Vec::<&str>::new(), "a flag change copies nothing\n{run}");
    assert!(run.stdout.contains("copied 0 (0 B)"), "{run}");
}

#[test]
fn a_mailbox_rename_is_one_folder_rename_on_the_directory_replica() {
    // Guards item 6's "a renamed mailbox is one folder rename on the replica": Dovecot renames
    // .Work.2024 in one rename(2); the replica renames its folder too (same inode), and moves
    // or copies none of its messages one by one.
    let Some(env) = Env::new(false) else { return };
    env.deliver("alice", None, "inbox 0");
    for i in 0..4 {
        env.deliver("alice", Some("Work.2024"), &format!("work {i}"));
    }
    env.ok(&["-A"]);
    let folder = env.replica.join("alice/Maildir/.Work.2024");
    let before = inode(&folder);

    env.store.mailbox_rename("alice", "Work.2024", "Old.2024");
    let run = env.ok(&["-v", "-u", "alice"]);
    env.assert_replica_is_store(&run, "after the mailbox rename, -u alice");
    let renamed = env.replica.join("alice/Maildir/.Old.2024");
    assert_eq!(inode(&renamed), before, "the replica's folder was rebuilt, not renamed\n{run}");
    let renames = run.actions_of("rename");
    assert_eq!(
        renames,
        ["rename destination: alice/Maildir/.Work.2024 -> alice/Maildir/.Old.2024"],
        "one rename, of the folder\n{run}"
    );
    assert_eq!(run.actions_of("copy"), Vec::<&str>::new(), "no message sent again\n{run}");
}

// ---- 3. the same against an FTP replica ----

/// The commands the FTP server received since the last clear; `None` (with a note) for a server
/// that keeps no command log (only the in-process libunftp one does).
fn ftp_commands(ftp: &Ftp) -> Option<Vec<String>> {
    if ftp.server.kind != ServerKind::Libunftp {
        eprintln!("note: {:?} keeps no command log; the FTP command checks run with libunftp", ftp.server.kind);
        return None;
    }
    Some(ftp.server.commands())
}

/// The commands of these verbs (STOR, RNFR, MLSD...).
fn with_verb<'c>(commands: &'c [String], verbs: &[&str]) -> Vec<&'c String> {
    commands
        .iter()
        .filter(|c| verbs.iter().any(|v| c.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case(v))))
        .collect()
}

/// The FTP replica holds the store's files byte for byte; with mtimes too where the server can
/// set them (MFMT: pyftpdlib), else (libunftp, vsftpd) the upload time is all it can keep.
#[track_caller]
fn assert_ftp_replica_is_store(env: &Env, after: &Run, step: &str) {
    let ftp = env.ftp();
    let (store_tree, replica_tree) = if ftp.server.kind.has_mfmt() {
        (tree(&env.store.root), tree(&ftp.replica))
    } else {
        (contents_only(tree(&env.store.root)), contents_only(tree(&ftp.replica)))
    };
    let d = diff(&store_tree, &replica_tree);
    assert!(d.is_empty(), "{step}: the FTP replica differs from the store\n{after}\nreplica (b) vs store (a):\n{d}");
    assert_no_transient_files(&ftp.replica, after);
}

#[test]
fn an_ftp_replica_equals_the_store_and_flag_changes_and_mailbox_renames_are_one_rnfr() {
    // Guards the FTP replica: the initial -A leaves the served folder equal to the store; a
    // flag change costs one RNFR/RNTO of the message and no STOR or APPE; a mailbox rename one
    // RNFR/RNTO of its folder (the server's command log; libunftp only).
    let Some(env) = Env::new(true) else { return };
    let ftp = env.ftp();
    fill(&env);
    let run = env.ok(&["-S", "ftp", "-A"]);
    assert_ftp_replica_is_store(&env, &run, "initial -A");

    let inbox = env.store.mailbox_dir("alice", "INBOX");
    let id = unique(&message_files(&inbox).into_iter().next().unwrap());
    env.store.flags_add("alice", "INBOX", &format!("guid {id}"), r"\Flagged");
    ftp.server.clear_commands();
    let run = env.ok(&["-v", "-S", "ftp", "-u", "alice"]);
    assert_ftp_replica_is_store(&env, &run, "after \\Flagged, -u alice");
    assert_eq!(run.actions_of("copy"), Vec::<&str>::new(), "a flag change copies nothing\n{run}");
    if let Some(commands) = ftp_commands(ftp) {
        let uploads = with_verb(&commands, &["STOR", "APPE", "STOU"]);
        let rnfr = with_verb(&commands, &["RNFR"]);
        assert!(uploads.is_empty(), "a flag change uploaded {uploads:?}\n{run}\n--- server commands\n{commands:#?}");
        assert_eq!(rnfr.len(), 1, "exactly one RNFR\n{run}\n--- server commands\n{commands:#?}");
        assert!(rnfr[0].contains(&id) && !rnfr[0].contains(":2,"), "the RNFR names {id}: {}", rnfr[0]);
    }

    env.store.mailbox_rename("alice", "Work.2024", "Old.2024");
    ftp.server.clear_commands();
    let run = env.ok(&["-v", "-S", "ftp", "-u", "alice"]);
    assert_ftp_replica_is_store(&env, &run, "after the mailbox rename, -u alice");
    assert_eq!(
        run.actions_of("rename"),
        ["rename destination: alice/Maildir/.Work.2024 -> alice/Maildir/.Old.2024"],
        "one rename, of the folder\n{run}"
    );
    if let Some(commands) = ftp_commands(ftp) {
        let uploads = with_verb(&commands, &["STOR", "APPE", "STOU"]);
        let rnfr = with_verb(&commands, &["RNFR"]);
        assert!(uploads.is_empty(), "a mailbox rename uploaded {uploads:?}\n{run}\n--- server commands\n{commands:#?}");
        assert_eq!(rnfr.len(), 1, "exactly one RNFR\n{run}\n--- server commands\n{commands:#?}");
        assert!(rnfr[0].ends_with("/alice/Maildir/.Work.2024"), "the RNFR names the folder: {}", rnfr[0]);
    }
}

#[test]
fn a_rolling_cycle_to_ftp_lists_nothing_and_uploads_only_the_logged_delivery() {
    // Guards item 5's "cost follows the work" over FTP: a rolling cycle trusts the state for the
    // replica (no MLSD, LIST or NLST) and uploads alice's logged delivery (and her changed
    // dovecot-uidlist), nothing of bob's.
    let Some(env) = Env::new(true) else { return };
    let ftp = env.ftp();
    for user in ["alice", "bob"] {
        env.deliver(user, None, &format!("{user} first"));
        env.deliver(user, Some("Sent"), &format!("{user} sent"));
    }
    env.ok(&["-S", "ftp", "-A"]);
    let alice_new = env.deliver("alice", None, "alice second");
    let bob_new = env.deliver("bob", None, "bob second");
    env.ok(&["log", "APPEND", "user.alice"]);
    ftp.server.clear_commands();
    let run = env.ok(&["-v", "-S", "ftp", "-r", "-1"]);
    let on_replica = on(&ftp.replica, &env.store, &alice_new);
    assert_eq!(
        std::fs::read(&on_replica).ok(),
        Some(std::fs::read(&alice_new).unwrap()),
        "alice's logged delivery {}\n{run}",
        on_replica.display()
    );
    assert!(!on(&ftp.replica, &env.store, &bob_new).exists(), "bob's unlogged delivery was replicated\n{run}");
    let d = diff(&contents_only(tree(&env.store.root.join("alice"))), &contents_only(tree(&ftp.replica.join("alice"))));
    assert!(d.is_empty(), "alice's FTP replica (b) vs store (a)\n{run}\n{d}");
    if let Some(commands) = ftp_commands(ftp) {
        let listings = with_verb(&commands, &["MLSD", "LIST", "NLST"]);
        assert!(listings.is_empty(), "a rolling cycle listed {listings:?}\n{run}\n--- server commands\n{commands:#?}");
        let uploads = with_verb(&commands, &["STOR", "APPE", "STOU"]);
        assert!(!uploads.is_empty(), "{run}\n--- server commands\n{commands:#?}");
        let elsewhere: Vec<&&String> = uploads.iter().filter(|c| !c.contains("/alice/Maildir/")).collect();
        assert!(elsewhere.is_empty(), "uploads outside alice's Maildir: {elsewhere:?}\n{commands:#?}");
        let touching_bob: Vec<&String> = commands.iter().filter(|c| c.contains("/bob")).collect();
        assert!(touching_bob.is_empty(), "commands on bob's folders: {touching_bob:?}\n{run}");
    }
}

#[test]
fn a_user_pass_to_ftp_lists_only_that_users_folders() {
    // Guards item 5's "cost follows the work" for -u over FTP: `mail -u alice` lists alice's
    // mailbox folders on the replica (to repair them), and none of bob's.
    let Some(env) = Env::new(true) else { return };
    let ftp = env.ftp();
    for user in ["alice", "bob"] {
        env.deliver(user, None, &format!("{user} first"));
        env.deliver(user, Some("Work.2024"), &format!("{user} work"));
    }
    env.ok(&["-S", "ftp", "-A"]);
    ftp.server.clear_commands();
    let run = env.ok(&["-v", "-S", "ftp", "-u", "alice"]);
    assert_eq!(run.actions(), Vec::<&str>::new(), "nothing changed\n{run}");
    let Some(commands) = ftp_commands(ftp) else { return };
    let listings = with_verb(&commands, &["MLSD", "LIST", "NLST"]);
    assert!(
        listings.iter().any(|c| c.contains("/alice/Maildir")),
        "-u alice lists alice's folders to repair them\n{run}\n--- server commands\n{commands:#?}"
    );
    let touching_bob: Vec<&String> = commands.iter().filter(|c| c.contains("/bob")).collect();
    assert!(touching_bob.is_empty(), "-u alice touched bob's folders: {touching_bob:#?}\n{run}");
}

// ---- 4. restore, read back by Dovecot ----

#[test]
fn a_restored_maildir_is_read_back_by_doveadm_with_every_message_and_flag() {
    // Guards --restore: alice's Maildir wiped, `mail --restore -u alice` brings back every
    // mailbox with its messages, flags (in the names), keywords (dovecot-keywords), UIDs
    // (dovecot-uidlist is restored too, so UIDs are compared as well), subscriptions; every
    // restored file and folder belongs to the store's owner, and Dovecot can change them.
    let Some(env) = Env::new(false) else { return };
    let store = &env.store;
    fill(&env);
    store.flags_add("alice", "INBOX", "subject \"alice INBOX 1\"", r"\Seen");
    store.flags_add("alice", "INBOX", "subject \"alice INBOX 2\"", r"\Flagged $Label1");
    store.flags_add("alice", "INBOX", "subject \"alice INBOX 3\"", r"\Answered \Draft");
    store.flags_add("alice", "Sent", "all", r"\Seen");
    store.force_resync("alice", "Sent");
    store.flags_add("alice", "Work.2024", "subject \"alice Work.2024 0\"", "$Label2 \\Seen");
    store.expunge("alice", "INBOX", "subject \"alice INBOX 9\"");
    // Dovecot also lists "Work", the parent of Work.2024, which has no folder.
    let listed = store.mailboxes("alice");
    let mailboxes = ["INBOX", "Sent", "Work.2024"];
    let before: BTreeMap<&str, _> = mailboxes.iter().map(|m| (*m, fetched(store, "alice", m))).collect();
    let run = env.ok(&["-A"]);
    env.assert_replica_is_store(&run, "before the wipe");
    let bob_before = tree(&store.root.join("bob"));

    std::fs::remove_dir_all(store.root.join("alice/Maildir")).unwrap();
    let run = env.ok(&["--restore", "-u", "alice"]);
    let d = diff(&tree(&env.replica.join("alice")), &tree(&store.root.join("alice")));
    assert!(d.is_empty(), "the restored Maildir (b) differs from the replica (a)\n{run}\n{d}");
    assert!(diff(&bob_before, &tree(&store.root.join("bob"))).is_empty(), "bob was touched\n{run}");
    let owner = &store.owner;
    for entry in walkdir::WalkDir::new(store.root.join("alice")) {
        let entry = entry.unwrap();
        let meta = entry.path().symlink_metadata().unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (owner.uid, owner.gid),
            "{} is not owned by the store's user {} ({}:{})\n{run}",
            entry.path().display(),
            owner.name,
            owner.uid,
            owner.gid
        );
    }

    assert_eq!(store.mailboxes("alice"), listed, "the mailboxes Dovecot lists after the restore\n{run}");
    for mailbox in mailboxes {
        let after = fetched(store, "alice", mailbox);
        assert_eq!(after, before[mailbox], "doveadm fetch of {mailbox} after the restore\n{run}");
    }
    // Dovecot can change what was restored: a flag (a rename in cur/ or new/), and a delivery
    // (dovecot-uidlist rewritten).
    store.flags_add("alice", "INBOX", "all", r"\Flagged");
    env.deliver("alice", None, "after the restore");
    let inbox = fetched(store, "alice", "INBOX");
    assert_eq!(inbox.len(), before["INBOX"].len() + 1, "{inbox:?}");
    assert!(inbox[..inbox.len() - 1].iter().all(|(_, flags, _)| flags.contains(&r"\Flagged".to_string())), "{inbox:?}");
}

#[test]
fn a_maildir_restored_from_the_ftp_replica_is_read_back_by_doveadm() {
    // Guards --restore from an FTP replica (-S ftp): alice's wiped Maildir comes back from the server
    // with every message, flag and keyword (doveadm fetch as before the wipe, UIDs included:
    // dovecot-uidlist comes back too) and the files are the store owner's.
    let Some(env) = Env::new(true) else { return };
    for i in 0..3 {
        env.deliver("alice", None, &format!("alice INBOX {i}"));
        env.deliver("alice", Some("Sent"), &format!("alice Sent {i}"));
    }
    env.store.flags_add("alice", "INBOX", "subject \"alice INBOX 1\"", r"\Seen $Label1");
    env.store.flags_add("alice", "Sent", "all", r"\Seen");
    let before: Vec<_> = ["INBOX", "Sent"].iter().map(|m| fetched(&env.store, "alice", m)).collect();
    env.ok(&["-S", "ftp", "-A"]);
    // The received dates survive the round trip only where the server sets mtimes (MFMT).
    let comparable = |t: Tree| if env.ftp().server.kind.has_mfmt() { t } else { contents_only(t) };
    let saved = comparable(tree(&env.store.root.join("alice")));
    std::fs::remove_dir_all(env.store.root.join("alice/Maildir")).unwrap();
    let run = env.ok(&["-S", "ftp", "--restore", "-u", "alice"]);
    let d = diff(&saved, &comparable(tree(&env.store.root.join("alice"))));
    assert!(d.is_empty(), "the restored Maildir (b) differs from the one wiped (a)\n{run}\n{d}");
    for entry in walkdir::WalkDir::new(env.store.root.join("alice")) {
        let meta = entry.as_ref().unwrap().path().symlink_metadata().unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (env.store.owner.uid, env.store.owner.gid),
            "{:?}\n{run}",
            entry.unwrap().path()
        );
    }
    let after: Vec<_> = ["INBOX", "Sent"].iter().map(|m| fetched(&env.store, "alice", m)).collect();
    assert_eq!(after, before, "doveadm fetch after the restore from FTP\n{run}");
}

// ---- 5. rolling replication ----

#[test]
fn a_rolling_cycle_replicates_only_the_mailboxes_its_log_names() {
    // Guards item 5: `mail log APPEND user.alice` (a delivery hook) then `mail -r -1`
    // replicates alice's new message and touches nothing else: bob's delivery, which no log
    // line names, waits for a later -A; the log is consumed.
    let Some(env) = Env::new(false) else { return };
    env.deliver("alice", None, "alice first");
    env.deliver("bob", None, "bob first");
    env.ok(&["-A"]);
    let bob_replica_before = tree(&env.replica.join("bob"));

    let alice_new = env.deliver("alice", None, "alice second");
    let bob_new = env.deliver("bob", None, "bob second");
    env.ok(&["log", "APPEND", "user.alice"]);
    let log = env.state.join("mail/log");
    assert!(log.is_file(), "mail log writes the sync log at {}", log.display());
    let run = env.ok(&["-v", "-r", "-1"]);
    let on_replica = on(&env.replica, &env.store, &alice_new);
    assert_eq!(
        std::fs::read(&on_replica).ok(),
        Some(std::fs::read(&alice_new).unwrap()),
        "alice's logged delivery {}\n{run}",
        on_replica.display()
    );
    let d = diff(&tree(&env.store.root.join("alice")), &tree(&env.replica.join("alice")));
    assert!(d.is_empty(), "alice's replica (b) vs store (a)\n{run}\n{d}");
    assert!(!on(&env.replica, &env.store, &bob_new).exists(), "bob's unlogged delivery was replicated\n{run}");
    assert!(diff(&bob_replica_before, &tree(&env.replica.join("bob"))).is_empty(), "bob's replica changed\n{run}");
    let outside: Vec<&str> = run.actions().into_iter().filter(|a| !a.contains(": alice/")).collect();
    assert!(outside.is_empty(), "actions outside alice's Maildir: {outside:?}\n{run}");
    assert!(!log.exists() && !env.state.join("mail/log-run").exists(), "the log is consumed\n{run}");

    let run = env.ok(&["-A"]);
    env.assert_replica_is_store(&run, "the next -A takes bob's delivery");
}

#[test]
fn rolling_with_watch_replicates_a_delivery_no_log_line_names() {
    // Guards `-r --watch` (item 5): inotify on the store feeds the rolling loop, so a Dovecot
    // delivery with no sync log line reaches the replica; the shutdown file (-F) stops the loop
    // with exit 0 and is removed.
    let Some(env) = Env::new(false) else { return };
    env.deliver("alice", None, "alice first");
    env.deliver("bob", None, "bob first");
    env.ok(&["-A"]);
    let stop = env.state.join("stop");
    let child = env
        .command()
        .args(["-v", "-r", "--watch", "-d", "1", "-F"])
        .arg(&stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let background = Background { child: Some(child) };

    // The loop is running (and its watch set up, which comes first) once a logged delivery
    // has been replicated: no guessing how long the start takes.
    let logged = env.deliver("bob", None, "bob logged");
    env.ok(&["log", "APPEND", "user.bob"]);
    let logged_replica = on(&env.replica, &env.store, &logged);
    if !wait_until(|| logged_replica.exists()) {
        panic!("the logged delivery {} never reached the replica\n{}", logged_replica.display(), background.kill());
    }

    let inbox = env.store.mailbox_dir("alice", "INBOX");
    let unlogged = env.deliver("alice", None, "alice unlogged");
    let id = unique(&unlogged);
    let replica_inbox = on(&env.replica, &env.store, &inbox);
    let arrived = wait_until(|| message_files(&replica_inbox).iter().any(|p| unique(p) == id));
    if !arrived {
        panic!(
            "the unlogged delivery {id} never reached the replica within {DEADLINE:?}\n{}\n{}",
            env.differences(&env.replica),
            background.kill()
        );
    }
    // A flag change, with no log line either: a rename on the replica.
    env.store.flags_add("alice", "INBOX", "subject \"alice unlogged\"", r"\Seen");
    let seen = find(&inbox, &id);
    let seen_replica = on(&env.replica, &env.store, &seen);
    if !wait_until(|| seen_replica.exists()) {
        panic!(
            "the flag change ({}) never reached the replica within {DEADLINE:?}\n{}\n{}",
            file_name(&seen),
            env.differences(&env.replica),
            background.kill()
        );
    }
    std::fs::write(&stop, b"").unwrap();
    let run = background.finish().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.code, 0, "the shutdown file ends the loop with 0\n{run}");
    assert!(!stop.exists(), "the shutdown file is removed on shutdown\n{run}");
    let got = find(&replica_inbox, &id);
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&seen).unwrap(), "{run}");
    assert_eq!(
        run.actions().iter().filter(|a| a.starts_with("copy ") && a.contains(&id)).count(),
        1,
        "the message was sent once\n{run}"
    );
    assert!(
        run.actions_of("rename").iter().any(|a| a.contains(&id) && a.ends_with(":2,S")),
        "then renamed for its flag\n{run}"
    );
    let run_after = env.ok(&["-A"]);
    env.assert_replica_is_store(&run_after, "after the rolling run");
}

#[test]
fn a_logged_rename_is_one_folder_rename_in_a_rolling_cycle() {
    // Guards RENAME in the sync log: `doveadm mailbox rename` and the RENAME line a hook writes
    // for it make a rolling cycle rename the folder on the replica, sending no message again.
    let Some(env) = Env::new(false) else { return };
    env.deliver("alice", None, "inbox 0");
    env.deliver("alice", Some("Work.2024"), "work 0");
    env.deliver("alice", Some("Work.2024"), "work 1");
    env.ok(&["-A"]);
    let before = inode(&env.replica.join("alice/Maildir/.Work.2024"));
    env.store.mailbox_rename("alice", "Work.2024", "Old.2024");
    env.ok(&["log", "RENAME", "user.alice.Work.2024", "user.alice.Old.2024"]);
    let run = env.ok(&["-v", "-r", "-1"]);
    env.assert_replica_is_store(&run, "after a logged RENAME, -r -1");
    assert_eq!(inode(&env.replica.join("alice/Maildir/.Old.2024")), before, "the folder was rebuilt\n{run}");
    assert_eq!(
        run.actions_of("rename"),
        ["rename destination: alice/Maildir/.Work.2024 -> alice/Maildir/.Old.2024"],
        "one rename, of the folder\n{run}"
    );
    assert_eq!(run.actions_of("copy"), Vec::<&str>::new(), "no message sent again\n{run}");
}

#[test]
fn a_logged_rename_of_a_mailbox_with_children_carries_the_children() {
    // Guards a logged RENAME of a mailbox that has children: Dovecot renames the whole subtree
    // in one `doveadm mailbox rename`, and the one RENAME line a hook logs for it must leave
    // the replica equal to the store (with one RENAME line per mailbox, as Cyrus logs a tree
    // rename, it does: see a_logged_rename_is_one_folder_rename_in_a_rolling_cycle).
    let Some(env) = Env::new(false) else { return };
    env.deliver("alice", None, "inbox 0");
    env.deliver("alice", Some("Projects"), "projects 0");
    env.deliver("alice", Some("Projects.2024"), "projects 2024 0");
    env.ok(&["-A"]);
    env.store.mailbox_rename("alice", "Projects", "Archive");
    assert!(env.store.mailbox_dir("alice", "Archive.2024").is_dir(), "fixture: Dovecot renamed the child too");
    env.ok(&["log", "RENAME", "user.alice.Projects", "user.alice.Archive"]);
    let run = env.ok(&["-v", "-r", "-1"]);
    env.assert_replica_is_store(&run, "after RENAME of a mailbox with a child, -r -1");
}
