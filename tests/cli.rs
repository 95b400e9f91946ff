//! End-to-end: the real binary on real temp trees.

mod util;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use util::{Side::Destination as D, Side::Source as S, TestEnv};

// ---- modes ----

#[test]
fn two_way_carries_creates_edits_deletes_and_renames_both_ways() {
    let env = TestEnv::new();
    env.put(S, "docs/a.txt", "a1").put(S, "docs/b.txt", "b1").put(D, "notes/n.txt", "n1").put(D, "keep.txt", "k");
    env.sync_ok(&[]);
    env.assert_same();

    env.put_at(S, "docs/a.txt", "a2-edited", 2_000_000_000);
    env.rm(D, "keep.txt");
    env.mv(D, "notes/n.txt", "notes/renamed.txt");
    env.put(D, "new/deep/x.txt", "x");
    env.rm(S, "docs/b.txt");
    let run = env.sync_ok(&["-v"]);
    env.assert_tree(
        S,
        &[
            ("docs", "<dir>"),
            ("docs/a.txt", "a2-edited"),
            ("new", "<dir>"),
            ("new/deep", "<dir>"),
            ("new/deep/x.txt", "x"),
            ("notes", "<dir>"),
            ("notes/renamed.txt", "n1"),
        ],
    );
    env.assert_same();
    assert!(run.stdout.contains("rename source: notes/n.txt -> notes/renamed.txt"), "{run}");
}

#[test]
fn second_run_is_a_no_op() {
    let env = TestEnv::new();
    env.put(S, "a", "1").put(D, "b", "2");
    env.sync_ok(&[]);
    let run = env.sync_ok(&["--json"]);
    let summary: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    for field in ["copied", "deleted", "renamed"] {
        assert_eq!(summary[field], 0, "{field} in {run}");
    }
}

#[test]
fn copies_keep_bytes_mtime_and_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    fs::write(env.src.join("bin.dat"), &bytes).unwrap();
    fs::set_permissions(env.src.join("bin.dat"), fs::Permissions::from_mode(0o751)).unwrap();
    env.set_mtime(S, "bin.dat", 1_500_000_000);
    env.sync_ok(&[]);
    assert_eq!(fs::read(env.dst.join("bin.dat")).unwrap(), bytes);
    assert_eq!(env.mtime(D, "bin.dat"), 1_500_000_000);
    assert_eq!(fs::metadata(env.dst.join("bin.dat")).unwrap().permissions().mode() & 0o7777, 0o751);
}

#[test]
fn conflicting_edits_keep_both_versions_on_both_sides() {
    let env = TestEnv::new();
    env.put(S, "r.txt", "base");
    env.sync_ok(&[]);
    env.put_at(S, "r.txt", "source edit", 1_700_000_000);
    env.put_at(D, "r.txt", "destination edit, newer", 1_700_000_100);
    let run = env.sync_ok(&[]);
    assert!(run.stdout.contains("conflict r.txt: changed on both sides"), "{run}");
    env.assert_same();
    let tree = env.tree(S);
    assert_eq!(tree["r.txt"], "destination edit, newer");
    let copies: Vec<_> = tree.iter().filter(|(p, _)| p.starts_with("r.conflict-") && p.ends_with(".txt")).collect();
    assert_eq!(copies.len(), 1, "{}", env.trees());
    assert_eq!(copies[0].1, "source edit");
}

#[test]
fn clone_mirrors_and_simple_never_deletes() {
    let env = TestEnv::new();
    env.put(S, "a", "1").put(D, "extra", "x");
    env.sync_ok(&["--mode", "simple"]);
    env.assert_tree(D, &[("a", "1"), ("extra", "x")]);
    env.assert_tree(S, &[("a", "1")]);

    let clone = TestEnv::new();
    clone.put(S, "a", "1").put(D, "extra", "x").put(D, "a", "stale");
    clone.sync_ok(&["--mode", "clone", "--force"]);
    clone.assert_tree(D, &[("a", "1")]);
}

#[test]
fn demo_sync_of_testdata() {
    let env = TestEnv::new();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/demo");
    let run = env.run(&["sync", demo.to_str().unwrap(), env.dst.to_str().unwrap(), "--mode", "clone"]);
    env.expect(&run, 0);
    assert_eq!(util::tree_of(&demo), env.tree(D));
}

// ---- output ----

