//! The Cyrus harness (tests/cyrus) does what the mail tests rely on: a private Cyrus IMAP 3.6
//! server starts, takes mail over LMTP and changes over IMAP and ManageSieve, writes the sync
//! log, answers Cyrus's tools, stops and starts again. Skipped without cyrus-imapd (or when not
//! root) unless PAIRSYNC_TEST_CYRUS=1 (CI), which makes that a failure.

mod cyrus;

use std::path::Path;

use cyrus::{Cyrus, CyrusServer, Options};

/// A started server, or `None` (the test returns) when Cyrus cannot run and is not required.
fn server(opts: Options) -> Option<CyrusServer> {
    if Cyrus::skip() {
        return None;
    }
    Some(CyrusServer::start(opts))
}

fn panic_message(f: impl FnOnce()) -> String {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>().cloned().or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
}

/// Asserts that `lines` holds `expected` in this order (other lines may come between).
#[track_caller]
fn assert_in_order(lines: &[String], expected: &[&str]) {
    let mut at = 0;
    for want in expected {
        match lines[at..].iter().position(|l| l == want) {
            Some(i) => at += i + 1,
            None => panic!("{want:?} missing (in order) from the sync log:\n{}", lines.join("\n")),
        }
    }
}

/// What both layouts go through: a user, two deliveries, a keyword, a copy, an expunge made
/// final by cyr_expire, a rename, a subscription and a sieve script.
fn exercise(server: &CyrusServer) {
    server.create_user("alice");
    server.create("alice", "INBOX.Sent");
    let (one, two) = (server.message("one", 300), server.message("two", 500));
    server.deliver("alice", None, &one);
    server.deliver("alice", None, &two);
    server.add_flags("alice", "INBOX", "1", &["$Work", r"\Flagged"]);
    server.copy("alice", "INBOX", "1", "INBOX.Sent");
    server.expunge("alice", "INBOX", Some("2"));
    server.expire(&["-X", "0"]);
    server.rename("alice", "INBOX.Sent", "INBOX.Archive");
    server.subscribe("alice", "INBOX.Archive");
    server.sieve_put(
        "alice",
        "main",
        "require [\"fileinto\"];\r\nif header :contains \"subject\" \"x\" { fileinto \"INBOX.Archive\"; }\r\n",
        true,
    );

    let inbox = server.messages("alice", "INBOX");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!((inbox[0].uid, inbox[0].flags.clone()), (1, vec!["$Work".to_string(), r"\Flagged".to_string()]));
    // lmtpd prepends Return-Path, Received, X-Cyrus-Session-Id and X-Sieve; the rest is ours.
    assert!(inbox[0].body.ends_with(&one), "{}", String::from_utf8_lossy(&inbox[0].body));
    assert!(inbox[0].body.starts_with(b"Return-Path: <sender@example.org>\r\n"));
    assert_eq!(inbox[0].size, inbox[0].body.len() as u64);
    assert_eq!(inbox[0].subject().as_deref(), Some("one"));
    assert_eq!(inbox[0].internaldate.len(), 26, "{:?}", inbox[0].internaldate);
    let archive = server.messages("alice", "INBOX.Archive");
    assert_eq!(archive.len(), 1, "{archive:?}");
    assert_eq!((archive[0].uid, &archive[0].body), (1, &inbox[0].body));
    assert!(archive[0].has_flag("$work"), "COPY keeps flags: {:?}", archive[0].flags);
    assert_eq!(server.list("alice"), ["INBOX", "INBOX.Archive"]);
    assert_eq!(server.lsub("alice"), ["INBOX.Archive"]);
    assert_eq!(server.sieve_scripts("alice"), [("main".to_string(), true)]);
    // messages() is read-only: EXAMINE + BODY.PEEK[] left no \Seen.
    assert!(!server.messages("alice", "INBOX")[0].has_flag(r"\Seen"));

    // On disk: the message files, expunged one gone after cyr_expire -X 0.
    let inbox_dir = server.mailbox_path("user.alice");
    assert!(inbox_dir.starts_with(server.spool()), "{}", inbox_dir.display());
    assert!(inbox_dir.join("cyrus.header").is_file() && inbox_dir.join("1.").is_file(), "{}", inbox_dir.display());
    assert!(!inbox_dir.join("2.").exists(), "cyr_expire -X 0 unlinked the expunged message");
    let archive_dir = server.mailbox_path("user.alice.Archive");
    assert!(archive_dir.join("1.").is_file(), "{}", archive_dir.display());
    let user_dir = server.mbpath(&["-u", "-U", "alice"]);
    assert!(Path::new(user_dir.trim_end()).exists(), "{user_dir}");
    let sieve_dir = server.mbpath(&["-u", "-S", "alice"]);
    assert!(Path::new(sieve_dir.trim_end()).join("main.bc").is_file(), "{sieve_dir}");

    let mboxlist = server.mboxlist();
    for name in ["user.alice", "user.alice.Archive", "user.alice.#sieve"] {
        assert!(mboxlist[name]["uniqueid"].is_string(), "{name} in {mboxlist:#}");
    }
    assert!(mboxlist["user.alice.Sent"]["mbtype"].as_str().unwrap().contains('d'), "a tombstone: {mboxlist:#}");
}

