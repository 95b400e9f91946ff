//! End-to-end against an FTP server: every mode with an FTP side. The server is the in-process
//! libunftp one, or pyftpdlib or vsftpd with `PAIRSYNC_TEST_FTP` (see `ftp_server`); the scenarios
//! hold for all three (vsftpd: LIST with minute precision, no MFMT).

mod ftp_server;
mod util;

use std::fs;

use ftp_server::FtpServer;
use util::{Side::Destination as D, Side::Source as S, TestEnv};

/// A TestEnv whose destination is served over FTP; the server's root is the destination folder,
/// so the tests look at (and edit) the server's files directly.
struct Ftp {
    env: TestEnv,
    server: FtpServer,
}

impl Ftp {
    fn new() -> Ftp {
        let env = TestEnv::new();
        let server = FtpServer::start(&env.dst);
        server.write_netrc(&env.home);
        Ftp { env, server }
    }

    /// `pairsync sync FROM TO EXTRA...` where "ftp" stands for the server's root.
    fn sync(&self, from: &str, to: &str, extra: &[&str]) -> util::Run {
        let url = self.server.url("");
        let side = |s: &str| if s == "ftp" { url.clone() } else { self.env.src.to_str().unwrap().to_string() };
        let (a, b) = (side(from), side(to));
        let mut args = vec!["sync", a.as_str(), b.as_str()];
        args.extend_from_slice(extra);
        self.env.run(&args)
    }

    #[track_caller]
    fn ok(&self, from: &str, to: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let run = self.sync(from, to, &args);
        self.env.expect(&run, 0);
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{run}"))
    }
}

fn binary() -> Vec<u8> {
    // Every byte value, LF and CR included, so that an ASCII-mode transfer would show.
    (0..=255u8).cycle().take(70_000).chain(b"\n\r\n\n".iter().copied()).collect()
}

#[test]
fn clone_up_is_byte_exact_and_a_rerun_uploads_nothing() {
    let f = Ftp::new();
    fs::write(f.env.src.join("bin.dat"), binary()).unwrap();
    f.env.put(S, "docs/a b.txt", "with a space").put(S, "docs/deep/x", "x");
    let first = f.ok("src", "ftp", &["--mode", "clone"]);
    assert_eq!(first["copied"], 3, "{first}");
    assert_eq!(fs::read(f.env.dst.join("bin.dat")).unwrap(), binary());
    f.env.assert_same();
    let again = f.ok("src", "ftp", &["--mode", "clone"]);
    assert_eq!((again["copied"].as_u64(), again["deleted"].as_u64()), (Some(0), Some(0)), "{again}");
    // No temp name is left on the server.
    assert!(!util::tree_of(&f.env.dst).keys().any(|p| p.contains(".pairsync-")), "{}", f.env.trees());
}

#[test]
fn clone_down_mirrors_the_server() {
    let f = Ftp::new();
    f.env.put(D, "srv/file.txt", "from the server").put(S, "stale.txt", "local extra");
    fs::write(f.env.dst.join("bin.dat"), binary()).unwrap();
    let done = f.ok("ftp", "src", &["--mode", "clone", "--force"]);
    assert_eq!(done["copied"], 2, "{done}");
    assert_eq!(fs::read(f.env.src.join("bin.dat")).unwrap(), binary());
    assert!(!f.env.exists(S, "stale.txt"));
    f.env.assert_same();
    let again = f.ok("ftp", "src", &["--mode", "clone"]);
    assert_eq!(again["copied"], 0, "{again}");
}

#[test]
fn simple_never_deletes_on_the_server() {
    let f = Ftp::new();
    f.env.put(S, "a", "1").put(S, "b", "2").put(D, "server-only", "keep me");
    f.ok("src", "ftp", &["--mode", "simple"]);
    f.env.rm(S, "a");
    f.ok("src", "ftp", &["--mode", "simple"]);
    f.env.assert_tree(D, &[("a", "1"), ("b", "2"), ("server-only", "keep me")]);
}

