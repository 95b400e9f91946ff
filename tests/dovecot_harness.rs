//! The Dovecot harness (tests/dovecot) does what the mail tests rely on: each test drives the
//! real dovecot-lda / doveadm through it and checks on disk what Dovecot did. Skipped without
//! dovecot-core unless PAIRSYNC_TEST_DOVECOT=1 (CI), which makes that a failure.

mod dovecot;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dovecot::{diff, inode, message_files, tree, Dovecot, Store};

/// A fresh store, or `None` (the test returns) when Dovecot is missing and not required.
fn store() -> Option<Store> {
    if Dovecot::skip() {
        return None;
    }
    Some(Store::new())
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The Maildir unique name: the file name before `:2,`.
fn unique(path: &Path) -> String {
    let name = name(path);
    name.split_once(":2,").map_or(name.clone(), |(u, _)| u.to_string())
}

/// The one file of `folder` (new/ or cur/) whose unique name is `unique`.
#[track_caller]
fn find(folder: &Path, unique_name: &str) -> PathBuf {
    let found: Vec<PathBuf> = message_files(folder).into_iter().filter(|p| unique(p) == unique_name).collect();
    match &found[..] {
        [one] => one.clone(),
        _ => panic!("{unique_name} in {}: found {found:?} among {:?}", folder.display(), message_files(folder)),
    }
}

/// "new" or "cur".
fn sub(path: &Path) -> String {
    name(path.parent().unwrap())
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn deliveries_land_in_new_with_unique_names_and_the_exact_bytes() {
    let Some(store) = store() else { return };
    let mut delivered = Vec::new();
    for (i, subject) in ["alpha", "bravo", "charlie"].iter().enumerate() {
        let msg = store.message(subject, 1_000 + 100 * i);
        delivered.push((store.deliver("alice", None, &msg), msg));
    }
    for subject in ["delta", "echo"] {
        let msg = store.message(subject, 2_000);
        delivered.push((store.deliver("alice", Some("Sent"), &msg), msg));
    }
    let maildir = store.root.join("alice/Maildir");
    let sent = maildir.join(".Sent");
    for (i, (path, msg)) in delivered.iter().enumerate() {
        let folder = if i < 3 { &maildir } else { &sent };
        assert_eq!(path.parent().unwrap(), folder.join("new"), "{path:?}");
        let n = name(path);
        assert!(n.contains(&format!(",S={},", msg.len())), "{n}: no ,S=<size> for {} bytes", msg.len());
        assert!(!n.contains(":2,"), "{n}: a fresh delivery has no flags part");
        assert_eq!(&std::fs::read(path).unwrap(), msg, "{n}: Dovecot changed the message bytes");
    }
    let uniques: std::collections::BTreeSet<String> = delivered.iter().map(|(p, _)| unique(p)).collect();
    assert_eq!(uniques.len(), 5, "unique names repeat: {uniques:?}");
    assert_eq!(message_files(&maildir).len(), 3);
    assert_eq!(message_files(&sent).len(), 2);
    // Autocreated as a Maildir++ folder, and autosubscribed.
    assert!(sent.join("maildirfolder").is_file(), "{:?}", tree(&store.root).keys().collect::<Vec<_>>());
    let subscriptions = std::fs::read_to_string(maildir.join("subscriptions")).unwrap();
    assert!(subscriptions.lines().any(|l| l == "Sent"), "subscriptions: {subscriptions:?}");
    assert_eq!(store.mailboxes("alice"), ["INBOX", "Sent"]);
    // What a replicator sees: the messages and Dovecot's control files, no caches.
    let control = ["dovecot-uidlist", "dovecot-uidvalidity", "dovecot-keywords", "subscriptions", "maildirfolder"];
    let seen = tree(&store.root);
    for rel in seen.keys() {
        let file = rel.rsplit('/').next().unwrap();
        let is_message = rel.contains("/new/") || rel.contains("/cur/");
        assert!(is_message || control.iter().any(|c| file.starts_with(c)), "unexpected {rel} in {:?}", seen.keys());
    }
    assert_eq!(seen.keys().filter(|k| k.contains("/new/")).count(), 5, "{:?}", seen.keys());
    assert!(maildir.join("dovecot.index.log").is_file(), "Dovecot keeps its index here, tree() leaves it out");
    // The files are the store's owner's.
    let owner = &store.owner;
    let meta = std::fs::metadata(&delivered[0].0).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (owner.uid, owner.gid), "delivered file not owned by {}", owner.name);
}

#[test]
fn a_flag_change_renames_the_file_in_place_even_in_new() {
    let Some(store) = store() else { return };
    let alpha = store.deliver("alice", None, &store.message("alpha", 500));
    let bravo = store.deliver("alice", None, &store.message("bravo", 500));
    let (ino, id) = (inode(&alpha), unique(&alpha));
    let inbox = store.mailbox_dir("alice", "INBOX");

    store.flags_add("alice", "INBOX", "subject alpha", r"\Seen");
    assert!(!alpha.exists(), "the old name is gone");
    let seen = find(&inbox, &id);
    assert_eq!(seen, inbox.join("new").join(format!("{id}:2,S")), "renamed within new/");
    assert_eq!(inode(&seen), ino, "same inode: a rename, not a copy");
    assert!(bravo.exists(), "the other message is untouched");

    store.flags_add("alice", "INBOX", "subject alpha", "$Label1");
    let labelled = find(&inbox, &id);
    assert_eq!(name(&labelled), format!("{id}:2,Sa"), "keyword a = $Label1");
    let keywords = std::fs::read_to_string(inbox.join("dovecot-keywords")).unwrap();
    assert!(keywords.contains("$Label1"), "dovecot-keywords: {keywords:?}");

    store.flags_remove("alice", "INBOX", "subject alpha", r"\Seen");
    let unseen = find(&inbox, &id);
    assert_eq!(name(&unseen), format!("{id}:2,a"));
    assert_eq!(inode(&unseen), ino);
}

#[test]
fn force_resync_moves_new_to_cur_keeping_inodes() {
    let Some(store) = store() else { return };
    let alpha = store.deliver("alice", None, &store.message("alpha", 300));
    let bravo = store.deliver("alice", None, &store.message("bravo", 300));
    store.flags_add("alice", "INBOX", "subject bravo", r"\Flagged");
    let inbox = store.mailbox_dir("alice", "INBOX");
    let (a, b) = (unique(&alpha), unique(&bravo));
    let (a_ino, b_ino) = (inode(&alpha), inode(&find(&inbox, &b)));
    assert_eq!(sub(&find(&inbox, &b)), "new", "doveadm flags never moves new/ to cur/");

    store.force_resync("alice", "INBOX");
    let (a_now, b_now) = (find(&inbox, &a), find(&inbox, &b));
    assert_eq!(a_now, inbox.join("cur").join(format!("{a}:2,")));
    assert_eq!(b_now, inbox.join("cur").join(format!("{b}:2,F")));
    assert_eq!((inode(&a_now), inode(&b_now)), (a_ino, b_ino), "moved by rename");
    assert_eq!(std::fs::read_dir(inbox.join("new")).unwrap().count(), 0, "new/ is empty");
}

#[test]
fn move_keeps_the_inode_and_copy_links_the_same_name() {
    let Some(store) = store() else { return };
    let alpha = store.deliver("alice", None, &store.message("alpha", 400));
    let bravo = store.deliver("alice", None, &store.message("bravo", 400));
    let charlie = store.deliver("alice", None, &store.message("charlie", 400));
    store.flags_add("alice", "INBOX", "subject bravo", r"\Flagged");
    store.mailbox_create("alice", "Work");
    let (inbox, work) = (store.mailbox_dir("alice", "INBOX"), store.mailbox_dir("alice", "Work"));
    assert!(work.join("maildirfolder").is_file(), "mailbox_create made {}", work.display());

    let alpha_ino = inode(&alpha);
    store.move_("alice", "INBOX", "Work", "subject alpha");
    let moved = find(&work, &unique(&alpha));
    assert_eq!(moved, work.join("new").join(unique(&alpha)), "an unflagged message lands in new/, no :2,");
    assert_eq!(inode(&moved), alpha_ino, "move is link + unlink: same inode");
    assert_eq!(std::fs::metadata(&moved).unwrap().nlink(), 1, "the source link is gone");
    assert!(!alpha.exists());

    let bravo_ino = inode(&find(&inbox, &unique(&bravo)));
    store.move_("alice", "INBOX", "Work", "subject bravo");
    let moved = find(&work, &unique(&bravo));
    assert_eq!(moved, work.join("cur").join(format!("{}:2,F", unique(&bravo))), "a flagged one lands in cur/");
    assert_eq!(inode(&moved), bravo_ino, "move is link + unlink: same inode");

    let charlie_ino = inode(&charlie);
    store.copy("alice", "INBOX", "Work", "subject charlie");
    let copied = find(&work, &unique(&charlie));
    assert_eq!(inode(&copied), charlie_ino, "copy hard-links the same file");
    assert_eq!(std::fs::metadata(&charlie).unwrap().nlink(), 2);
    assert_eq!(message_files(&inbox), [charlie.clone()].into(), "INBOX keeps only charlie");
}

#[test]
fn mailbox_rename_is_one_rename_of_the_folder() {
    let Some(store) = store() else { return };
    let sent_msg = store.deliver("alice", Some("Sent"), &store.message("sent one", 300));
    let sent = store.mailbox_dir("alice", "Sent");
    let (dir_ino, msg_ino) = (inode(&sent), inode(&sent_msg));

    store.mailbox_rename("alice", "Sent", "Archive.2024");
    let archive = store.mailbox_dir("alice", "Archive.2024");
    assert_eq!(archive, store.root.join("alice/Maildir/.Archive.2024"));
    assert!(!sent.exists(), "{} is gone", sent.display());
    assert_eq!(inode(&archive), dir_ino, "the folder was renamed, not rebuilt");
    assert_eq!(inode(&find(&archive, &unique(&sent_msg))), msg_ino);
    assert!(store.mailboxes("alice").contains(&"Archive.2024".to_string()), "{:?}", store.mailboxes("alice"));

    store.mailbox_delete("alice", "Archive.2024");
    assert!(!archive.exists(), "mailbox_delete removes {} with its messages", archive.display());
}

#[test]
fn expunge_removes_the_file_and_fetch_shows_flags_and_subjects() {
    let Some(store) = store() else { return };
    let alpha = store.deliver("alice", None, &store.message("alpha", 200));
    let bravo = store.deliver("alice", None, &store.message("bravo", 200));
    let charlie = store.deliver("alice", None, &store.message("charlie", 200));
    store.flags_add("alice", "INBOX", "subject alpha", r"\Seen $Label1");
    store.expunge("alice", "INBOX", "subject bravo");
    assert!(!bravo.exists(), "expunge unlinks the file");
    assert!(charlie.exists());

    let text = store.fetch("alice", "INBOX", "uid flags hdr.subject");
    assert!(text.contains("hdr.subject: alpha\n") && text.contains("hdr.subject: charlie\n"), "{text}");
    assert!(!text.contains("bravo"), "{text}");

    let rows = store.fetch_rows("alice", "INBOX", "uid flags hdr.subject guid");
    let got: Vec<(&str, &str, bool, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["uid"].as_str(),
                r["hdr.subject"].as_str(),
                r["flags"].contains(r"\Seen"),
                r["flags"].contains("$Label1"),
            )
        })
        .collect();
    assert_eq!(got, [("1", "alpha", true, true), ("3", "charlie", false, false)], "{rows:?}");
    // For Maildir the GUID is the unique name.
    assert_eq!(rows[0]["guid"], unique(&alpha));
}