#[test]
fn quiet_prints_nothing_and_plain_runs_print_one_summary_line() {
    let env = TestEnv::new();
    env.put(S, "a", "1");
    let run = env.sync_ok(&["-q"]);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""), "{run}");
    env.put(S, "b", "22");
    let run = env.sync_ok(&[]);
    assert_eq!(run.stdout.lines().count(), 1, "{run}");
    assert!(run.stdout.contains("copied 1 (2 B), deleted 0, renamed 0, 0 conflicts, 0 problems"), "{run}");
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let env = TestEnv::new();
    env.put(S, "a", "1").put(D, "b", "2");
    let run = env.sync_ok(&["--dry-run"]);
    assert!(run.stdout.contains("would copy   source -> destination: a"), "{run}");
    assert!(run.stdout.contains("would copy   destination -> source: b"), "{run}");
    env.assert_tree(S, &[("a", "1")]);
    env.assert_tree(D, &[("b", "2")]);
}

#[test]
fn log_file_gets_timestamped_start_actions_and_end() {
    let env = TestEnv::new();
    env.put(S, "a", "1");
    let log = env.root.join("run.log");
    env.sync_ok(&["--log", log.to_str().unwrap()]);
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains(" start "), "{text}");
    assert!(lines.iter().any(|l| l.contains("copy   source -> destination: a")), "{text}");
    assert!(lines.last().unwrap().contains(" end ") && lines.last().unwrap().contains("(exit 0)"), "{text}");
    // "2026-11-22 04:03:11.123 +00:00 ..."
    assert!(lines[0].as_bytes()[4] == b'-' && lines[0].contains(":"), "{text}");
}

// ---- filters ----

#[test]
fn ignored_paths_are_never_copied_nor_deleted() {
    let env = TestEnv::new();
    env.put(S, "a.db", "s").put(S, "cache/x", "c").put(S, "keep", "k").put(D, "b.db", "d");
    env.sync_ok(&["--ignore", r"\.db$", "--ignore-source", "^cache/"]);
    env.assert_tree(D, &[("b.db", "d"), ("keep", "k")]);
    env.assert_tree(S, &[("a.db", "s"), ("cache", "<dir>"), ("cache/x", "c"), ("keep", "k")]);
}

#[test]
fn a_path_that_becomes_ignored_is_not_treated_as_deleted() {
    let env = TestEnv::new();
    env.put(S, "a.log", "1").put(S, "b", "2");
    env.sync_ok(&[]);
    env.rm(S, "a.log");
    env.sync_ok(&["--ignore", r"\.log$"]);
    assert_eq!(env.read(D, "a.log"), "1");
    // And when the rule is lifted again, the file comes back rather than being deleted.
    env.sync_ok(&[]);
    assert_eq!(env.read(S, "a.log"), "1");
}

#[test]
fn no_recursive_syncs_only_top_level_files() {
    let env = TestEnv::new();
    env.put(S, "top", "t").put(S, "sub/deep", "d");
    env.sync_ok(&["--no-recursive"]);
    env.assert_tree(D, &[("top", "t")]);
}

// ---- file checks ----

#[test]
fn file_check_gates_the_run() {
    let env = TestEnv::new();
    env.put(S, "a", "1");
    let run = env.sync(&["--check-destination", ".backup-disk=^disk-7$"]);
    env.expect(&run, 3);
    assert!(run.stderr.contains(".backup-disk does not exist"), "{run}");
    env.put(D, ".backup-disk", "disk-8\n");
    let run = env.sync(&["--check-destination", ".backup-disk=^disk-7$"]);
    env.expect(&run, 3);
    assert!(run.stderr.contains("does not match"), "{run}");
    assert!(!env.exists(D, "a"), "nothing may be written when the check fails");
    env.put(D, ".backup-disk", "disk-7\n");
    env.sync_ok(&["--check-destination", ".backup-disk=^disk-7$", "--mode", "simple"]);
    assert_eq!(env.read(D, "a"), "1");

    let marker = env.root.join("source-marker");
    let spec = format!("{}=", marker.display());
    env.expect(&env.sync(&["--check-source", &spec]), 3);
    fs::write(&marker, "").unwrap();
    env.sync_ok(&["--check-source", &spec]);
}

// ---- safety ----