#[test]
fn two_way_carries_edits_made_on_the_server() {
    let f = Ftp::new();
    f.env.put(S, "local.txt", "l1").put(S, "both.txt", "base").put(S, "gone.txt", "g");
    f.ok("src", "ftp", &[]);
    // Edits on the server (its files are the destination folder), with distinct mtimes.
    f.env.put_at(D, "both.txt", "edited on the server", 1_800_000_000);
    f.env.put(D, "new-on-server.txt", "n");
    f.env.rm(D, "gone.txt");
    f.env.put_at(S, "local.txt", "l2, edited locally", 1_800_000_100);
    let done = f.ok("src", "ftp", &[]);
    assert_eq!(done["conflicts"].as_array().unwrap().len(), 0, "{done}");
    f.env.assert_tree(
        S,
        &[("both.txt", "edited on the server"), ("local.txt", "l2, edited locally"), ("new-on-server.txt", "n")],
    );
    f.env.assert_same();
    let again = f.ok("src", "ftp", &[]);
    assert_eq!((again["copied"].as_u64(), again["deleted"].as_u64()), (Some(0), Some(0)), "{again}");
}

#[test]
fn an_unreachable_server_or_a_refused_login_exits_6_without_the_password() {
    let f = Ftp::new();
    let dead = "ftp://tester@127.0.0.1:1/";
    let run = f.env.run(&["sync", f.env.src.to_str().unwrap(), dead]);
    f.env.expect(&run, 6);
    let wrong = format!("ftp://tester:not-the-password@127.0.0.1:{}/", f.server.port);
    let run = f.env.run(&["sync", f.env.src.to_str().unwrap(), &wrong]);
    f.env.expect(&run, 6);
    assert!(!run.stderr.contains("not-the-password") && !run.stdout.contains("not-the-password"), "{run}");
    assert!(run.stderr.contains("530") || run.stderr.contains("login"), "{run}");
}

#[test]
fn a_file_check_works_on_an_ftp_side() {
    let f = Ftp::new();
    f.env.put(S, "a", "1");
    let run = f.sync("src", "ftp", &["--check-destination", ".disk=backup"]);
    f.env.expect(&run, 3);
    f.env.put(D, ".disk", "backup\n");
    let done = f.ok("src", "ftp", &["--check-destination", ".disk=backup"]);
    assert_eq!(done["copied"], 1, "{done}");
}

#[test]
fn the_server_is_the_selected_one_with_the_features_assumed() {
    // So that the MFMT and LIST expectations below follow the server, not a guess about it.
    let f = Ftp::new();
    let addr = format!("127.0.0.1:{}", f.server.port).parse().unwrap();
    let mut ftp = suppaftp::FtpStream::connect_timeout(addr, std::time::Duration::from_secs(5)).expect("connect");
    let greeting = ftp.get_welcome_msg().unwrap_or_default().to_ascii_lowercase();
    ftp.login(f.server.user, f.server.password).expect("login");
    let features = ftp.feat().expect("FEAT");
    let has = |name: &str| features.keys().any(|k| k.eq_ignore_ascii_case(name));
    let kind = f.server.kind;
    assert_eq!(kind, ftp_server::ServerKind::selected());
    assert_eq!(has("MFMT"), kind.has_mfmt(), "{kind:?}: {features:?}");
    assert_eq!(has("MLST") || has("MLSD"), kind.has_mlsd(), "{kind:?}: {features:?}");
    match kind {
        ftp_server::ServerKind::Libunftp => assert!(greeting.contains("pairsync test ftp server"), "{greeting}"),
        ftp_server::ServerKind::Pyftpdlib => assert!(greeting.contains("pyftpdlib"), "{greeting}"),
        ftp_server::ServerKind::Vsftpd => assert!(greeting.contains("vsftpd"), "{greeting}"),
    }
    let _ = ftp.quit();
}

#[test]
fn an_upload_keeps_the_source_mtime_where_the_server_has_mfmt() {
    let f = Ftp::new();
    f.env.put_at(S, "old.txt", "from 2020", 1_600_000_000).put_at(S, "sub/deeper.bin", "deeper", 1_500_000_123);
    let first = f.ok("src", "ftp", &["--mode", "clone"]);
    assert_eq!(first["copied"], 2, "{first}");
    f.env.assert_same();
    if f.server.kind.has_mfmt() {
        for path in ["old.txt", "sub/deeper.bin"] {
            assert_eq!(f.env.mtime(D, path), f.env.mtime(S, path), "{path}: the server's mtime is not the source's");
        }
    } else {
        // Without MFMT (libunftp, vsftpd) the file keeps the time of its upload; what the server
        // reports is what is recorded, so a rerun still uploads nothing.
        eprintln!("note: {:?} has no MFMT: server-side mtimes not checked", f.server.kind);
    }
    let again = f.ok("src", "ftp", &["--mode", "clone"]);
    assert_eq!((again["copied"].as_u64(), again["deleted"].as_u64()), (Some(0), Some(0)), "{again}");
}