const EXPECTED_LOG: &[&str] = &[
    "MAILBOX user.alice",
    "APPEND user.alice",
    "MAILBOX user.alice",
    "APPEND user.alice",
    "MAILBOX user.alice",
    "DOUBLEMAILBOX user.alice user.alice.Sent",
    "MAILBOX user.alice",
    "RENAME user.alice.Sent user.alice.Archive",
    "SUB alice user.alice.Archive",
    "MAILBOX user.alice.#sieve",
];

#[test]
fn uuid_layout_end_to_end() {
    let Some(server) = server(Options { sieve: true, ..Options::default() }) else { return };
    exercise(&server);
    let inbox_dir = server.mailbox_path("user.alice");
    let uniqueid = server.mboxlist()["user.alice"]["uniqueid"].as_str().unwrap().to_string();
    assert_eq!(inbox_dir, server.spool().join("uuid").join(&uniqueid[..1]).join(&uniqueid[1..2]).join(&uniqueid));
    let log = server.sync_log_lines(None);
    assert_in_order(&log, EXPECTED_LOG);
    assert!(!server.sync_log(Some("pairsync")).exists());
    // Reading back writes nothing to the sync log.
    server.messages("alice", "INBOX");
    server.messages("alice", "INBOX.Archive");
    server.list("alice");
    server.lsub("alice");
    server.sieve_scripts("alice");
    server.mboxlist();
    server.mbpath(&["-a", "user.alice"]);
    assert_eq!(server.sync_log_lines(None), log);
}

#[test]
fn legacy_layout_with_a_channel_end_to_end() {
    let opts =
        Options { legacy_dirs: true, sieve: true, channels: Some("pairsync \"\"".to_string()), ..Options::default() };
    let Some(server) = server(opts) else { return };
    exercise(&server);
    assert_eq!(server.mailbox_path("user.alice"), server.spool().join("a/user/alice"));
    assert_eq!(server.mailbox_path("user.alice.Archive"), server.spool().join("a/user/alice/Archive"));
    assert_eq!(server.mbpath(&["-u", "-U", "alice"]).trim_end(), server.config_dir().join("user/a").to_str().unwrap());
    let named = server.sync_log_lines(Some("pairsync"));
    assert_in_order(&named, EXPECTED_LOG);
    assert_eq!(named, server.sync_log_lines(None), "every channel gets every line");
    assert_eq!(server.mboxlist()["user.alice"]["mbtype"], "el");
}

#[test]
fn stop_restart_and_a_stopped_spool() {
    let Some(mut server) = server(Options::default()) else { return };
    server.create_user("bob");
    server.deliver("bob", None, &server.message("kept", 100));
    let before = server.messages("bob", "INBOX");
    server.stop();
    assert!(!server.is_running());
    // Tools work on the stopped spool.
    assert!(server.mailbox_path("user.bob").join("1.").is_file());
    server.stop(); // idempotent
    server.restart();
    assert!(server.is_running());
    assert_eq!(server.messages("bob", "INBOX"), before);
    server.restart();
    server.deliver("bob", None, &server.message("after", 100));
    assert_eq!(server.messages("bob", "INBOX").len(), 2);
}

#[test]
fn folder_delivery_quota_metadata_and_user_deletion() {
    let Some(server) = server(Options::default()) else { return };
    server.create_user("carol");
    server.create("carol", "INBOX.Work");
    server.deliver("carol", Some("INBOX.Work"), &server.message("to work", 200));
    server.deliver("carol", Some("INBOX.Work"), &server.message("to work 2", 200));
    assert_eq!(server.messages("carol", "INBOX.Work").len(), 2, "user+Work lands in Work");
    assert!(server.messages("carol", "INBOX").is_empty());
    assert!(!server.allow_post("carol", "INBOX.Work"), "granted once");
    let uid =
        server.append("carol", "INBOX", &[r"\Seen"], Some("02-Jan-2024 10:00:00 +0000"), &server.message("app", 50));
    assert_eq!(uid, 1);
    let inbox = server.messages("carol", "INBOX");
    assert_eq!(inbox[0].internaldate, " 2-Jan-2024 10:00:00 +0000", "day padded with a space");
    assert_eq!(inbox[0].body, server.message("app", 50), "APPEND stores the bytes as given");
    assert_eq!(inbox[0].flags, [r"\Seen"]);
    server.move_("carol", "INBOX", "1", "INBOX.Work");
    assert_eq!(server.flags("carol", "INBOX.Work").last().unwrap(), &(3, vec![r"\Seen".to_string()]));
    server.setquota("user.carol", "STORAGE 100000");
    server.setmetadata("carol", "", "/private/comment", Some("hello"));
    let log = server.sync_log_lines(None);
    assert_in_order(&log, &["QUOTA user.carol", "ANNOTATION \"\""]);
    server.remove_flags("carol", "INBOX.Work", "3", &[r"\Seen"]);
    assert_eq!(server.flags("carol", "INBOX.Work")[2], (3, vec![]));
    server.unsubscribe("carol", "INBOX.Work");
    server.delete("carol", "INBOX.Work");
    server.delete_user("carol");
    assert!(server.sync_log_lines(None).contains(&"UNUSER carol".to_string()));
    assert!(server.list("carol").is_empty());
}