#[test]
fn restored_files_are_given_back_to_the_store_owner() {
    let Some(store) = store() else { return };
    store.deliver("alice", None, &store.message("alpha", 200));
    store.flags_add("alice", "INBOX", "all", r"\Seen");
    // A "restore" as the test's user (root in CI): bob gets a copy of alice's files.
    let (from, to) = (store.root.join("alice"), store.root.join("bob"));
    for (rel, (content, _)) in tree(&from) {
        let path = to.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(to.join("Maildir").join(sub)).unwrap();
    }
    store.chown_to_mail_user(&to);
    for entry in walkdir::WalkDir::new(&to) {
        let meta = entry.as_ref().unwrap().metadata().unwrap();
        assert_eq!((meta.uid(), meta.gid()), (store.owner.uid, store.owner.gid), "{:?}", entry.unwrap().path());
    }
    store.flags_add("bob", "INBOX", "all", r"\Flagged");
    let rows = store.fetch_rows("bob", "INBOX", "flags hdr.subject");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0]["flags"].contains(r"\Seen") && rows[0]["flags"].contains(r"\Flagged"), "{rows:?}");
    assert_eq!(rows[0]["hdr.subject"], "alpha");
}

#[test]
fn a_failing_command_shows_its_command_line_status_and_stderr() {
    let Some(store) = store() else { return };
    store.deliver("alice", None, &store.message("alpha", 100));
    let text = panic_message(|| {
        store.expunge("alice", "Nope", "all");
    });
    for part in [
        "command: ",
        "USER=alice",
        "HOME=",
        "doveadm -c ",
        "expunge mailbox Nope all",
        "status: exit status: ",
        "--- stderr",
        "Mailbox doesn't exist: Nope",
        "--- dovecot log",
    ] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
    // doveadm fetch exits 0 and prints nothing for a missing mailbox: the harness does not.
    let text = panic_message(|| {
        store.fetch("alice", "Nope", "uid");
    });
    assert!(text.contains("Mailbox doesn't exist: Nope"), "{text}");
}

