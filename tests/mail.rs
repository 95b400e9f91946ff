//! End-to-end tests of `pairsync mail` (issue 10) on Maildir stores built by hand, with
//! Dovecot's names and files, replicated to a directory: no Dovecot needed (the tests with the
//! real Dovecot are tests/dovecot_harness.rs). Each test's first comment says what it guards.

mod mail_util;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mail_util::{
    diff, is_root, message, tree, unique, wait_until, without_read_override, MailEnv, Node, Run, Tree, RECEIVED,
};

const MINUTE: Duration = Duration::from_secs(60);

/// A test message: its Dovecot unique name and bytes.
struct Msg {
    unique: String,
    bytes: Vec<u8>,
}

/// The `n`th message of a test (sizes differ, so no two are alike).
fn msg(n: u32) -> Msg {
    let bytes = message(&format!("message {n}"), 600 + 137 * n as usize);
    Msg { unique: unique(n, &bytes), bytes }
}

impl Msg {
    /// `new/<unique>`: as delivered.
    fn in_new(&self) -> String {
        format!("new/{}", self.unique)
    }

    /// `cur/<unique>:2,<flags>`.
    fn cur(&self, flags: &str) -> String {
        format!("cur/{}:2,{flags}", self.unique)
    }
}

/// The path of `name` in a mailbox folder (`alice/Maildir`, `alice/Maildir/.Sent`).
fn at(folder: &str, name: &str) -> String {
    format!("{folder}/{name}")
}

const INBOX: &str = "alice/Maildir";
const SENT: &str = "alice/Maildir/.Sent";

/// Dovecot's caches in alice's INBOX and .Sent: in the store, never on the replica.
const CACHES: [&str; 7] = [
    "alice/Maildir/dovecot.index",
    "alice/Maildir/dovecot.index.log",
    "alice/Maildir/dovecot.index.cache",
    "alice/Maildir/dovecot.list.index",
    "alice/Maildir/dovecot.list.index.log",
    "alice/Maildir/dovecot.mailbox.log",
    "alice/Maildir/.Sent/dovecot.index.cache",
];

/// Files that are never replicated, besides the caches: deliveries in progress in tmp/ and
/// Dovecot's dotlock.
const TRANSIENT: [&str; 3] = [
    "alice/Maildir/tmp/1700000999.M1P99.mx",
    "alice/Maildir/.Sent/tmp/1700000998.M2P98.mx",
    "alice/Maildir/dovecot-uidlist.lock",
];

/// A store as Dovecot leaves it: alice with an INBOX (a new message, read, flagged and
/// keyword-tagged ones, her control files, caches, a delivery in progress in tmp/, a dotlock),
/// `.Sent` and `.Work.2024`; bob with an INBOX. Returns the messages' paths.
fn dovecot_store(env: &MailEnv) -> Vec<String> {
    let (m1, m2, m3, m4, m5, m6, m7) = (msg(1), msg(2), msg(3), msg(4), msg(5), msg(6), msg(7));
    let messages = vec![
        env.deliver("alice", "", &m1.in_new(), &m1.bytes),
        env.deliver("alice", "", &m2.cur("S"), &m2.bytes),
        env.deliver("alice", "", &m3.cur("FS"), &m3.bytes),
        env.deliver("alice", "", &m4.cur("Sa"), &m4.bytes),
        env.deliver("alice", ".Sent", &m5.cur("S"), &m5.bytes),
        env.deliver("alice", ".Work.2024", &m6.in_new(), &m6.bytes),
        env.deliver("bob", "", &m7.cur("RS"), &m7.bytes),
    ];
    let uidlist = |first: u32, names: &[&Msg]| {
        let mut text = format!("3 V1700000000 N{} G3085f01b7f11094c501100008c4a11c1\n", first + names.len() as u32);
        for (i, m) in names.iter().enumerate() {
            text.push_str(&format!("{} :{}\n", first + i as u32, m.unique));
        }
        text.into_bytes()
    };
    let t = RECEIVED + 500;
    env.put_at("alice/Maildir/dovecot-uidlist", &uidlist(1, &[&m2, &m3, &m4]), t);
    env.put_at("alice/Maildir/dovecot-keywords", b"0 $Forwarded\n", t);
    env.put_at("alice/Maildir/subscriptions", b"V\t2\n\nSent\nWork.2024\n", t);
    env.put_at("alice/Maildir/dovecot-uidvalidity", b"6553f100", t);
    env.put_at("alice/Maildir/dovecot-uidvalidity.6553f100", b"", t);
    env.put_at("alice/Maildir/.Sent/dovecot-uidlist", &uidlist(1, &[&m5]), t);
    env.put_at("bob/Maildir/dovecot-uidlist", &uidlist(1, &[&m7]), t);
    for cache in CACHES {
        env.put(cache, b"\xc3\x00\x00\x00 binary index that Dovecot rewrites on every access");
    }
    for file in TRANSIENT {
        env.put(file, b"being written");
    }
    messages
}

fn mtime(path: &Path) -> (i64, i64) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.mtime(), meta.mtime_nsec())
}

// ---- initial replication ----

#[test]
fn all_makes_the_replica_a_byte_identical_store_without_caches_or_tmp_files() {
    // Guards -A: every message and control file byte-identical with its mtime (Dovecot's
    // received date), the caches, tmp/'s files and dotlocks left out, each tmp/ there and empty.
    let env = MailEnv::new();
    let messages = dovecot_store(&env);
    let run = env.ok(&["-A"]);
    env.assert_replica_mirrors_store(&run);
    for left_out in CACHES.iter().chain(&TRANSIENT) {
        assert!(env.in_store(left_out), "fixture: {left_out}");
        assert!(!env.on_replica(left_out), "{left_out} must not be replicated\n{run}\n{}", env.trees());
    }
    for mailbox in [INBOX, SENT, "alice/Maildir/.Work.2024", "bob/Maildir"] {
        let tmp = env.replica.join(mailbox).join("tmp");
        let inside: Vec<_> =
            fs::read_dir(&tmp).unwrap_or_else(|e| panic!("{}: {e}\n{run}\n{}", tmp.display(), env.trees())).collect();
        assert!(inside.is_empty(), "{} must be empty: {inside:?}", tmp.display());
    }
    for path in &messages {
        assert_eq!(mtime(&env.replica.join(path)), mtime(&env.store.join(path)), "mtime of {path}");
    }
    let files = env.expected_replica().values().filter(|n| matches!(n, Node::File { .. })).count();
    assert_eq!(files, 16, "fixture: 7 messages and 9 control files");
    assert!(run.stdout.contains("copied 16 ("), "every message and control file, once:\n{run}");

    let again = env.ok(&["-v", "-A"]);
    assert_eq!(again.actions(), Vec::<&str>::new(), "a second pass has nothing to do\n{again}");
    assert!(again.stdout.contains("copied 0 (0 B), renamed 0, deleted 0, 0 folders created, 0 problems"), "{again}");
}

#[test]
fn a_changed_control_file_is_copied_again_and_a_changed_cache_is_not() {
    // Guards the split between control files (dovecot-uidlist: copied whole when it changes)
    // and caches (dovecot.index.log: rewritten on every access, never replicated).
    let env = MailEnv::new();
    dovecot_store(&env);
    env.ok(&["-A"]);
    env.put_at(
        "alice/Maildir/dovecot-uidlist",
        b"3 V1700000000 N9 G3085f01b7f11094c501100008c4a11c1\n",
        RECEIVED + 900,
    );
    env.put("alice/Maildir/dovecot.index.log", b"appended by an IMAP login");
    env.put("alice/Maildir/tmp/1700001000.M5P5.mx", b"another delivery in progress");
    let run = env.ok(&["-v", "-u", "alice"]);
    let actions = run.actions();
    assert_eq!(actions.len(), 1, "only dovecot-uidlist is sent\n{run}");
    assert!(actions[0].starts_with("copy") && actions[0].contains("alice/Maildir/dovecot-uidlist"), "{run}");
    env.assert_replica_mirrors_store(&run);
}

// ---- renames ----