#[test]
fn unix_hierarchy_separator_dotted_users_and_a_user_rename() {
    let opts = Options { unixhierarchysep: true, allow_user_moves: true, ..Options::default() };
    let Some(server) = server(opts) else { return };
    assert_eq!(server.admin_name("john.doe", "INBOX/Sent"), "user/john.doe/Sent");
    assert_eq!(server.internal_name("john.doe", "INBOX/Sent"), "user.john^doe.Sent");
    server.create_user("john.doe");
    server.create("john.doe", "INBOX/Sent");
    server.deliver("john.doe", Some("INBOX/Sent"), &server.message("dotted", 100));
    assert_eq!(server.list("john.doe"), ["INBOX", "INBOX/Sent"]);
    assert_eq!(server.messages("john.doe", "INBOX/Sent").len(), 1);
    // The tools take the admin's (external) name, the sync log and mailboxes.db the internal one.
    assert!(server.mailbox_path("user/john.doe/Sent").join("1.").is_file());
    assert!(!server.tool_status("mbpath", &["user.john^doe.Sent"]).status.success());
    assert_in_order(&server.sync_log_lines(None), &["MAILBOX user.john^doe", "APPEND user.john^doe.Sent"]);
    assert!(server.mboxlist()["user.john^doe.Sent"].is_object());

    server.create_user("bob");
    server.create("bob", "INBOX/Work");
    server.rename_user("bob", "robert");
    assert_eq!(server.list("robert"), ["INBOX", "INBOX/Work"]);
    assert!(server.list("bob").is_empty());
    assert_in_order(&server.sync_log_lines(None), &["RENAME user.bob user.robert", "UNUSER bob", "USER robert"]);
}

#[test]
fn metapartition_keeps_the_index_apart_from_the_messages() {
    let Some(server) = server(Options { metapartition: true, legacy_dirs: true, ..Options::default() }) else { return };
    server.create_user("dave");
    server.deliver("dave", None, &server.message("meta", 100));
    let meta = server.meta_dir().unwrap();
    let data = server.mailbox_path("user.dave");
    let meta_path = server.mbpath(&["-m", "user.dave"]);
    assert_eq!(
        (data.clone(), meta_path.trim_end()),
        (server.spool().join("d/user/dave"), meta.join("d/user/dave").to_str().unwrap())
    );
    assert!(data.join("1.").is_file());
    for file in ["cyrus.header", "cyrus.index", "cyrus.cache", "cyrus.annotations"] {
        assert!(meta.join("d/user/dave").join(file).is_file(), "{file} in meta/");
        assert!(!data.join(file).exists(), "{file} not in spool/");
    }
    assert_eq!(server.messages("dave", "INBOX").len(), 1);
}

#[test]
fn failures_show_the_command_and_its_output() {
    let Some(server) = server(Options::default()) else { return };
    let text = panic_message(|| server.create("alice", "INBOX.Nope.Deeper"));
    for part in ["IMAP as alice failed", "command: ", "imap.py", "--- stderr", "transcript", "master.log"] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
    let text = panic_message(|| server.deliver("nobody", None, b"Subject: x\r\n\r\nx\r\n"));
    assert!(text.contains("550") && text.contains("RCPT TO:<nobody>"), "{text}");
    let text = panic_message(|| {
        server.mbpath(&["user.nobody", "user.alice"]);
    });
    assert!(text.contains("Invalid mailbox name") && text.contains("setpriv"), "{text}");
    let out = server.tool_status("mbpath", &["user.nobody"]);
    assert!(!out.status.success());
}

#[test]
fn skip_policy_and_messages() {
    assert!(!cyrus::required_by(None));
    assert!(!cyrus::required_by(Some("")));
    assert!(!cyrus::required_by(Some("0")));
    assert!(cyrus::required_by(Some("1")));
    let typo = panic_message(|| {
        cyrus::required_by(Some("yes"));
    });
    assert!(typo.contains("PAIRSYNC_TEST_CYRUS=\"yes\""), "{typo}");
    for size in [0, 2, 3, 72, 73, 74, 75, 76, 10_000] {
        let m = cyrus::message("alpha", size);
        let at = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(m.len() - at, size, "body of {size}");
        let text = String::from_utf8(m.clone()).unwrap();
        assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "CRLF only");
        assert!(text[at..].split("\r\n").all(|l| l.len() <= 72));
        assert_eq!(m, cyrus::message("alpha", size), "deterministic");
    }
    assert_ne!(cyrus::message("alpha", 500), cyrus::message("bravo", 500));
}