#[test]
fn tree_skips_tmp_and_caches_and_diff_explains_each_difference() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let put = |root: &Path, rel: &str, content: &str, mtime: i64| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        filetime::set_file_mtime(&path, filetime::FileTime::from_unix_time(mtime, 0)).unwrap();
    };
    for root in [&a, &b] {
        put(root, "u/Maildir/tmp/1.M1P1.h", "partial", 10);
        put(root, "u/Maildir/dovecot.index.cache", "cache", 10);
        put(root, "u/Maildir/.Sent/dovecot.index.log", "log", 10);
        put(root, "u/Maildir/dovecot.list.index.log", "log", 10);
        put(root, "u/Maildir/dovecot.mailbox.log", "log", 10);
        put(root, "u/Maildir/dovecot-uidlist", "3 V1 N2\n", 10);
    }
    put(&a, "u/Maildir/new/1.M1P1.h,S=5", "hello", 100);
    put(&a, "u/Maildir/cur/2.M2P2.h,S=5:2,S", "world", 100);
    put(&a, "u/Maildir/cur/3.M3P3.h,S=5:2,", "three", 100);
    put(&b, "u/Maildir/cur/1.M1P1.h,S=5:2,", "hello", 100);
    put(&b, "u/Maildir/cur/2.M2P2.h,S=5:2,S", "wOrld", 100);
    put(&b, "u/Maildir/cur/3.M3P3.h,S=5:2,", "three", 107);
    put(&b, "u/Maildir/cur/4.M4P4.h,S=4:2,", "four", 100);

    let ta = tree(&a);
    let keys: Vec<&str> = ta.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "u/Maildir/cur/2.M2P2.h,S=5:2,S",
            "u/Maildir/cur/3.M3P3.h,S=5:2,",
            "u/Maildir/dovecot-uidlist",
            "u/Maildir/new/1.M1P1.h,S=5"
        ]
    );
    assert_eq!(ta["u/Maildir/new/1.M1P1.h,S=5"], (b"hello".to_vec(), 100));
    assert_eq!(diff(&ta, &ta), "");
    assert_eq!(
        diff(&ta, &tree(&b)),
        "content: u/Maildir/cur/2.M2P2.h,S=5:2,S: 5 bytes vs 5 bytes, first difference at byte 1\n\
         mtime: u/Maildir/cur/3.M3P3.h,S=5:2,: 100 vs 107 (+7 s)\n\
         missing: u/Maildir/new/1.M1P1.h,S=5 (5 bytes; b has the same bytes at u/Maildir/cur/1.M1P1.h,S=5:2,)\n\
         extra: u/Maildir/cur/1.M1P1.h,S=5:2, (5 bytes)\n\
         extra: u/Maildir/cur/4.M4P4.h,S=4:2, (4 bytes)\n"
    );
}