#[test]
fn missing_root_is_a_safety_stop_even_with_force() {
    // Once the pair has state, a missing root is an unmounted drive: never created, never
    // filled, whatever --force says.
    let env = TestEnv::new();
    env.put(S, "a", "1");
    env.sync_ok(&[]);
    fs::remove_dir_all(&env.dst).unwrap();
    let run = env.sync(&["--force"]);
    env.expect(&run, 4);
    assert!(run.stderr.contains("missing"), "{run}");
    assert!(!env.dst.exists());
    // A missing source is one on a first run too.
    let missing = env.root.join("not-mounted");
    let run = env.run(&["sync", missing.to_str().unwrap(), env.root.join("fresh").to_str().unwrap(), "--force"]);
    env.expect(&run, 4);
    assert!(run.stderr.contains("not-mounted") && run.stderr.contains("missing"), "{run}");
}

#[test]
fn a_first_run_creates_its_destination_like_rsync() {
    // Regression (issue 11): `pairsync sync src /backup/new` was a safety stop, where rsync
    // creates the folder. Its parent must exist, and a dry run creates nothing.
    let env = TestEnv::new();
    env.put(S, "a", "1");
    let new = env.root.join("new");
    let run = env.run(&["sync", env.src.to_str().unwrap(), new.to_str().unwrap(), "--dry-run"]);
    env.expect(&run, 0);
    assert!(run.stdout.contains("would copy") && run.stdout.contains(": a ("), "{run}");
    assert!(!new.exists(), "a dry run created the destination\n{run}");
    let run = env.run(&["sync", env.src.to_str().unwrap(), new.to_str().unwrap()]);
    env.expect(&run, 0);
    assert_eq!(fs::read_to_string(new.join("a")).unwrap(), "1", "{run}");
    let deep = env.root.join("no/such/parent");
    let run = env.run(&["sync", env.src.to_str().unwrap(), deep.to_str().unwrap()]);
    env.expect(&run, 4);
    assert!(!env.root.join("no").exists(), "{run}");
}

#[test]
fn emptied_side_is_a_safety_stop_unless_forced() {
    let env = TestEnv::new();
    env.put(S, "a", "1").put(S, "b", "2");
    env.sync_ok(&[]);
    env.rm(D, "a").rm(D, "b");
    let run = env.sync(&[]);
    env.expect(&run, 4);
    assert!(run.stderr.contains("the destination holds no files"), "{run}");
    env.assert_tree(S, &[("a", "1"), ("b", "2")]);
    env.sync_ok(&["--force"]);
    env.assert_tree(S, &[]);
}

#[test]
fn mass_deletion_above_max_delete_is_a_safety_stop() {
    let env = TestEnv::new();
    for i in 0..10 {
        env.put(S, &format!("f{i}"), "x");
    }
    env.sync_ok(&[]);
    for i in 0..6 {
        env.rm(S, &format!("f{i}"));
    }
    let run = env.sync(&[]);
    env.expect(&run, 4);
    assert!(
        run.stderr.contains("would delete 6 of 10 files on the destination (60%), above --max-delete 50%"),
        "{run}"
    );
    assert_eq!(env.tree(D).len(), 10);
    env.sync_ok(&["--max-delete", "60"]);
    assert_eq!(env.tree(D).len(), 4);
}

#[test]
fn second_concurrent_run_of_a_pair_exits_5_at_once() {
    let env = TestEnv::new();
    env.put(S, "a", "1");
    let id = pairsync::state::pair_id(env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    let held = pairsync::state::PairLock::acquire(&env.state, &id).unwrap();
    let run = env.sync(&[]);
    env.expect(&run, 5);
    assert!(run.stderr.contains("another run of this pair is in progress"), "{run}");
    assert!(!env.exists(D, "a"));
    drop(held);
    env.sync_ok(&[]);
}

#[test]
fn corrupt_state_behaves_like_a_first_run() {
    // Regression guard for the contract "a lost or corrupt database merges and deletes nothing".
    let env = TestEnv::new();
    env.put(S, "a", "1").put(S, "b", "2");
    env.sync_ok(&[]);
    env.rm(S, "a");
    let pairs = env.state.join("pairs");
    for entry in fs::read_dir(&pairs).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for file in fs::read_dir(&path).unwrap() {
                let file = file.unwrap().path();
                if file.is_file() {
                    fs::write(&file, vec![0x5a; 8192]).unwrap();
                }
            }
        }
    }
    let run = env.sync_ok(&[]);
    assert!(run.stderr.contains("state database could not be read"), "{run}");
    env.assert_tree(S, &[("a", "1"), ("b", "2")]);
    env.assert_same();
}

#[test]
fn deleted_state_behaves_like_a_first_run() {
    let env = TestEnv::new();
    env.put(S, "a", "1").put(S, "b", "2");
    env.sync_ok(&[]);
    env.rm(S, "a");
    fs::remove_dir_all(&env.state).unwrap();
    env.sync_ok(&[]);
    env.assert_tree(S, &[("a", "1"), ("b", "2")]);
}