/// Files replaced in place (their folder is there, so nothing is staged) are recorded from the
/// MFMT reply once MLST has confirmed one, else from MLST: either way a rerun copies nothing,
/// and a server with MFMT keeps the source's mtimes, odd and even seconds alike.
#[test]
fn files_replaced_in_place_are_recorded_so_that_a_rerun_copies_nothing() {
    let f = Ftp::new();
    let names: Vec<String> = (0..12).map(|i| format!("docs/{i}.txt")).collect();
    for (i, name) in (0..).zip(&names) {
        f.env.put_at(S, name, "first", 1_600_000_000 + i);
    }
    let first = f.ok("src", "ftp", &["--mode", "clone"]);
    assert_eq!(first["copied"], 12, "{first}");
    for (i, name) in (0..).zip(&names) {
        f.env.put_at(S, name, &format!("second {i}"), 1_700_000_000 + i);
    }
    let second = f.ok("src", "ftp", &["--mode", "clone"]);
    assert_eq!(second["copied"], 12, "{second}");
    f.env.assert_same();
    if f.server.kind.has_mfmt() {
        for name in &names {
            assert_eq!(f.env.mtime(D, name), f.env.mtime(S, name), "{name}: the server's mtime is not the source's");
        }
    }
    let again = f.ok("src", "ftp", &["--mode", "clone"]);
    assert_eq!((again["copied"].as_u64(), again["deleted"].as_u64()), (Some(0), Some(0)), "{again}");
}

#[test]
fn dot_files_are_synced_both_ways() {
    // Regression: vsftpd's plain LIST hides dot-files, so a .hidden file was uploaded, then
    // "vanished", on every run (and clone never deleted one on the server).
    let f = Ftp::new();
    f.env.put(S, ".hidden", "dot").put(D, ".server-dot", "old");
    let done = f.ok("src", "ftp", &["--mode", "clone", "--force"]);
    assert_eq!(done["copied"], 1, "{done}");
    assert!(!f.env.exists(D, ".server-dot"), "{}", f.env.trees());
    let again = f.ok("src", "ftp", &["--mode", "clone"]);
    assert_eq!(again["copied"], 0, "{again}");
}

/// A new folder of small files is created under a temp name, filled, and renamed into place
/// once: one RNFR per folder instead of one per file. A folder holding a large file (resumed
/// one by one) or a new subfolder is created as usual, and every file is recorded as the
/// server reports it: a rerun copies nothing, on every server.
#[test]
fn a_new_folder_of_small_files_is_filled_under_a_temp_name_and_moved_into_place_once() {
    let f = Ftp::new();
    for name in ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"] {
        f.env.put(S, &format!("fresh/{name}"), name);
    }
    f.env.put(S, "nested/inner/x", "x").put(S, "nested/inner/y", "y");
    f.env.put(S, "mixed/small.txt", "small");
    fs::write(f.env.src.join("mixed/big.bin"), binary().repeat(16)).unwrap();
    let first = f.ok("src", "ftp", &["--mode", "clone"]);
    assert_eq!((first["copied"].as_u64(), first["folders_created"].as_u64()), (Some(9), Some(4)), "{first}");
    f.env.assert_same();
    let temps: Vec<String> = util::tree_of(&f.env.dst).into_keys().filter(|p| p.contains(".pairsync-")).collect();
    assert_eq!(temps, Vec::<String>::new());
    if f.server.kind == ftp_server::ServerKind::Libunftp {
        let commands = f.server.commands();
        let mut renamed: Vec<&str> =
            commands.iter().filter_map(|c| c.strip_prefix("RNTO ")).map(|p| p.trim_start_matches('/')).collect();
        renamed.sort_unstable();
        assert_eq!(renamed, ["fresh", "mixed/big.bin", "mixed/small.txt", "nested/inner"], "{commands:#?}");
        let stored_in_temps = commands.iter().filter(|c| c.starts_with("STOR ") && c.contains("/.pairsync-")).count();
        assert_eq!(stored_in_temps, 9, "every upload goes to a temp name or into a temp folder: {commands:#?}");
    }
    f.server.clear_commands();
    let again = f.ok("src", "ftp", &["--mode", "clone"]);
    assert_eq!((again["copied"].as_u64(), again["deleted"].as_u64()), (Some(0), Some(0)), "{again}");
    if f.server.kind == ftp_server::ServerKind::Libunftp {
        let commands = f.server.commands();
        let per_file = commands.iter().filter(|c| ["STOR", "MLST", "RNFR", "DELE"].iter().any(|v| c.starts_with(v)));
        assert_eq!(per_file.count(), 0, "{commands:#?}");
    }
}