#[test]
fn messages_are_deterministic_with_an_exact_body_size() {
    let store_free = dovecot::message;
    for size in [0, 1, 72, 73, 74, 10_000] {
        let m = store_free("alpha", size);
        let text = String::from_utf8(m.clone()).unwrap();
        let (head, body) = text.split_once("\n\n").unwrap();
        assert_eq!(body.len(), size, "body of {size}");
        assert!(head.contains("\nSubject: alpha\n"), "{head}");
        assert!(body.lines().all(|l| l.len() <= 72), "lines of at most 72");
        assert!(size == 0 || body.ends_with('\n'));
        assert_eq!(m, store_free("alpha", size), "deterministic");
    }
    assert_ne!(store_free("alpha", 500), store_free("bravo", 500));
}

#[test]
fn skip_policy_and_search_words() {
    assert!(!dovecot::required_by(None));
    assert!(!dovecot::required_by(Some("")));
    assert!(!dovecot::required_by(Some("0")));
    assert!(dovecot::required_by(Some("1")));
    let typo = panic_message(|| {
        dovecot::required_by(Some("yes"));
    });
    assert!(typo.contains("PAIRSYNC_TEST_DOVECOT=\"yes\""), "{typo}");

    assert_eq!(dovecot::search_words("all"), ["all"]);
    assert_eq!(dovecot::search_words(r#"subject "a b"  uid 3"#), ["subject", "a b", "uid", "3"]);
    assert_eq!(dovecot::search_words(r#"subject """#), ["subject", ""]);
}