// ---- symlinks and temp files ----

#[test]
fn a_symlink_in_the_destination_never_receives_a_byte() {
    let env = TestEnv::new();
    let outside = env.root.join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, env.dst.join("link")).unwrap();
    env.put(S, "link/secret.txt", "must not escape").put(S, "ok.txt", "fine");
    for mode in ["clone", "two-way", "simple"] {
        let run = env.sync(&["--mode", mode, "--force"]);
        assert!(fs::read_dir(&outside).unwrap().next().is_none(), "wrote outside the root in {mode}\n{run}");
        assert_eq!(env.read(D, "ok.txt"), "fine");
    }
}

#[test]
fn a_symlink_in_the_source_is_not_followed() {
    let env = TestEnv::new();
    let outside = env.root.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("private"), "p").unwrap();
    std::os::unix::fs::symlink(&outside, env.src.join("link")).unwrap();
    env.put(S, "a", "1");
    let run = env.sync_ok(&[]);
    assert!(run.stderr.contains("link: symbolic link, not followed"), "{run}");
    env.assert_tree(D, &[("a", "1")]);
}

#[test]
fn no_temp_file_remains_and_leftovers_of_a_killed_run_are_removed() {
    let env = TestEnv::new();
    env.put(S, "a", "1");
    let id = pairsync::state::pair_id(env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    let leftover = format!(".pairsync-{}-99999-0.tmp", &id[..8]);
    let foreign = ".pairsync-0000aaaa-1-0.tmp";
    env.put(D, &leftover, "half a file").put(D, foreign, "another pair's");
    env.sync_ok(&[]);
    env.assert_tree(S, &[("a", "1")]);
    env.assert_tree(D, &[(foreign, "another pair's"), ("a", "1")]);
}

// ---- bad input ----

#[test]
fn bad_flags_and_values_exit_2_with_a_line_naming_the_culprit() {
    let env = TestEnv::new();
    let (src, dst) = (env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    let inner = format!("{src}/inner");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["sync", src, dst, "--mode", "mirror"], "mirror"),
        (vec!["sync", src, dst, "--frobnicate"], "--frobnicate"),
        (vec!["sync", src, dst, "--ignore", "a(b"], "--ignore \"a(b\": invalid regex"),
        (vec!["sync", src, dst, "--check-source", "=x"], "--check-source \"=x\""),
        (vec!["sync", src, dst, "--check-destination", "m=[z"], "invalid content regex"),
        (vec!["sync", src, dst, "--max-delete", "150%"], "150%"),
        (vec!["sync", src, src], "the same folder"),
        (vec!["sync", src, &inner], "is inside"),
        (vec!["sync", src, "ftp://:21/dir"], "no server in the URL"),
        (vec!["sync", src, "ftp://host:notaport/dir"], "bad port"),
        (vec!["sync", src, "ftp://host/a/../b"], "not allowed"),
        (vec!["sync", src], "DESTINATION"),
        (vec!["sync", src, "sftp://host/dir"], "unsupported: sftp://host/dir"),
        (vec!["sync", src, "backup@host:/dir"], "unsupported"),
        (vec!["sync", src, "ftp://bob:s3cret@host:99999/dir"], "DESTINATION"),
    ];
    for (args, culprit) in cases {
        let run = env.run(&args);
        assert_eq!(run.code, 2, "{run}");
        assert!(run.stderr.contains(culprit), "stderr must name {culprit:?}\n{run}");
        assert!(!run.stderr.contains("panicked"), "{run}");
        assert!(!run.stderr.contains("s3cret"), "a password was echoed\n{run}");
    }
}

#[test]
fn an_ipv6_ftp_server_is_a_server_not_a_bad_port() {
    // Regression: `ftp://[::1]/x` was parsed as the host "[" with the port ":1]".
    let env = TestEnv::new();
    let src = env.src.to_str().unwrap();
    // Port 9 (discard) on loopback: nothing listens, so the run ends "unreachable" (exit 6)
    // after the URL was understood, instead of exit 2 for a bad URL.
    let run = env.run(&["sync", src, "ftp://[::1]:9/x"]);
    assert_eq!(run.code, 6, "{run}");
    assert!(run.stderr.contains("ftp://anonymous@[::1]:9/x/"), "{run}");
}