/// In two-way mode a new folder made on the local side is staged the same way, and one made on
/// the server comes down file by file (local writes gain nothing from staging).
#[test]
fn two_way_stages_new_folders_on_the_server_only() {
    let f = Ftp::new();
    f.env.put(S, "up/1", "1").put(S, "up/2", "2").put(D, "down/3", "3").put(D, "down/4", "4");
    let first = f.ok("src", "ftp", &["--mode", "two-way"]);
    assert_eq!(first["copied"], 4, "{first}");
    f.env.assert_same();
    f.env.put(S, "up/5", "5").put(S, "later/6", "6").put(S, "later/7", "7");
    let second = f.ok("src", "ftp", &["--mode", "two-way"]);
    assert_eq!(second["copied"], 3, "{second}");
    f.env.assert_same();
    let third = f.ok("src", "ftp", &["--mode", "two-way"]);
    assert_eq!((third["copied"].as_u64(), third["deleted"].as_u64()), (Some(0), Some(0)), "{third}");
}

/// Names: a folder merely named like a temp (`.pairsync-notes.tmp`) is synced like any other
/// and stays on both sides; a local name no FTP listing can carry (a backslash) is refused on
/// every run, a problem for that path only, and a two-way run never takes its absence on the
/// server for a deletion. The rest of its (staged) folder lands.
#[test]
fn temp_like_names_are_synced_and_names_ftp_cannot_carry_are_refused() {
    let f = Ftp::new();
    f.env.put(S, "keep/.pairsync-notes.tmp/a", "a").put(S, "keep/.pairsync-0123abcd.tmp", "not ours either");
    f.env.put(S, "mixed/ok1", "1").put(S, "mixed/ok2", "2").put(S, "mixed/back\\slash", "b");
    for round in 0..2 {
        let run = f.sync("src", "ftp", &["--mode", "two-way"]);
        f.env.expect(&run, 1);
        assert!(run.stderr.contains("back\\\\slash") && run.stderr.contains("no FTP listing"), "round {round}: {run}");
        assert!(f.env.exists(S, "mixed/back\\slash"), "round {round}: {}", f.env.trees());
        for path in ["keep/.pairsync-notes.tmp/a", "keep/.pairsync-0123abcd.tmp", "mixed/ok1", "mixed/ok2"] {
            assert!(f.env.exists(S, path) && f.env.exists(D, path), "round {round}: {path}\n{}", f.env.trees());
        }
        assert!(!f.env.exists(D, "mixed/back\\slash"), "{}", f.env.trees());
    }
}

/// A check file given by an absolute path on the server, inside the FTP root (even spelled with
/// "//"), marks the drive and is never synced to the other side.
#[test]
fn an_absolute_check_file_inside_the_ftp_root_is_never_synced() {
    let f = Ftp::new();
    f.env.put(S, "a", "1").put(D, ".disk-id", "usb-7");
    let url = f.server.url("");
    let dir = url.splitn(4, '/').nth(3).unwrap_or_default().trim_end_matches('/');
    let spec = if dir.is_empty() { "//.disk-id=usb-7".to_string() } else { format!("/{dir}//.disk-id=usb-7") };
    for _ in 0..2 {
        f.ok("src", "ftp", &["--mode", "two-way", "--check-destination", &spec]);
    }
    assert!(!f.env.exists(S, ".disk-id"), "the marker was synced\n{}", f.env.trees());
    assert_eq!(f.env.read(D, ".disk-id"), "usb-7");
}