#[test]
fn flag_changes_and_moves_are_renames_on_the_replica_never_copies() {
    // Guards issue 10 item 6: a flag change (cur/X:2, -> cur/X:2,S), new/ -> cur/, a flag set
    // on a message left in new/ (new/X:2,S, as Dovecot does) and a move to another mailbox of
    // the same user are each one rename on the replica: the same inode, no byte sent.
    let env = MailEnv::new();
    let (a, b, c, d) = (msg(1), msg(2), msg(3), msg(4));
    env.deliver("alice", "", &a.cur(""), &a.bytes);
    env.deliver("alice", "", &b.in_new(), &b.bytes);
    env.deliver("alice", "", &c.cur("S"), &c.bytes);
    env.deliver("alice", "", &d.in_new(), &d.bytes);
    env.mailbox("alice", ".Archive");
    env.ok(&["-A"]);
    let archive = "alice/Maildir/.Archive";
    let moves = [
        ("flag change", at(INBOX, &a.cur("")), at(INBOX, &a.cur("S"))),
        ("new/ -> cur/", at(INBOX, &b.in_new()), at(INBOX, &b.cur("S"))),
        ("move to .Archive", at(INBOX, &c.cur("S")), at(archive, &c.cur("S"))),
        ("flagged in new/", at(INBOX, &d.in_new()), at(INBOX, &format!("new/{}:2,S", d.unique))),
    ];
    let inodes: Vec<u64> = moves.iter().map(|(_, from, _)| env.replica_ino(from)).collect();
    for (_, from, to) in &moves {
        env.mv(from, to);
    }
    let run = env.ok(&["-v", "-u", "alice"]);
    for ((what, from, to), inode) in moves.iter().zip(inodes) {
        assert!(!env.on_replica(from), "{what}: {from} still on the replica\n{run}\n{}", env.trees());
        assert_eq!(env.replica_ino(to), inode, "{what}: {to} is not the renamed file\n{run}\n{}", env.trees());
        let line = format!("rename destination: {from} -> {to}");
        assert!(run.stdout.contains(&line), "{what}: no {line:?}\n{run}");
    }
    let actions = run.actions();
    assert!(actions.iter().all(|a| a.starts_with("rename")), "renames only\n{run}");
    assert_eq!(actions.len(), 4, "{run}");
    assert!(run.stdout.contains("copied 0 (0 B), renamed 4, deleted 0"), "{run}");
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn a_rolling_cycle_renames_flag_changes_and_moves_too() {
    // Guards the rolling path (the state trusted for the replica): MAILBOX and DOUBLEMAILBOX
    // lines after a flag change and a move between two mailboxes are renames, no copy.
    let env = MailEnv::new();
    let (a, c) = (msg(1), msg(2));
    env.deliver("alice", "", &a.in_new(), &a.bytes);
    env.deliver("alice", "", &c.cur("S"), &c.bytes);
    env.mailbox("alice", ".Sent");
    env.ok(&["-A"]);
    let flag = (at(INBOX, &a.in_new()), at(INBOX, &a.cur("FS")));
    let moved = (at(INBOX, &c.cur("S")), at(SENT, &c.cur("S")));
    let inodes = [env.replica_ino(&flag.0), env.replica_ino(&moved.0)];
    env.mv(&flag.0, &flag.1);
    env.mv(&moved.0, &moved.1);
    env.ok(&["log", "MAILBOX", "user.alice"]);
    env.ok(&["log", "DOUBLEMAILBOX", "user.alice", "user.alice.Sent"]);
    let run = env.ok(&["-v", "-r", "-1"]);
    assert_eq!([env.replica_ino(&flag.1), env.replica_ino(&moved.1)], inodes, "{run}\n{}", env.trees());
    let actions = run.actions();
    assert!(!actions.is_empty() && actions.iter().all(|a| a.starts_with("rename")), "renames only\n{run}");
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn a_renamed_mailbox_is_one_folder_rename_on_the_replica() {
    // Guards issue 10 item 6: Dovecot renames a Maildir++ folder with one rename(2), and the
    // replica follows with one folder rename, not a rename (or a copy) per message.
    let env = MailEnv::new();
    for n in 1..=5 {
        let m = msg(n);
        env.deliver("alice", ".Work", &m.cur("S"), &m.bytes);
    }
    env.deliver("alice", "", &msg(9).in_new(), &msg(9).bytes);
    env.ok(&["-A"]);
    let inode = env.replica_ino("alice/Maildir/.Work");
    env.mv("alice/Maildir/.Work", "alice/Maildir/.Projects");
    let run = env.ok(&["-v", "-u", "alice"]);
    assert_eq!(
        run.actions(),
        ["rename destination: alice/Maildir/.Work -> alice/Maildir/.Projects"],
        "one folder rename\n{run}"
    );
    assert_eq!(env.replica_ino("alice/Maildir/.Projects"), inode, "{run}\n{}", env.trees());
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn a_logged_rename_is_one_folder_rename_in_a_rolling_cycle() {
    // Guards the RENAME verb: `RENAME user.alice.Work user.alice.Projects` in the log moves the
    // folder on the replica in one rename, as -u does.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    for n in 1..=4 {
        let m = msg(n);
        env.deliver("alice", ".Work", &m.cur("S"), &m.bytes);
    }
    env.ok(&["-A"]);
    let inode = env.replica_ino("alice/Maildir/.Work");
    env.mv("alice/Maildir/.Work", "alice/Maildir/.Projects");
    env.ok(&["log", "RENAME", "user.alice.Work", "user.alice.Projects"]);
    let run = env.ok(&["-v", "-r", "-1"]);
    assert_eq!(run.actions(), ["rename destination: alice/Maildir/.Work -> alice/Maildir/.Projects"], "{run}");
    assert_eq!(env.replica_ino("alice/Maildir/.Projects"), inode, "{run}\n{}", env.trees());
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn a_deleted_mailbox_leaves_the_replica_with_expunge_mirror() {
    // Guards mailbox deletion: UNMAILBOX in the log (or a -u pass) removes the folder and its
    // messages from the replica, and nothing else.
    let env = MailEnv::new();
    let (a, b) = (msg(1), msg(2));
    env.deliver("alice", ".Trash", &a.cur("ST"), &a.bytes);
    let inbox = env.deliver("alice", "", &b.cur("S"), &b.bytes);
    env.ok(&["-A"]);
    env.rm("alice/Maildir/.Trash");
    env.ok(&["log", "UNMAILBOX", "user.alice.Trash"]);
    let run = env.ok(&["-v", "-r", "-1"]);
    assert!(!env.on_replica("alice/Maildir/.Trash"), "{run}\n{}", env.trees());
    assert!(env.on_replica(&inbox), "{run}");
    env.assert_replica_mirrors_store(&run);
    let run = env.ok(&["-v", "-u", "alice"]);
    assert_eq!(run.actions(), Vec::<&str>::new(), "{run}");
}

#[test]
fn mailboxes_named_together_with_m_see_a_move_between_them_as_a_rename() {
    // Guards -m with several mailboxes of one user: grouped into one pass, so a move between
    // them is a rename; a mailbox not named is not touched.
    let env = MailEnv::new();
    let (a, b) = (msg(1), msg(2));
    let from = env.deliver("alice", "", &a.cur("S"), &a.bytes);
    env.mailbox("alice", ".Archive");
    env.mailbox("alice", ".Sent");
    env.ok(&["-A"]);
    let inode = env.replica_ino(&from);
    let to = at("alice/Maildir/.Archive", &a.cur("S"));
    env.mv(&from, &to);
    let unnamed = env.deliver("alice", ".Sent", &b.cur("S"), &b.bytes);
    let run = env.ok(&["-v", "-m", "user.alice", "user.alice.Archive"]);
    assert_eq!(run.actions(), [format!("rename destination: {from} -> {to}")], "{run}");
    assert_eq!(env.replica_ino(&to), inode, "{run}");
    assert!(!env.on_replica(&unnamed), "-m did not name user.alice.Sent\n{run}");
}

// ---- expunge ----

#[test]
fn an_expunged_message_leaves_the_replica_with_expunge_mirror() {
    // Guards the default expunge = "mirror" (as sync_client): an expunge is one delete.
    let env = MailEnv::new();
    let (a, b) = (msg(1), msg(2));
    let gone = env.deliver("alice", "", &a.cur("S"), &a.bytes);
    env.deliver("alice", "", &b.cur("S"), &b.bytes);
    env.ok(&["-A"]);
    env.rm(&gone);
    let run = env.ok(&["-v", "-u", "alice"]);
    assert_eq!(run.actions(), [format!("delete destination: {gone}")], "{run}");
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn an_expunged_message_stays_on_the_replica_with_expunge_keep_until_a_restore() {
    // Guards expunge = "keep": the replica keeps an expunged message through every later pass
    // (rolling, -u, -A: nothing deleted, nothing sent for it), and --restore brings it back.
    let env = MailEnv::with_config("expunge = \"keep\"", "");
    let (a, b) = (msg(1), msg(2));
    let gone = env.deliver("alice", "", &a.cur("S"), &a.bytes);
    let stays = env.deliver("alice", "", &b.cur("S"), &b.bytes);
    env.ok(&["-A"]);
    let kept = tree(&env.replica);
    env.rm(&gone);
    env.ok(&["log", "APPEND", "user.alice"]);
    let passes: [&[&str]; 4] =
        [&["-v", "-r", "-1"], &["-v", "-u", "alice"], &["-v", "-A"], &["-v", "-m", "user.alice"]];
    for args in passes {
        let run = env.ok(args);
        assert_eq!(run.actions(), Vec::<&str>::new(), "nothing to do on the replica\n{run}");
        let now = env.replica_tree();
        let changes = diff("replica before", &kept, "replica now", &now);
        assert!(changes.is_empty(), "the replica changed\n{run}\n{changes}");
        assert!(!env.in_store(&gone), "never copied back into the store\n{run}");
    }
    let run = env.ok(&["-v", "--restore", "-u", "alice"]);
    assert_eq!(fs::read(env.store.join(&gone)).unwrap(), a.bytes, "{run}");
    assert!(env.in_store(&stays));
    // Restored and still on the replica: a pass records it, and sends nothing.
    let run = env.ok(&["-v", "-u", "alice"]);
    assert_eq!(run.actions(), Vec::<&str>::new(), "{run}");
    env.assert_replica_mirrors_store(&run);
}

// ---- the sync log ----

#[test]
fn mail_log_appends_cyrus_quoted_lines() {
    // Guards `mail log VERB ARG...` (delivery hooks): Cyrus's quoting, byte for byte, into
    // <state dir>/mail/log; a wrong verb or arity, an empty name or a line break is exit 2 and
    // writes nothing.
    let env = MailEnv::new();
    let lines: [&[&str]; 6] = [
        &["APPEND", "user.alice"],
        &["APPEND", "user.alice.My Folder"],
        &["SEEN", "alice", "user.alice.a\"b\\c"],
        &["MAILBOX", "user.alice.{x}"],
        &["ANNOTATION", ""],
        &["USER", "john^doe"],
    ];
    for words in lines {
        let mut args = vec!["log"];
        args.extend_from_slice(words);
        env.ok(&args);
    }
    let want = "APPEND user.alice\n\
                APPEND \"user.alice.My Folder\"\n\
                SEEN alice \"user.alice.a\\\"b\\\\c\"\n\
                MAILBOX \"user.alice.\\{x\\}\"\n\
                ANNOTATION \"\"\n\
                USER john^doe\n";
    assert_eq!(fs::read_to_string(env.sync_log()).unwrap(), want);
    let refused: [&[&str]; 5] = [
        &["log", "APPEND"],
        &["log", "FROB", "user.alice"],
        &["log", "SEEN", "alice"],
        &["log", "APPEND", ""],
        &["log", "APPEND", "user.alice\nUSER mallory"],
    ];
    for bad in refused {
        let run = env.run(bad);
        assert_eq!(run.code, 2, "{run}");
    }
    assert_eq!(fs::read_to_string(env.sync_log()).unwrap(), want, "refused lines write nothing");
}

#[test]
fn mail_log_writes_the_configured_sync_log() {
    // Guards [mail] sync_log: the hook and the rolling run agree on the file, whose folder is
    // created on first use.
    let env = MailEnv::new();
    let log = env.root.join("spool/pairsync/log");
    env.write_config(&format!("sync_log = \"{}\"", log.display()), "");
    let m = msg(1);
    env.deliver("alice", "", &m.in_new(), &m.bytes);
    env.ok(&["log", "APPEND", "user.alice"]);
    assert_eq!(fs::read_to_string(&log).unwrap(), "APPEND user.alice\n");
    assert!(!env.sync_log().exists());
    let run = env.ok(&["-r", "-1"]);
    assert!(env.on_replica(&at(INBOX, &m.in_new())), "{run}\n{}", env.trees());
    assert!(!log.exists(), "processed: {run}");
}

#[test]
fn a_rolling_cycle_replicates_only_the_logged_mailboxes() {
    // Guards issue 10 item 5: `-r -1` takes the log, replicates what it names, unlinks
    // log-run; a delivery to a mailbox no line names waits for a pass that names it (-u).
    let env = MailEnv::new();
    env.mailbox("alice", "");
    env.mailbox("alice", ".Sent");
    env.mailbox("alice", ".My Folder");
    env.ok(&["-A"]);
    let (a, b, c) = (msg(1), msg(2), msg(3));
    let logged = env.deliver("alice", "", &a.in_new(), &a.bytes);
    let spaced = env.deliver("alice", ".My Folder", &b.in_new(), &b.bytes);
    let unlogged = env.deliver("alice", ".Sent", &c.cur("S"), &c.bytes);
    env.ok(&["log", "APPEND", "user.alice"]);
    env.ok(&["log", "APPEND", "user.alice.My Folder"]);
    let run = env.ok(&["-v", "-r", "-1"]);
    assert!(env.on_replica(&logged), "{run}\n{}", env.trees());
    assert!(env.on_replica(&spaced), "a quoted name with a space\n{run}\n{}", env.trees());
    assert!(!env.on_replica(&unlogged), "no line names user.alice.Sent\n{run}\n{}", env.trees());
    assert!(!run.stdout.contains(".Sent"), "the cycle must not touch .Sent\n{run}");
    assert!(!env.sync_log().exists() && !env.sync_log_run().exists(), "log and log-run are gone\n{run}");
    let run = env.ok(&["-u", "alice"]);
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn rolling_once_without_a_log_exits_0_and_does_nothing() {
    // Guards `-r -1` with no log: exit 0 (as sync_client -1), nothing replicated, no log-run.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    env.ok(&["-A"]);
    let before = env.replica_tree();
    let m = msg(1);
    env.deliver("alice", "", &m.in_new(), &m.bytes);
    let run = env.ok(&["-v", "-r", "-1"]);
    assert_eq!(run.actions(), Vec::<&str>::new(), "{run}");
    assert!(diff("before", &before, "after", &env.replica_tree()).is_empty(), "{run}\n{}", env.trees());
    assert!(!env.sync_log().exists() && !env.sync_log_run().exists(), "{run}");
}

#[test]
fn a_leftover_log_run_is_processed_first_and_log_waits_for_the_next_cycle() {
    // Guards Cyrus's rotation rule after a crash between the rename to log-run and its unlink:
    // the next `-r -1` processes log-run only (and unlinks it), leaving `log` for the cycle
    // after, which processes it; nothing is lost.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    env.mailbox("alice", ".Sent");
    env.ok(&["-A"]);
    let (a, b) = (msg(1), msg(2));
    let inbox = env.deliver("alice", "", &a.in_new(), &a.bytes);
    let sent = env.deliver("alice", ".Sent", &b.cur("S"), &b.bytes);
    MailEnv::append(&env.sync_log_run(), "APPEND user.alice.Sent\n");
    MailEnv::append(&env.sync_log(), "APPEND user.alice\n");
    let run = env.ok(&["-r", "-1"]);
    assert!(env.on_replica(&sent), "log-run first\n{run}\n{}", env.trees());
    assert!(!env.on_replica(&inbox), "log waits for the next cycle\n{run}\n{}", env.trees());
    assert!(!env.sync_log_run().exists(), "log-run unlinked\n{run}");
    assert_eq!(fs::read_to_string(env.sync_log()).unwrap(), "APPEND user.alice\n", "log left as it was");
    let run = env.ok(&["-r", "-1"]);
    assert!(env.on_replica(&inbox), "{run}\n{}", env.trees());
    assert!(!env.sync_log().exists() && !env.sync_log_run().exists(), "{run}");
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn an_alternate_log_is_processed_and_never_deleted() {
    // Guards `-r -f FILE`: the file's lines are processed once and the file kept as it was;
    // the live log is neither read nor rotated.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    env.mailbox("alice", ".Sent");
    env.ok(&["-A"]);
    let (a, b) = (msg(1), msg(2));
    let inbox = env.deliver("alice", "", &a.in_new(), &a.bytes);
    let sent = env.deliver("alice", ".Sent", &b.cur("S"), &b.bytes);
    let replay = env.root.join("replay.log");
    fs::write(&replay, "APPEND user.alice\n").unwrap();
    MailEnv::append(&env.sync_log(), "APPEND user.alice.Sent\n");
    let run = env.ok(&["-r", "-f", replay.to_str().unwrap()]);
    assert!(env.on_replica(&inbox), "{run}\n{}", env.trees());
    assert!(!env.on_replica(&sent), "the live log is not this run's\n{run}\n{}", env.trees());
    assert_eq!(fs::read_to_string(&replay).unwrap(), "APPEND user.alice\n", "the alternate log is kept");
    assert_eq!(fs::read_to_string(env.sync_log()).unwrap(), "APPEND user.alice.Sent\n");
    assert!(!env.sync_log_run().exists());
}

#[test]
fn a_malformed_log_line_is_skipped_with_its_line_number_and_the_rest_processed() {
    // Guards issue 10 item 4: a line that cannot be read is one warning naming its line
    // number; every other line of the log is still processed.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    env.mailbox("alice", ".Sent");
    env.mailbox("bob", "");
    env.ok(&["-A"]);
    let (a, b, c) = (msg(1), msg(2), msg(3));
    let inbox = env.deliver("alice", "", &a.in_new(), &a.bytes);
    let sent = env.deliver("alice", ".Sent", &b.cur("S"), &b.bytes);
    let bob = env.deliver("bob", "", &c.in_new(), &c.bytes);
    MailEnv::append(
        &env.sync_log(),
        "APPEND user.alice\nAPPEND\nFROB user.alice\nAPPEND \"user.alice.Sent\n\nAPPEND user.alice.Sent\nUSER bob\n",
    );
    let run = env.ok(&["-r", "-1"]);
    for line in [2, 3, 4] {
        let tag = format!("log-run:{line}:");
        assert!(run.stderr.contains(&tag), "a warning naming line {line}\n{run}");
    }
    assert_eq!(run.stderr.matches("line skipped").count(), 3, "three malformed lines, no more\n{run}");
    for path in [&inbox, &sent, &bob] {
        assert!(env.on_replica(path), "{path}\n{run}\n{}", env.trees());
    }
    assert!(!env.sync_log_run().exists(), "{run}");
}

#[test]
fn objects_can_come_from_a_file_with_comments() {
    // Guards `-f FILE` outside rolling: one user a line, '#' comments and blank lines skipped.
    let env = MailEnv::new();
    let (a, b, c) = (msg(1), msg(2), msg(3));
    let alice = env.deliver("alice", "", &a.in_new(), &a.bytes);
    let bob = env.deliver("bob", "", &b.in_new(), &b.bytes);
    let carol = env.deliver("carol", "", &c.in_new(), &c.bytes);
    let list = env.root.join("users.txt");
    fs::write(&list, "# users to back up\nalice\n\n  bob  \n").unwrap();
    let run = env.ok(&["-u", "-f", list.to_str().unwrap()]);
    assert!(env.on_replica(&alice) && env.on_replica(&bob), "{run}\n{}", env.trees());
    assert!(!env.on_replica(&carol), "carol is not in the list\n{run}");
}

// ---- convergence and repair ----

/// A rolling run killed (SIGKILL) mid-cycle: after -A over messages 1 and 2, message 1's flag
/// changed and 3 and 4 were delivered and logged; the run renamed 1 on the replica (and may
/// have copied 4) and was killed while held opening 3 (a lease on it), before it committed the
/// records of what it had done (they are committed at the end of the pass). Returns what the
/// killed run printed.
fn killed_mid_cycle(env: &MailEnv) -> Run {
    let (a, b, c, d) = (msg(1), msg(2), msg(3), msg(4));
    let flag = env.deliver("alice", "", &a.cur(""), &a.bytes);
    env.deliver("alice", "", &b.cur("S"), &b.bytes);
    env.ok(&["-A"]);
    env.mv(&flag, &at(INBOX, &a.cur("S")));
    let held = env.deliver("alice", "", &c.in_new(), &c.bytes);
    env.deliver("alice", "", &d.in_new(), &d.bytes);
    env.ok(&["log", "APPEND", "user.alice"]);
    let lease = Lease::take(&env.store.join(&held));
    let child = env.spawn(&["-v", "-r", "-1"]);
    wait_until("pairsync to open the held message", MINUTE, || lease.broken());
    child.signal(libc::SIGKILL);
    let killed = child.finish();
    drop(lease);
    assert!(env.sync_log_run().exists(), "the killed cycle's log-run stays\n{killed}");
    killed
}

#[test]
fn a_rolling_run_killed_mid_cycle_loses_nothing() {
    // Guards issue 10 item 8 (kill -9 mid-cycle): the next run processes the log-run left
    // behind, and the replica is the store again: nothing lost, no message under two names,
    // no temporary file left; a -u pass then finds state and replica in agreement.
    let env = MailEnv::new();
    let killed = killed_mid_cycle(&env);
    let run = env.run(&["-v", "-r", "-1"]);
    assert!(!env.sync_log_run().exists() && !env.sync_log().exists(), "{killed}\n{run}");
    // A copy cut by the kill may leave its temporary file, which a rolling cycle (that does not
    // list the replica) leaves for the next pass that does.
    let differences = diff("store", &env.expected_replica(), "replica", &without_temp_files(env.replica_tree()));
    assert!(differences.is_empty(), "the replica is not the store\n{killed}\n{run}\n{differences}");
    let copies = run.actions().into_iter().filter(|a| a.starts_with("copy")).count();
    assert!(copies <= 2, "at most the two new messages are sent again\n{killed}\n{run}");
    // A pass that lists the replica removes any such temporary file.
    let repair = env.ok(&["-v", "-u", "alice"]);
    env.assert_replica_mirrors_store(&repair);
    let again = env.ok(&["-v", "-u", "alice"]);
    assert_eq!(again.actions(), Vec::<&str>::new(), "state and replica agree\n{killed}\n{run}\n{again}");
}

/// A tree without pairsync's temporary files (`.pairsync-<tag>-<pid>-<n>.tmp`).
fn without_temp_files(tree: Tree) -> Tree {
    let temp = |path: &str| {
        let name = path.rsplit('/').next().unwrap_or(path);
        name.starts_with(".pairsync-") && name.ends_with(".tmp")
    };
    tree.into_iter().filter(|(path, _)| !temp(path)).collect()
}

#[test]
fn a_temporary_file_left_by_a_killed_copy_is_removed_by_the_next_pass() {
    // Guards issue 10 item 8 (kill -9 during a copy): the next pass that lists the replica
    // removes this pair's temporary files. The leftovers are made by hand, named as the
    // replica's endpoint names them (its pair's tag, a dead pid), as a kill mid-copy leaves them
    // (seen under load with a real kill in a_rolling_run_killed_mid_cycle_loses_nothing).
    let env = MailEnv::new();
    let m = msg(1);
    env.deliver("alice", "", &m.cur("S"), &m.bytes);
    env.mailbox("alice", ".Sent");
    env.ok(&["-A"]);
    let pairs: Vec<String> = fs::read_dir(env.state.join("pairs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.contains('.'))
        .collect();
    assert_eq!(pairs.len(), 1, "one pair: {pairs:?}");
    let tag = &pairs[0][..8];
    let leftovers =
        [format!("{INBOX}/new/.pairsync-{tag}-999999-0.tmp"), format!("{SENT}/cur/.pairsync-{tag}-999999-1.tmp")];
    for path in &leftovers {
        fs::write(env.replica.join(path), b"Return-Path: <bob@exa").unwrap();
    }
    let run = env.ok(&["-v", "-u", "alice"]);
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn a_rolling_run_killed_mid_cycle_converges_cleanly_on_the_next_cycle() {
    // Guards issue 10 item 8 (kill -9 mid-cycle): the next rolling cycle ends clean (exit 0,
    // no problem), and so does the one after it for the same mailbox.
    let env = MailEnv::new();
    let killed = killed_mid_cycle(&env);
    let run = env.run(&["-v", "-r", "-1"]);
    assert_eq!(run.code, 0, "the next cycle converges\n{killed}\n{run}");
    env.assert_replica_mirrors_store(&run);
    env.ok(&["log", "MAILBOX", "user.alice"]);
    let next = env.run(&["-v", "-r", "-1"]);
    assert_eq!((next.code, next.actions()), (0, vec![]), "nothing left to do\n{killed}\n{run}\n{next}");
}

#[test]
fn a_changed_uidvalidity_makes_a_rolling_cycle_mend_that_mailbox() {
    // Guards issue 10 item 6: a rolling cycle trusts the state for the replica, except in a
    // mailbox whose dovecot-uidlist names a new UIDVALIDITY (Dovecot rebuilt it): that one is
    // listed on the replica and mended.
    let env = MailEnv::new();
    let (a, b) = (msg(1), msg(2));
    env.deliver("alice", "", &a.cur("S"), &a.bytes);
    let lost = env.deliver("alice", "", &b.cur("S"), &b.bytes);
    let uidlist = "alice/Maildir/dovecot-uidlist";
    env.put_at(uidlist, b"3 V1700000000 N3 G3085f01b7f11094c501100008c4a11c1\n", RECEIVED + 10);
    env.ok(&["-A"]);
    // The replica lost a message behind our back; a plain rolling cycle does not look.
    fs::remove_file(env.replica.join(&lost)).unwrap();
    env.ok(&["log", "MAILBOX", "user.alice"]);
    let run = env.ok(&["-r", "-1"]);
    assert!(!env.on_replica(&lost), "rolling cycles trust the state\n{run}");
    // Dovecot rebuilt the mailbox: new UIDVALIDITY.
    env.put_at(uidlist, b"3 V1700099999 N3 G3085f01b7f11094c501100008c4a11c1\n", RECEIVED + 20);
    env.ok(&["log", "MAILBOX", "user.alice"]);
    let run = env.ok(&["-v", "-r", "-1"]);
    assert!(env.on_replica(&lost), "the mailbox was listed and mended\n{run}\n{}", env.trees());
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn a_user_pass_repairs_whatever_differs_on_the_replica() {
    // Guards issue 10 item 5: -u lists the replica and mends it: a lost message is sent again,
    // a damaged one replaced, a stray file removed (expunge = "mirror").
    let env = MailEnv::new();
    let messages = dovecot_store(&env);
    env.ok(&["-A"]);
    fs::remove_file(env.replica.join(&messages[1])).unwrap();
    fs::write(env.replica.join(&messages[2]), b"truncated").unwrap();
    fs::write(env.replica.join("alice/Maildir/cur/1600000000.M1P1.other:2,S"), b"stray").unwrap();
    let run = env.ok(&["-v", "-u", "alice"]);
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn a_lost_state_sends_nothing_again() {
    // Guards DESIGN's "a lost database behaves like a first run" for mail: the replica already
    // holds every file, so the next pass only records them, and sends or deletes nothing.
    let env = MailEnv::new();
    dovecot_store(&env);
    env.ok(&["-A"]);
    fs::remove_dir_all(&env.state).unwrap();
    let run = env.ok(&["-v", "-A"]);
    assert_eq!(run.actions(), Vec::<&str>::new(), "{run}");
    env.assert_replica_mirrors_store(&run);
    // And the state is whole again: a flag change is a rename.
    let m = msg(2);
    env.mv(&at(INBOX, &m.cur("S")), &at(INBOX, &m.cur("RS")));
    let run = env.ok(&["-v", "-u", "alice"]);
    assert!(run.actions().iter().all(|a| a.starts_with("rename")) && run.actions().len() == 1, "{run}");
}

// ---- names, -l, -S ----

#[test]
fn cyrus_names_reach_dotted_users_and_domain_users() {
    // Guards issue 10 item 2 end to end: `user.john^doe` is john.doe's INBOX, and with
    // user_dir = "{domain}/{localpart}/Maildir", `example.com!user.alice.Sent` is
    // alice@example.com's .Sent.
    let env = MailEnv::new();
    env.mailbox("john.doe", "");
    env.ok(&["-A"]);
    let m = msg(1);
    let john = env.deliver("john.doe", "", &m.in_new(), &m.bytes);
    env.ok(&["log", "APPEND", "user.john^doe"]);
    let run = env.ok(&["-r", "-1"]);
    assert!(env.on_replica(&john), "{run}\n{}", env.trees());

    let env = MailEnv::with_config("user_dir = \"{domain}/{localpart}/Maildir\"", "");
    env.mailbox("example.com/alice", "");
    env.mailbox("example.com/alice", ".Sent");
    env.mailbox("example.org/alice", "");
    let run = env.ok(&["-A"]);
    assert!(env.on_replica("example.org/alice/Maildir/cur"), "{run}\n{}", env.trees());
    let (a, b) = (msg(1), msg(2));
    let sent = env.deliver("example.com/alice", ".Sent", &a.cur("S"), &a.bytes);
    let other = env.deliver("example.org/alice", "", &b.in_new(), &b.bytes);
    env.ok(&["log", "APPEND", "example.com!user.alice.Sent"]);
    let run = env.ok(&["-r", "-1"]);
    assert!(env.on_replica(&sent), "{run}\n{}", env.trees());
    assert!(!env.on_replica(&other), "another alice, in another domain\n{run}");
    let run = env.ok(&["-u", "alice@example.org"]);
    assert!(env.on_replica(&other), "{run}\n{}", env.trees());
    let run = env.run(&["-u", "alice"]);
    assert_eq!(run.code, 2, "a domain layout needs the domain\n{run}");
}

#[test]
fn dash_l_writes_every_action_to_the_mail_log() {
    // Guards -l: each action, time-stamped, in <state dir>/logs/mail.log, or in [mail] log.
    let env = MailEnv::new();
    let m = msg(1);
    let path = env.deliver("alice", "", &m.cur(""), &m.bytes);
    env.ok(&["-l", "-u", "alice"]);
    let log = fs::read_to_string(env.state.join("logs/mail.log")).unwrap();
    assert!(log.lines().any(|l| l.contains("copy") && l.contains(&path)), "{log}");
    let custom = env.root.join("log/mail-actions.log");
    env.write_config(&format!("log = \"{}\"", custom.display()), "");
    env.mv(&path, &at(INBOX, &m.cur("S")));
    env.ok(&["-l", "-u", "alice"]);
    let log = fs::read_to_string(&custom).unwrap();
    assert!(log.lines().any(|l| l.contains("rename") && l.contains(&path)), "{log}");
    let m2 = msg(2);
    env.deliver("alice", "", &m2.in_new(), &m2.bytes);
    env.ok(&["-u", "alice"]);
    assert_eq!(fs::read_to_string(&custom).unwrap(), log, "without -l nothing is logged");
}

#[test]
fn dash_s_picks_another_replica_by_name_or_path() {
    // Guards -S and default_replica: with two replicas the default one is used unless -S names
    // another, and a folder given to -S is a replica of its own.
    let env = MailEnv::new();
    let usb = env.root.join("usb");
    let second =
        format!("\n[[mail.replica]]\nname = \"usb\"\ntype = \"directory\"\ndirectory = \"{}\"\n", usb.display());
    env.write_config("default_replica = \"backup\"", &second);
    let m = msg(1);
    let path = env.deliver("alice", "", &m.in_new(), &m.bytes);
    env.ok(&["-A"]);
    assert!(env.on_replica(&path) && !usb.exists(), "the default replica only");
    let run = env.ok(&["-S", "usb", "-A"]);
    assert!(usb.join(&path).exists(), "{run}");
    let adhoc = env.root.join("adhoc");
    let run = env.ok(&["-S", adhoc.to_str().unwrap(), "-A"]);
    assert!(adhoc.join(&path).exists(), "{run}");
    env.write_config("", &second);
    let run = env.run(&["-A"]);
    assert_eq!(run.code, 2, "two replicas and no default: which one?\n{run}");
}

#[test]
fn dash_s_with_an_unknown_replica_name_is_a_usage_error() {
    // Guards -S NAME: a name that is not a replica's is one line naming it, not a new copy.
    let env = MailEnv::new();
    let m = msg(1);
    env.deliver("alice", "", &m.in_new(), &m.bytes);
    let run = env.run(&["-S", "usbdrive", "-A"]);
    assert!(!env.root.join("usbdrive").exists(), "a replica appeared in the working folder\n{run}");
    assert_eq!(run.code, 2, "{run}");
    assert!(run.one_error_line().contains("usbdrive"), "{run}");
}

// ---- shutdown ----

#[test]
fn a_shutdown_file_stops_rolling_at_the_top_of_the_first_cycle() {
    // Guards `-r -F FILE` and [mail] shutdown_file: present at the top of a cycle, the run
    // removes it and exits 0 with the log left unprocessed for the next start.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    env.ok(&["-A"]);
    let m = msg(1);
    let waiting = env.deliver("alice", "", &m.in_new(), &m.bytes);
    env.ok(&["log", "APPEND", "user.alice"]);
    let stop = env.root.join("stop-now");
    fs::write(&stop, "").unwrap();
    let run = env.ok(&["-r", "-F", stop.to_str().unwrap()]);
    assert!(!stop.exists(), "the shutdown file is removed\n{run}");
    assert_eq!(fs::read_to_string(env.sync_log()).unwrap(), "APPEND user.alice\n", "{run}");
    assert!(!env.sync_log_run().exists(), "{run}");
    assert!(!env.on_replica(&waiting), "{run}");

    let configured = env.root.join("run/pairsync-mail.shutdown");
    env.write_config(&format!("shutdown_file = \"{}\"", configured.display()), "");
    fs::create_dir_all(configured.parent().unwrap()).unwrap();
    fs::write(&configured, "").unwrap();
    let run = env.ok(&["-r"]);
    assert!(!configured.exists(), "the configured shutdown file is removed\n{run}");
    assert_eq!(fs::read_to_string(env.sync_log()).unwrap(), "APPEND user.alice\n", "{run}");
    assert!(!env.on_replica(&waiting), "{run}");
}

#[test]
fn a_shutdown_file_that_appears_stops_rolling_after_the_cycle_delay() {
    // Guards -d and -F together: a rolling run processes its log, waits at least -d from the
    // cycle's start, then finds the shutdown file at the top of the next cycle and exits 0.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    env.ok(&["-A"]);
    let m = msg(1);
    let path = env.deliver("alice", "", &m.in_new(), &m.bytes);
    env.ok(&["log", "APPEND", "user.alice"]);
    let stop = env.root.join("stop");
    let started = Instant::now();
    let child = env.spawn(&["-r", "-d", "2", "-F", stop.to_str().unwrap()]);
    wait_until("the first cycle to process the log", MINUTE, || {
        env.on_replica(&path) && !env.sync_log().exists() && !env.sync_log_run().exists()
    });
    fs::write(&stop, "").unwrap();
    let run = child.finish();
    assert_eq!(run.code, 0, "{run}");
    assert!(started.elapsed() >= Duration::from_secs(2), "-d 2: the next cycle waits 2 s\n{run}");
    assert!(!stop.exists(), "{run}");
}

#[test]
fn a_shutdown_file_stops_the_wait_for_an_unreachable_replica() {
    // Guards `-r` without -o against a replica that refuses connections: it waits with
    // backoff, and the shutdown file given with -F ends that wait (exit 0, file removed).
    let env = MailEnv::new();
    env.mailbox("alice", "");
    let port = closed_port();
    let stop = env.root.join("stop");
    let url = format!("ftp://tester@127.0.0.1:{port}/backup");
    let mut child = env.spawn(&["-r", "-S", &url, "-F", stop.to_str().unwrap()]);
    child.wait_for_stderr("trying again in 15 s", MINUTE);
    fs::write(&stop, "").unwrap();
    let run = child.finish();
    assert_eq!(run.code, 0, "{run}");
    assert!(!stop.exists(), "the shutdown file is removed\n{run}");
}

#[test]
fn a_configured_shutdown_file_stops_the_wait_for_an_unreachable_replica() {
    // Guards [mail] shutdown_file during the backoff for an unreachable replica: exit 0, and
    // the file removed as at the top of a cycle.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    let stop = env.root.join("stop");
    env.write_config(&format!("shutdown_file = \"{}\"", stop.display()), "");
    let url = format!("ftp://tester@127.0.0.1:{}/backup", closed_port());
    let mut child = env.spawn(&["-r", "-S", &url]);
    child.wait_for_stderr("trying again in 15 s", MINUTE);
    fs::write(&stop, "").unwrap();
    let run = child.finish();
    assert_eq!(run.code, 0, "{run}");
    assert!(!stop.exists(), "the shutdown file is removed\n{run}");
}

/// A local TCP port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---- exit codes ----

/// True when process `pid` holds a flock on the file with inode `ino` (from /proc/locks:
/// `1: FLOCK  ADVISORY  WRITE <pid> <maj>:<min>:<ino> 0 EOF`).
fn holds_flock(pid: u32, ino: u64) -> bool {
    let locks = fs::read_to_string("/proc/locks").unwrap_or_default();
    let (pid, ino) = (pid.to_string(), format!(":{ino}"));
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 5 && fields[1] == "FLOCK" && fields[4] == pid && fields[5].ends_with(&ino)
    })
}

#[test]
fn a_second_run_on_the_same_store_and_replica_exits_5() {
    // Guards the pair lock: while `mail -r` runs (here in its delay), any other `mail` run on
    // the same (store, replica) exits 5 at once and touches nothing; a signal ends the rolling
    // run with 0 and frees the lock.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    env.ok(&["-A"]);
    let locks: Vec<PathBuf> = fs::read_dir(env.state.join("pairs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "lock"))
        .collect();
    assert_eq!(locks.len(), 1, "one pair, one lock file: {locks:?}");
    let ino = fs::metadata(&locks[0]).unwrap().ino();
    let child = env.spawn(&["-r", "-d", "3600"]);
    let pid = child.pid();
    wait_until("the rolling run to hold the pair's lock", MINUTE, || holds_flock(pid, ino));
    let m = msg(1);
    let path = env.deliver("alice", "", &m.in_new(), &m.bytes);
    for args in [&["-u", "alice"][..], &["-A"], &["-r", "-1"], &["-m", "user.alice"]] {
        let run = env.run(args);
        assert_eq!(run.code, 5, "{run}");
        assert!(!env.on_replica(&path), "{run}");
    }
    child.signal(libc::SIGTERM);
    let run = child.finish();
    assert_eq!(run.code, 0, "a signal ends rolling replication cleanly\n{run}");
    let run = env.ok(&["-u", "alice"]);
    assert!(env.on_replica(&path), "{run}");
}

#[test]
fn a_missing_store_is_a_safety_stop() {
    // Guards issue 10 item 8: a store root that is not there (an unmounted volume) is exit 4
    // in every mode, and the replica is left as it is.
    let env = MailEnv::new();
    let m = msg(1);
    env.deliver("alice", "", &m.in_new(), &m.bytes);
    env.ok(&["-A"]);
    let before = env.replica_tree();
    fs::rename(&env.store, env.root.join("vmail.unmounted")).unwrap();
    env.ok(&["log", "APPEND", "user.alice"]);
    for args in [&["-A"][..], &["-u", "alice"], &["-r", "-1"], &["-m", "user.alice"]] {
        let run = env.run(args);
        assert_eq!(run.code, 4, "{run}");
        assert!(run.stderr.contains(&env.store.display().to_string()), "names the store\n{run}");
        assert!(diff("before", &before, "after", &env.replica_tree()).is_empty(), "{run}");
    }
}

#[test]
fn a_store_emptied_after_replication_is_a_safety_stop_for_all() {
    // Guards issue 10 item 8: a store that lists no users while the state knows some (an
    // unmounted volume under its mount point) stops -A with exit 4, nothing deleted.
    let env = MailEnv::new();
    dovecot_store(&env);
    env.ok(&["-A"]);
    let before = env.replica_tree();
    fs::rename(env.store.join("alice"), env.root.join("alice.away")).unwrap();
    fs::rename(env.store.join("bob"), env.root.join("bob.away")).unwrap();
    let run = env.run(&["-A"]);
    assert_eq!(run.code, 4, "{run}");
    assert!(diff("before", &before, "after", &env.replica_tree()).is_empty(), "nothing deleted\n{run}");
}

#[test]
fn a_store_emptied_after_replication_is_a_safety_stop_in_every_mode() {
    // Guards issue 10 item 8 beyond -A: a store with no mailboxes while the state holds some
    // is a safety stop for a rolling cycle and for -u too, and nothing is deleted.
    let env = MailEnv::new();
    dovecot_store(&env);
    env.ok(&["-A"]);
    let before = env.replica_tree();
    fs::rename(env.store.join("alice"), env.root.join("alice.away")).unwrap();
    fs::rename(env.store.join("bob"), env.root.join("bob.away")).unwrap();
    env.ok(&["log", "APPEND", "user.alice"]);
    for args in [&["-v", "-r", "-1"][..], &["-v", "-u", "alice"], &["-v", "-m", "user.alice.Sent"]] {
        let run = env.run(args);
        let changes = diff("before", &before, "after", &env.replica_tree());
        assert!(changes.is_empty(), "the replica lost files\n{run}\n{changes}");
        assert_eq!(run.code, 4, "{run}");
    }
}

#[test]
fn a_missing_replica_after_the_first_run_is_a_safety_stop() {
    // Guards the replica's root: made on the first run (its parent exists), but missing
    // later it is an unmounted drive: exit 4, and nothing is written where it was.
    let env = MailEnv::new();
    let m = msg(1);
    env.deliver("alice", "", &m.in_new(), &m.bytes);
    env.ok(&["-A"]);
    fs::rename(&env.replica, env.root.join("backup.unplugged")).unwrap();
    for args in [&["-A"][..], &["-u", "alice"], &["--restore", "-u", "alice"]] {
        let run = env.run(args);
        assert_eq!(run.code, 4, "{run}");
        assert!(!env.replica.exists(), "nothing written in place of the replica\n{run}");
    }
}

#[test]
fn unknown_and_hostile_names_are_usage_errors_naming_them() {
    // Guards the checks on objects: an unknown user or mailbox, and names that would leave a
    // user's Maildir, are exit 2 with one line naming them, and nothing is written anywhere.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    env.mailbox("alice", ".Sent");
    env.ok(&["-A"]);
    let outside_state = || -> Tree { tree(&env.root).into_iter().filter(|(p, _)| !p.starts_with("state")).collect() };
    let before = outside_state();
    let cases: [(&[&str], &str); 7] = [
        (&["-u", "nosuch"], "nosuch"),
        (&["-s", "nosuch"], "nosuch"),
        (&["-m", "user.alice.Nosuch"], "user.alice.Nosuch"),
        (&["-m", "user.alice/../../etc"], "user.alice/../../etc"),
        (&["-m", "user.alice..x"], "user.alice..x"),
        (&["-u", "../alice"], "../alice"),
        (&["--restore", "-u", "nosuch"], "nosuch"),
    ];
    for (args, named) in cases {
        let run = env.run(args);
        assert_eq!(run.code, 2, "{run}");
        let line = run.one_error_line();
        assert!(line.contains(named), "the error names {named:?}\n{run}");
    }
    let changes = diff("before", &before, "after", &outside_state());
    assert!(changes.is_empty(), "nothing written\n{changes}");
}

#[test]
fn a_config_without_a_mail_table_is_a_usage_error_naming_the_file() {
    // Guards the config check: no [mail] table is exit 2 with the config file's path.
    let env = MailEnv::new();
    let config = env.root.join("items-only.toml");
    fs::write(&config, "# no mail here\n").unwrap();
    let cfg = config.to_str().unwrap();
    for args in [&["-C", cfg, "mail", "-A"][..], &["-C", cfg, "mail", "log", "APPEND", "user.alice"]] {
        let run = env.run_raw(args);
        assert_eq!(run.code, 2, "{run}");
        assert!(run.one_error_line().contains(cfg), "names {cfg}\n{run}");
    }
}

#[test]
fn modes_must_be_given_exactly_once() {
    // Guards the mode flags: two modes, or none, are exit 2 naming the flags.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    let run = env.run(&["-u", "-A", "alice"]);
    assert_eq!(run.code, 2, "{run}");
    let line = run.one_error_line();
    assert!(line.contains("-u") && line.contains("-A"), "{run}");
    let no_mode: [&[&str]; 5] = [&[], &["-r", "-m", "user.alice"], &["-A", "alice"], &["-u"], &["-1", "-A"]];
    for args in no_mode {
        let run = env.run(args);
        assert_eq!(run.code, 2, "{run}");
    }
    assert!(!env.replica.exists(), "nothing replicated");
}

#[test]
fn a_restore_with_a_wrong_mode_is_refused_before_touching_anything() {
    // Guards the usage checks of --restore: a mode it does not take is exit 2 before any
    // replica folder or state is made (an unplugged drive's mount point stays empty).
    let env = MailEnv::new();
    env.mailbox("alice", "");
    for args in [&["--restore", "-r"][..], &["--restore", "-s", "alice"]] {
        let run = env.run(args);
        assert_eq!(run.code, 2, "{run}");
        assert!(!env.replica.exists(), "the replica's folder was made\n{run}");
        assert!(!env.state.join("pairs").exists(), "a pair state was made\n{run}");
    }
}

#[test]
fn an_unreadable_message_is_a_problem_for_that_message_only() {
    // Guards issue 10 item 8: a message that cannot be read is exit 1 naming it, and every
    // other message and control file is replicated (root loses its read override via setpriv).
    let env = MailEnv::new();
    let messages = dovecot_store(&env);
    let secret = &messages[2];
    let full = env.store.join(secret);
    fs::set_permissions(&full, fs::Permissions::from_mode(0o000)).unwrap();
    let run = env.run_with(without_read_override(), &["-A"]);
    fs::set_permissions(&full, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(run.code, 1, "{run}\n{}", env.trees());
    let name = secret.rsplit('/').next().unwrap();
    assert!(run.stderr.contains(name), "the problem names {name}\n{run}");
    assert!(!env.on_replica(secret), "{run}");
    for path in messages.iter().filter(|p| *p != secret) {
        assert!(env.on_replica(path), "{path}\n{run}\n{}", env.trees());
    }
    // Readable again: the next pass sends it, and the replica is whole.
    let run = env.ok(&["-A"]);
    env.assert_replica_mirrors_store(&run);
}

#[test]
fn an_unreachable_replica_with_connect_once_exits_6() {
    // Guards -o: an FTP replica that refuses connections is exit 6 at once, rolling or not.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    let url = format!("ftp://tester@127.0.0.1:{}/backup", closed_port());
    for args in [&["-o", "-r", "-1", "-S", &url][..], &["-A", "-S", &url]] {
        let run = env.run(args);
        assert_eq!(run.code, 6, "{run}");
    }
}

// ---- replicas that cannot hold ':' ----

/// The store's names as a `colon = "!"` replica holds them.
fn bang(tree: &Tree) -> Tree {
    tree.iter().map(|(path, node)| (path.replacen(":2,", "!2,", 1), node.clone())).collect()
}

#[test]
fn a_colon_replica_holds_bang_names_renames_on_flag_changes_and_restores_colons() {
    // Guards colon = "!" (FAT, exFAT, Windows FTP servers): `:2,` is written `!2,`, a flag
    // change is still one rename, and --restore writes `:2,` back into the store.
    let env = MailEnv::with_config("", "colon = \"!\"");
    let (a, b, c) = (msg(1), msg(2), msg(3));
    let flagged = env.deliver("alice", "", &a.cur("S"), &a.bytes);
    env.deliver("alice", "", &b.in_new(), &b.bytes);
    env.deliver("alice", ".Sent", &c.cur(""), &c.bytes);
    let run = env.ok(&["-A"]);
    let replica = env.replica_tree();
    let colons: Vec<&String> = replica.keys().filter(|p| p.contains(':')).collect();
    assert!(colons.is_empty(), "no ':' on the replica: {colons:?}\n{run}");
    let want = bang(&env.expected_replica());
    let differences = diff("store (as !2,)", &want, "replica", &replica);
    assert!(differences.is_empty(), "{run}\n{differences}");
    assert!(env.on_replica(&at(INBOX, &format!("cur/{}!2,S", a.unique))), "{run}");

    let inode = env.replica_ino(&flagged.replace(":2,", "!2,"));
    let now = at(INBOX, &a.cur("FS"));
    env.mv(&flagged, &now);
    let run = env.ok(&["-v", "-u", "alice"]);
    assert_eq!(env.replica_ino(&now.replace(":2,", "!2,")), inode, "{run}\n{}", env.trees());
    assert!(run.actions().iter().all(|a| a.starts_with("rename")), "{run}");

    let saved = env.store_tree();
    env.rm("alice/Maildir");
    let run = env.ok(&["--restore", "-u", "alice"]);
    let restored: Tree = env.store_tree().into_iter().filter(|(p, _)| mail_util::replicable(p)).collect();
    let saved: Tree = saved.into_iter().filter(|(p, _)| mail_util::replicable(p)).collect();
    let differences = diff("store before", &saved, "restored store", &restored);
    assert!(differences.is_empty(), "{run}\n{differences}");
}

// ---- restore ----

/// Changes the owner of `path` and everything in it (as the mail user would own them).
fn chown_all(path: &Path, uid: u32, gid: u32) {
    for entry in walkdir::WalkDir::new(path) {
        std::os::unix::fs::lchown(entry.unwrap().path(), Some(uid), Some(gid)).unwrap();
    }
}

#[test]
fn restore_recreates_every_message_with_its_flags_owned_like_its_folder_never_overwriting() {
    // Guards `--restore -u alice` into a store that lost alice's mail: every message back with
    // its flags, bytes and mtime; a message Dovecot has again (same unique name, other flags)
    // stays as it is; a control file that is there is kept; what is restored belongs to the
    // folder's owner, with no execute bits, so Dovecot can rename and expunge it.
    let env = MailEnv::new();
    dovecot_store(&env);
    let k = msg(3); // cur/K:2,FS in alice's INBOX
    env.ok(&["-A"]);
    let replica = env.replica_tree();
    let (uid, gid) = if is_root() {
        (65534, 65534)
    } else {
        (fs::metadata(&env.store).unwrap().uid(), fs::metadata(&env.store).unwrap().gid())
    };

    // The disk is lost; Dovecot, running as the mail user, made a fresh INBOX meanwhile and
    // has message K again, flagged otherwise, and a subscriptions file of its own.
    env.rm("alice/Maildir");
    let again = env.deliver("alice", "", &k.cur("RS"), &k.bytes);
    env.put("alice/Maildir/subscriptions", b"V\t2\n\nfresh\n");
    for dir in ["alice", "alice/Maildir", "alice/Maildir/cur", "alice/Maildir/new", "alice/Maildir/tmp"] {
        fs::set_permissions(env.store.join(dir), fs::Permissions::from_mode(0o700)).unwrap();
    }
    if is_root() {
        chown_all(&env.store.join("alice"), uid, gid);
    }
    let again_ino = fs::metadata(env.store.join(&again)).unwrap().ino();

    let run = env.ok(&["-v", "--restore", "-u", "alice"]);
    for (path, node) in replica.iter().filter(|(p, _)| p.starts_with("alice/")) {
        let Node::File { .. } = node else { continue };
        if path.contains(&k.unique) || (path.ends_with("/subscriptions") && path.matches('/').count() == 2) {
            continue;
        }
        let restored = tree(env.store.join(path).parent().unwrap());
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(restored.get(name), Some(node), "{path} restored as it was\n{run}\n{}", env.trees());
        let meta = fs::metadata(env.store.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{path}: owned like its folder\n{run}");
        assert_eq!(meta.mode() & 0o111, 0, "{path}: mode {:o} has execute bits\n{run}", meta.mode());
    }
    let ks: Vec<String> = env.store_tree().into_keys().filter(|p| p.contains(&k.unique)).collect();
    assert_eq!(ks, std::slice::from_ref(&again), "the store's own copy of K stays, alone\n{run}");
    assert_eq!(fs::metadata(env.store.join(&again)).unwrap().ino(), again_ino, "not overwritten\n{run}");
    assert_eq!(fs::read(env.store.join("alice/Maildir/subscriptions")).unwrap(), b"V\t2\n\nfresh\n", "kept\n{run}");
    for dir in ["alice/Maildir/.Sent", "alice/Maildir/.Sent/cur", "alice/Maildir/.Work.2024/new"] {
        let meta = fs::metadata(env.store.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}\n{run}"));
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{dir}: owned like its parent\n{run}");
    }
    assert!(env.store.join("alice/Maildir/.Sent/tmp").is_dir(), "a restored mailbox has its tmp/\n{run}");
    assert!(!CACHES.iter().any(|c| env.in_store(c)), "no cache is restored\n{run}");
}

#[test]
fn restore_by_mailbox_or_all_brings_back_only_what_is_named() {
    // Guards --restore -m (one mailbox) and -A (every user the state knows).
    let env = MailEnv::new();
    dovecot_store(&env);
    env.ok(&["-A"]);
    let before = env.expected_replica();
    env.rm("alice/Maildir/.Sent");
    env.rm("alice/Maildir/.Work.2024");
    env.rm("bob/Maildir");
    let run = env.ok(&["--restore", "-m", "user.alice.Sent"]);
    assert!(env.in_store("alice/Maildir/.Sent/maildirfolder"), "{run}");
    assert!(!env.in_store("alice/Maildir/.Work.2024") && !env.in_store("bob/Maildir"), "only .Sent\n{run}");
    let run = env.ok(&["--restore", "-A"]);
    let restored = env.expected_replica();
    let differences = diff("store before", &before, "restored", &restored);
    assert!(differences.is_empty(), "{run}\n{differences}");
}

// ---- -w, -d, -t ----

/// A write lease on a store file: whoever opens it blocks until the lease is dropped (or the
/// kernel's lease-break-time, 45 s), and the holder can see that someone is waiting. The
/// break signal is SIGWINCH, ignored by default, rather than SIGIO, which would kill us.
struct Lease(fs::File);

/// fcntl's F_SETSIG (Linux; the libc crate does not export it).
const F_SETSIG: libc::c_int = 10;

impl Lease {
    fn take(path: &Path) -> Lease {
        let file = fs::File::open(path).unwrap();
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own, with integer arguments.
        let (sig, lease) =
            unsafe { (libc::fcntl(fd, F_SETSIG, libc::SIGWINCH), libc::fcntl(fd, libc::F_SETLEASE, libc::F_WRLCK)) };
        assert!(sig == 0 && lease == 0, "lease on {}: {}", path.display(), std::io::Error::last_os_error());
        Lease(file)
    }

    /// True once another process is blocked opening the file.
    fn broken(&self) -> bool {
        // SAFETY: as above.
        unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_GETLEASE) != libc::F_WRLCK }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
}

#[test]
fn a_cycle_past_its_timeout_requeues_the_users_it_did_not_reach() {
    // Guards -t: a rolling cycle that runs past its timeout stops at the next user and puts
    // that user's mailboxes back into the log as MAILBOX lines, which the next cycle does.
    // Alice's pass is held past the 1 s budget by a lease on her new message (deterministic:
    // we see pairsync blocked opening it), so bob, second in the cycle, is re-queued.
    let env = MailEnv::new();
    env.mailbox("alice", "");
    env.mailbox("bob", "");
    env.ok(&["-A"]);
    let (a, b) = (msg(1), msg(2));
    let alice = env.deliver("alice", "", &a.in_new(), &a.bytes);
    let bob = env.deliver("bob", "", &b.in_new(), &b.bytes);
    env.ok(&["log", "APPEND", "user.alice"]);
    env.ok(&["log", "APPEND", "user.bob"]);
    let lease = Lease::take(&env.store.join(&alice));
    let child = env.spawn(&["-v", "-r", "-1", "-t", "1"]);
    wait_until("pairsync to open alice's new message", MINUTE, || lease.broken());
    // The cycle started before that open: let its 1 s budget run out while alice is held.
    std::thread::sleep(Duration::from_millis(1500));
    drop(lease);
    let run = child.finish();
    assert_eq!(run.code, 0, "{run}");
    assert!(env.on_replica(&alice), "alice's pass finished\n{run}\n{}", env.trees());
    assert!(!env.on_replica(&bob), "bob was cut from the cycle\n{run}\n{}", env.trees());
    assert_eq!(fs::read_to_string(env.sync_log()).unwrap_or_default(), "MAILBOX user.bob\n", "{run}");
    assert!(!env.sync_log_run().exists(), "{run}");
    let run = env.ok(&["-r", "-1"]);
    assert!(env.on_replica(&bob), "the next cycle does bob\n{run}\n{}", env.trees());
    assert!(!env.sync_log().exists(), "{run}");
}

#[test]
fn wait_delays_the_start() {
    // Guards -w: the run starts no sooner than asked (and -w 0 not at all later than needed).
    let env = MailEnv::new();
    let m = msg(1);
    let path = env.deliver("alice", "", &m.in_new(), &m.bytes);
    env.ok(&["-w", "0", "-u", "alice"]);
    let m2 = msg(2);
    let later = env.deliver("alice", "", &m2.in_new(), &m2.bytes);
    let started = Instant::now();
    let run = env.ok(&["-w", "1", "-u", "alice"]);
    assert!(started.elapsed() >= Duration::from_secs(1), "-w 1\n{run}");
    assert!(env.on_replica(&path) && env.on_replica(&later), "{run}");
}

// ---- Sieve ----

#[test]
fn a_user_pass_includes_the_users_sieve_scripts() {
    // Guards -u with sieve_dir: a user's Sieve scripts travel with their mail, and -s alone
    // sends only them.
    let env = MailEnv::with_config("sieve_dir = \"{user}/sieve\"", "");
    let m = msg(1);
    let mail = env.deliver("alice", "", &m.in_new(), &m.bytes);
    env.put_at("alice/sieve/main.sieve", b"require \"fileinto\";\nkeep;\n", RECEIVED);
    let run = env.ok(&["-u", "alice"]);
    assert_eq!(
        fs::read(env.replica.join("alice/sieve/main.sieve")).unwrap(),
        b"require \"fileinto\";\nkeep;\n",
        "{run}"
    );
    assert!(env.on_replica(&mail), "{run}");
    env.put_at("alice/sieve/vacation.sieve", b"vacation \"away\";\n", RECEIVED + 1);
    let m2 = msg(2);
    let later = env.deliver("alice", "", &m2.in_new(), &m2.bytes);
    let run = env.ok(&["-s", "alice"]);
    assert!(env.on_replica("alice/sieve/vacation.sieve"), "{run}");
    assert!(!env.on_replica(&later), "-s sends Sieve scripts only\n{run}");
}

#[test]
fn sieve_scripts_are_replicated_with_the_active_link_kept_as_a_link() {
    // Guards -s: a user's Sieve scripts are replicated, the active-script symlink as a link.
    let env = MailEnv::with_config("sieve_dir = \"{user}/sieve\"", "");
    env.mailbox("alice", "");
    env.put_at("alice/sieve/main.sieve", b"require \"fileinto\";\nkeep;\n", RECEIVED);
    env.put_at("alice/sieve/vacation.sieve", b"require \"vacation\";\nvacation \"away\";\n", RECEIVED);
    std::os::unix::fs::symlink("main.sieve", env.store.join("alice/sieve/active.sieve")).unwrap();
    let run = env.ok(&["-s", "alice"]);
    let sieve = tree(&env.replica.join("alice/sieve"));
    let want = tree(&env.store.join("alice/sieve"));
    let differences = diff("store", &want, "replica", &sieve);
    assert!(differences.is_empty(), "{run}\n{differences}");
    assert!(run.stderr.is_empty(), "{run}");
}

#[test]
fn json_gives_the_counts_the_actions_and_problems_as_objects() {
    let env = MailEnv::new();
    dovecot_store(&env);
    let run = env.ok(&["--json", "-A"]);
    let summary: serde_json::Value =
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{run}"));
    assert_eq!(summary["copied"], 16, "{run}");
    assert_eq!(summary["exit_code"], 0);
    assert!(summary["mailboxes"].as_u64().unwrap() >= 4, "{run}");
    let actions = summary["actions"].as_array().unwrap();
    let copies: Vec<&serde_json::Value> = actions.iter().filter(|a| a["kind"] == "copy").collect();
    assert_eq!(copies.len(), 16, "{run}");
    assert!(copies.iter().all(|a| a["side"] == "destination" && a["bytes"].is_u64() && a["path"].is_string()));
    assert!(actions.iter().any(|a| a["kind"] == "mkdir"), "{run}");
    assert!(summary["problems"].as_array().unwrap().is_empty() && summary["warnings"].is_array());
}