#[test]
fn a_non_utf8_name_is_a_problem_naming_it() {
    // Regression (issue 11): it was a warning with exit 0, so cron never learned that a file
    // was not backed up. It is a per-path problem now (exit 1), shown even with -q.
    let env = TestEnv::new();
    let bad = std::ffi::OsStr::from_bytes(b"bad\xffname.txt");
    fs::write(env.src.join(bad), "x").unwrap();
    env.put(S, "good.txt", "g");
    let run = env.sync(&["-q"]);
    env.expect(&run, 1);
    assert!(run.stderr.contains("bad\u{fffd}name.txt: source: name is not valid UTF-8; skipped"), "{run}");
    env.assert_tree(D, &[("good.txt", "g")]);
}

#[test]
fn quiet_runs_still_show_conflicts_and_skipped_entries() {
    // Regression (issue 11): -q hid conflicts and left-out symlinks, which cron must see.
    let env = TestEnv::new();
    env.put(S, "f", "base");
    env.sync_ok(&[]);
    env.put_at(S, "f", "source edit", 2_000_000_000);
    env.put_at(D, "f", "destination edit!", 2_000_000_100);
    std::os::unix::fs::symlink("f", env.src.join("link")).unwrap();
    let run = env.sync(&["-q"]);
    env.expect(&run, 0);
    assert!(run.stdout.is_empty(), "{run}");
    assert!(run.stderr.contains("conflict f:"), "{run}");
    assert!(run.stderr.contains("link: symbolic link"), "{run}");
}

/// Runs the binary without the capabilities that let root read anything, so that a file
/// with mode 000 is really unreadable even when the tests run as root (as CI does).
fn without_read_override() -> Command {
    let me = tempfile::tempfile().unwrap().metadata().unwrap();
    if std::os::unix::fs::MetadataExt::uid(&me) != 0 {
        return Command::new(env!("CARGO_BIN_EXE_pairsync"));
    }
    let mut command = Command::new("setpriv");
    command.args([
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search",
        env!("CARGO_BIN_EXE_pairsync"),
    ]);
    command
}

#[test]
fn an_unreadable_file_is_a_problem_for_that_path_only() {
    let env = TestEnv::new();
    env.put(S, "secret", "s").put(S, "a", "1").put(S, "sub/b", "2");
    fs::set_permissions(env.src.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let (src, dst) = (env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    let run = env.run_with(without_read_override(), &["sync", src, dst]);
    assert_eq!(run.code, 1, "{run}\n{}", env.trees());
    assert!(run.stderr.contains("problem: secret: copy source -> destination"), "{run}");
    assert!(run.stdout.contains("1 problems"), "{run}");
    env.assert_tree(D, &[("a", "1"), ("sub", "<dir>"), ("sub/b", "2")]);
}

#[test]
fn an_unreadable_folder_is_left_out_not_taken_for_deleted() {
    let env = TestEnv::new();
    env.put(S, "locked/x", "x").put(S, "a", "1");
    env.sync_ok(&[]);
    fs::set_permissions(env.src.join("locked"), std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let (src, dst) = (env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    let run = env.run_with(without_read_override(), &["sync", src, dst]);
    fs::set_permissions(env.src.join("locked"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("locked"), "{run}");
    assert_eq!(env.read(D, "locked/x"), "x", "the destination copy must survive");
}

#[test]
fn clone_never_deletes_nor_copies_the_check_file() {
    // Regression: a relative --check-destination marker was an "extra" that clone deleted,
    // so the next run found no marker and refused the drive.
    let env = TestEnv::new();
    env.put(S, "a", "1").put(D, ".disk-id", "usb-7");
    for _ in 0..2 {
        env.sync_ok(&["--mode", "clone", "--check-destination", ".disk-id=usb-7", "--force"]);
    }
    env.assert_tree(D, &[(".disk-id", "usb-7"), ("a", "1")]);
    env.assert_tree(S, &[("a", "1")]);
}

/// The same for a check file given by its absolute path: it lies inside the destination's root,
/// so a two-way run must neither copy it to the source nor count it as the destination's.
#[test]
fn an_absolute_check_file_inside_its_root_is_never_synced() {
    let env = TestEnv::new();
    env.put(S, "a", "1").put(D, ".disk-id", "usb-7");
    let spec = format!("{}=usb-7", env.dst.join(".disk-id").display());
    for _ in 0..2 {
        env.sync_ok(&["--mode", "two-way", "--check-destination", &spec]);
    }
    env.assert_tree(D, &[(".disk-id", "usb-7"), ("a", "1")]);
    env.assert_tree(S, &[("a", "1")]);
}

#[test]
fn json_output_is_only_json_even_when_verbose() {
    let env = TestEnv::new();
    env.put(S, "a", "1");
    let run = env.sync_ok(&["--json", "-v"]);
    let summary: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}\n{run}"));
    assert_eq!(summary["copied"], 1, "{run}");
    assert_eq!(summary["exit_code"], 0, "{run}");
}

#[test]
fn a_dry_run_never_moves_creates_or_writes_state() {
    // Regression: a dry run moved an unreadable state database aside (and created state for a
    // new pair), so a later real run merged and brought deleted files back.
    let env = TestEnv::new();
    env.put(S, "a", "1");
    env.sync_ok(&["--dry-run"]);
    let pairs = env.state.join("pairs");
    let databases =
        || fs::read_dir(&pairs).map(|d| d.filter(|e| e.as_ref().unwrap().path().is_dir()).count()).unwrap_or(0);
    assert_eq!(databases(), 0, "a dry run created a state database");
    env.sync_ok(&[]);
    for entry in fs::read_dir(&pairs).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for file in fs::read_dir(&path).unwrap() {
                let file = file.unwrap().path();
                if file.is_file() {
                    fs::write(&file, vec![0x5a; 4096]).unwrap();
                }
            }
        }
    }
    let run = env.sync_ok(&["--dry-run"]);
    assert!(run.stderr.contains("this dry run plans as a first run"), "{run}");
    let names: Vec<String> =
        fs::read_dir(&pairs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
}

#[test]
fn no_recursive_runs_keep_the_deeper_state() {
    // Regression: a --no-recursive run dropped the records below the top folder, so a deletion
    // made there meanwhile was undone by the next full run.
    let env = TestEnv::new();
    env.put(S, "top", "t").put(S, "sub/a", "a").put(S, "sub/b", "b");
    env.sync_ok(&[]);
    env.rm(D, "sub/a");
    env.sync_ok(&["--no-recursive"]);
    env.sync_ok(&[]);
    assert!(!env.exists(S, "sub/a"), "the deletion on the destination must be carried\n{}", env.trees());
    env.assert_same();
}

#[test]
fn a_state_folder_inside_a_root_is_never_synced() {
    // Regression: `sync ~ /backup` with the default ~/.local/state copied the live databases.
    let env = TestEnv::new();
    env.put(S, "a", "1");
    let state = env.src.join(".local/state/pairsync");
    let (src, dst) = (env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    for _ in 0..2 {
        let run = env.run(&["--state-dir", state.to_str().unwrap(), "sync", src, dst]);
        env.expect(&run, 0);
    }
    let copied: Vec<String> = env.tree(D).into_keys().filter(|p| p.starts_with(".local/state/pairsync")).collect();
    assert!(copied.is_empty(), "the state folder was synced: {copied:?}");
    assert_eq!(env.read(D, "a"), "1");
}

#[test]
fn a_folder_holding_ignored_files_is_kept_and_the_pair_converges() {
    // Regression: the folder could never be deleted (it holds an ignored file), so every run
    // ended with "Directory not empty" and exit 1.
    let env = TestEnv::new();
    env.put(S, "d/x", "x").put(S, "keep", "k");
    env.sync_ok(&["--ignore", r"\.db$"]);
    env.put(S, "d/local.db", "private");
    env.rm(D, "d");
    for _ in 0..2 {
        env.sync_ok(&["--ignore", r"\.db$"]);
    }
    assert_eq!(env.read(S, "d/local.db"), "private");
    assert!(!env.exists(S, "d/x"), "the delete of d/x is carried\n{}", env.trees());
}

#[test]
fn checksum_sees_an_edit_that_kept_size_and_mtime() {
    let env = TestEnv::new();
    env.put_at(S, "data.bin", "original", 1_600_000_000);
    env.sync_ok(&[]);
    // Same size, same mtime, other bytes (a tool that restores mtimes, or bit rot).
    env.put_at(D, "data.bin", "ORIGINAL", 1_600_000_000);
    let plain = env.sync_ok(&["--json"]);
    assert!(plain.stdout.contains("\"copied\":0"), "without --checksum it cannot be seen: {plain}");
    let run = env.sync_ok(&["--checksum", "--json"]);
    assert!(run.stdout.contains("\"copied\":1"), "{run}");
    assert_eq!(fs::read_to_string(env.src.join("data.bin")).unwrap(), "ORIGINAL", "{run}");
}
