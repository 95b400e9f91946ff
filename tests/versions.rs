//! End-to-end: versions kept (`--backup-dir`, an item's `backup_dir`; issue 11 item 6). Every
//! file a run overwrites or deletes on a side is first moved, by a rename on that side, to
//! `DIR/<YYYY-MM-DD_HHMMSS>/<path>`; `--backup-keep N` leaves the newest N run folders; DIR is
//! never synced.

mod ftp_server;
mod util;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;

use ftp_server::{FtpServer, ServerKind};
use util::{Side, Side::Destination as D, Side::Source as S, TestEnv};

const DIR: &str = ".versions";

fn json(env: &TestEnv, run: &util::Run) -> serde_json::Value {
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{run}\n{}", env.trees()))
}

/// `sync --json EXTRA...`, which must exit 0; its summary.
#[track_caller]
fn synced(env: &TestEnv, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    json(env, &env.sync_ok(&args))
}

/// The run folders in the versions folder `dir` of a side, oldest first.
fn runs_in(env: &TestEnv, side: Side, dir: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(env.side(side).join(dir)) else { return Vec::new() };
    let stamp = regex::Regex::new(r"^(\d{4}-\d\d-\d\d_\d{6})(?:-(\d+))?$").unwrap();
    let mut runs: Vec<((String, u32), String)> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| {
            let found = stamp.captures(&name)?;
            let n = found.get(2).map_or(1, |n| n.as_str().parse().unwrap());
            Some(((found[1].to_string(), n), name))
        })
        .collect();
    runs.sort();
    runs.into_iter().map(|(_, name)| name).collect()
}

fn runs(env: &TestEnv, side: Side) -> Vec<String> {
    runs_in(env, side, DIR)
}

/// What the only run folder in `dir` of a side holds: relative path -> content.
#[track_caller]
fn kept_in(env: &TestEnv, side: Side, dir: &str) -> BTreeMap<String, String> {
    let runs = runs_in(env, side, dir);
    assert_eq!(runs.len(), 1, "one run folder on the {side}: {runs:?}\n{}", env.trees());
    util::tree_of(&env.side(side).join(dir).join(&runs[0]))
}

#[track_caller]
fn kept(env: &TestEnv, side: Side) -> BTreeMap<String, String> {
    kept_in(env, side, DIR)
}

/// A side's tree without the versions folder `dir` (a top-level one).
fn synced_tree(env: &TestEnv, side: Side, dir: &str) -> BTreeMap<String, String> {
    env.tree(side).into_iter().filter(|(path, _)| path != dir && !path.starts_with(&format!("{dir}/"))).collect()
}

fn tree(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect()
}

#[test]
fn a_clone_overwrite_moves_the_old_file_into_the_run_folder_without_copying_it() {
    let env = TestEnv::new();
    env.put_at(S, "a.txt", "a1", 1_700_000_000).put_at(S, "docs/b.txt", "b1", 1_700_000_000);
    env.put_at(S, "same.txt", "same", 1_700_000_000);
    synced(&env, &["--mode", "clone"]);
    let inode = |path: &str| fs::metadata(env.dst.join(path)).unwrap().ino();
    let (a, b) = (inode("a.txt"), inode("docs/b.txt"));
    env.put_at(S, "a.txt", "a2, longer", 1_700_000_100).put_at(S, "docs/b.txt", "b2", 1_700_000_100);
    let done = synced(&env, &["--mode", "clone", "--backup-dir", DIR]);
    assert_eq!((done["copied"].as_u64(), done["versioned"].as_u64()), (Some(2), Some(2)), "{done}");
    assert_eq!(synced_tree(&env, D, DIR), env.tree(S), "{}", env.trees());
    assert_eq!(kept(&env, D), tree(&[("a.txt", "a1"), ("docs", "<dir>"), ("docs/b.txt", "b1")]));
    // The very files that were there, moved by a rename: no byte was copied.
    let run = &runs(&env, D)[0];
    assert_eq!(inode(&format!("{DIR}/{run}/a.txt")), a);
    assert_eq!(inode(&format!("{DIR}/{run}/docs/b.txt")), b);
    // Clone never writes to the source: it keeps no versions there.
    assert!(!env.exists(S, DIR), "{}", env.trees());
    // A run that overwrites nothing makes no run folder.
    let again = synced(&env, &["--mode", "clone", "--backup-dir", DIR]);
    assert_eq!(again["versioned"], 0, "{again}");
    assert_eq!(runs(&env, D).len(), 1, "{}", env.trees());
}

#[test]
fn a_clone_deletion_keeps_the_deleted_files_with_their_paths() {
    let env = TestEnv::new();
    env.put(S, "keep.txt", "k").put(S, "gone.txt", "g").put(S, "old/deep/x.txt", "x").put(S, "old/y.txt", "y");
    synced(&env, &["--mode", "clone"]);
    env.rm(S, "gone.txt").rm(S, "old");
    env.put(D, "extra.txt", "only on the destination");
    // A nested folder, written loosely: its folders are made as needed.
    let done = synced(&env, &["--mode", "clone", "--backup-dir", "./backups//pairsync/", "--force"]);
    // Four files moved aside; the two emptied folders removed.
    assert_eq!((done["deleted"].as_u64(), done["versioned"].as_u64()), (Some(6), Some(4)), "{done}");
    assert_eq!(synced_tree(&env, D, "backups"), tree(&[("keep.txt", "k")]), "{}", env.trees());
    assert_eq!(
        kept_in(&env, D, "backups/pairsync"),
        tree(&[
            ("extra.txt", "only on the destination"),
            ("gone.txt", "g"),
            ("old", "<dir>"),
            ("old/deep", "<dir>"),
            ("old/deep/x.txt", "x"),
            ("old/y.txt", "y"),
        ])
    );
}

#[test]
fn two_way_deletes_are_kept_on_the_side_that_loses_the_file() {
    let env = TestEnv::new();
    env.put(S, "from-src.txt", "1").put(S, "from-dst.txt", "2").put(S, "stays.txt", "3").put(S, "dir/in.txt", "4");
    synced(&env, &[]);
    env.rm(S, "from-src.txt").rm(D, "from-dst.txt").rm(S, "dir");
    let done = synced(&env, &["--backup-dir", DIR, "--force"]);
    assert_eq!(done["versioned"], 3, "{done}");
    assert_eq!(synced_tree(&env, S, DIR), tree(&[("stays.txt", "3")]), "{}", env.trees());
    assert_eq!(synced_tree(&env, D, DIR), tree(&[("stays.txt", "3")]), "{}", env.trees());
    // Deleted on the source: carried over by moving the destination's copy aside, and the
    // other way round.
    assert_eq!(kept(&env, D), tree(&[("dir", "<dir>"), ("dir/in.txt", "4"), ("from-src.txt", "1")]));
    assert_eq!(kept(&env, S), tree(&[("from-dst.txt", "2")]));
    // The versions folders are the pair's own business: the next run has nothing to do.
    let again = synced(&env, &["--backup-dir", DIR]);
    assert_eq!((again["copied"].as_u64(), again["deleted"].as_u64()), (Some(0), Some(0)), "{again}");
}

#[test]
fn a_conflict_kept_both_needs_no_version_and_an_overwriting_policy_keeps_the_loser() {
    let env = TestEnv::new();
    env.put_at(S, "both.txt", "base", 1_700_000_000).put_at(S, "policy.txt", "base", 1_700_000_000);
    synced(&env, &[]);
    env.put_at(S, "both.txt", "source edit", 1_700_000_100).put_at(D, "both.txt", "destination edit", 1_700_000_200);
    // keep-both: the loser is renamed aside (a conflict copy on both sides), nothing is lost
    // and nothing needs keeping.
    let done = synced(&env, &["--backup-dir", DIR]);
    assert_eq!((done["conflicts"].as_array().unwrap().len(), done["versioned"].as_u64()), (1, Some(0)), "{done}");
    assert_eq!(env.read(S, "both.txt"), "destination edit");
    assert!(!env.exists(S, DIR) && !env.exists(D, DIR), "{}", env.trees());
    // --conflict source overwrites the destination's edit: that edit is kept as a version.
    env.put_at(S, "policy.txt", "source edit", 1_700_000_100);
    env.put_at(D, "policy.txt", "destination edit", 1_700_000_200);
    let done = synced(&env, &["--backup-dir", DIR, "--conflict", "source"]);
    assert_eq!((done["conflicts"].as_array().unwrap().len(), done["versioned"].as_u64()), (1, Some(1)), "{done}");
    assert_eq!(env.read(D, "policy.txt"), "source edit");
    assert_eq!(kept(&env, D), tree(&[("policy.txt", "destination edit")]));
    assert!(!env.exists(S, DIR), "{}", env.trees());
}

#[test]
fn backup_keep_2_after_3_runs_leaves_the_newest_2_and_nothing_else_is_touched() {
    let env = TestEnv::new();
    env.put_at(S, "a.txt", "v0", 1_700_000_000);
    synced(&env, &["--mode", "clone"]);
    env.put(D, &format!("{DIR}/notes/README"), "mine");
    for n in 1..=3 {
        env.put_at(S, "a.txt", &format!("v{n}"), 1_700_000_000 + n);
        let done = synced(&env, &["--mode", "clone", "--backup-dir", DIR, "--backup-keep", "2"]);
        assert_eq!(done["versioned"], 1, "{done}");
    }
    // Three runs within a few seconds: each has its own folder (numbered within a second).
    let runs = runs(&env, D);
    assert_eq!(runs.len(), 2, "{runs:?}\n{}", env.trees());
    let old: Vec<String> = runs.iter().map(|run| env.read(D, &format!("{DIR}/{run}/a.txt"))).collect();
    assert_eq!(old, ["v1", "v2"], "the newest two runs' versions");
    assert_eq!(env.read(D, &format!("{DIR}/notes/README")), "mine", "not a run folder: never pruned");
}

#[test]
fn the_versions_folder_is_never_synced_nor_deleted() {
    let env = TestEnv::new();
    env.put(S, "a.txt", "a").put(S, &format!("{DIR}/2020-01-01_000000/old.txt"), "a source-side version");
    env.put(D, &format!("{DIR}/mine.txt"), "a destination-side version");
    // Clone deletes every destination extra, but not what the versions folder holds.
    let done = synced(&env, &["--mode", "clone", "--backup-dir", DIR]);
    assert_eq!((done["copied"].as_u64(), done["deleted"].as_u64()), (Some(1), Some(0)), "{done}");
    assert_eq!(
        env.tree(D),
        tree(&[("a.txt", "a"), (DIR, "<dir>"), (format!("{DIR}/mine.txt").as_str(), "a destination-side version")])
    );
    // Two-way neither.
    let done = synced(&env, &["--backup-dir", DIR]);
    assert_eq!((done["copied"].as_u64(), done["deleted"].as_u64()), (Some(0), Some(0)), "{done}");
    assert!(!env.exists(S, &format!("{DIR}/mine.txt")) && !env.exists(D, &format!("{DIR}/2020-01-01_000000")));
}

#[test]
fn a_dry_run_keeps_no_versions() {
    let env = TestEnv::new();
    env.put_at(S, "a.txt", "a1", 1_700_000_000).put(S, "b.txt", "b");
    synced(&env, &["--mode", "clone"]);
    env.put_at(S, "a.txt", "a2", 1_700_000_100).rm(S, "b.txt");
    let before = env.tree(D);
    let done = synced(&env, &["--mode", "clone", "--backup-dir", DIR, "--backup-keep", "1", "--dry-run", "--force"]);
    assert_eq!((done["copied"].as_u64(), done["versioned"].as_u64()), (Some(1), Some(0)), "{done}");
    assert_eq!(env.tree(D), before, "a dry run changes nothing");
}

/// A version that cannot be kept (a file stands where the versions folder goes) stops the
/// overwrite and the delete: nothing is lost without its version.
#[test]
fn a_version_that_cannot_be_kept_stops_its_overwrite_or_delete() {
    let env = TestEnv::new();
    env.put_at(S, "a.txt", "a1", 1_700_000_000).put(S, "b.txt", "b").put(S, "c.txt", "c");
    synced(&env, &["--mode", "clone"]);
    env.put(D, DIR, "a file in the way");
    env.put_at(S, "a.txt", "a2", 1_700_000_100).rm(S, "b.txt").put(S, "new.txt", "n");
    let run = env.sync(&["--mode", "clone", "--backup-dir", DIR, "--force"]);
    env.expect(&run, 1);
    assert!(run.stderr.contains("a.txt") && run.stderr.contains("b.txt"), "{run}");
    assert_eq!((env.read(D, "a.txt"), env.read(D, "b.txt")), ("a1".into(), "b".into()));
    assert_eq!(env.read(D, "new.txt"), "n", "what needs no version is done");
}

#[test]
fn a_backup_dir_that_is_not_inside_each_root_is_refused_with_exit_2() {
    let env = TestEnv::new();
    env.put(S, "a.txt", "a");
    for (args, want) in [
        (vec!["--backup-dir", "/var/backups/pairsync"], "--backup-dir \"/var/backups/pairsync\" is absolute"),
        (vec!["--backup-dir", "../versions"], "--backup-dir \"../versions\" leaves the side's root"),
        (vec!["--backup-dir", "."], "--backup-dir \".\" is the root itself"),
        (vec!["--backup-dir", DIR, "--backup-keep", "0"], "0 would keep no run's versions"),
        (vec!["--backup-keep", "2"], "--backup-dir"),
    ] {
        let run = env.sync(&args);
        env.expect(&run, 2);
        assert!(run.stderr.contains(want), "want {want:?}\n{run}");
    }
    assert!(!env.exists(D, "a.txt"), "nothing was synced");
}

#[test]
fn items_keep_backup_dir_and_backup_keep() {
    let env = TestEnv::new();
    let config = env.root.join("pairsync.toml");
    let cmd = |args: &[&str]| {
        let mut all = vec!["-C", config.to_str().unwrap()];
        all.extend_from_slice(args);
        env.run(&all)
    };
    let ok = |args: &[&str]| {
        let run = cmd(args);
        env.expect(&run, 0);
        run
    };
    let (src, dst) = (env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    let add = ["add", "docs", "--source", src, "--destination", dst, "--mode", "clone"];
    let refused = cmd(&[&add[..], &["--backup-dir", "/tmp/v"]].concat());
    env.expect(&refused, 2);
    assert!(refused.stderr.contains("backup_dir \"/tmp/v\" is absolute"), "{refused}");
    ok(&[&add[..], &["--backup-dir", DIR, "--backup-keep", "3"]].concat());
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains("backup_dir = \".versions\"") && text.contains("backup_keep = 3"), "{text}");
    let show = ok(&["show", "docs"]);
    assert!(show.stdout.contains("backup_dir:   .versions (in each side's root; keeps the newest 3 runs)"), "{show}");

    env.put_at(S, "a.txt", "a1", 1_700_000_000);
    ok(&["run", "docs"]);
    env.put_at(S, "a.txt", "a2", 1_700_000_100);
    let run = ok(&["run", "docs"]);
    assert!(run.stdout.contains("kept 1 old version,"), "{run}");
    assert_eq!(kept(&env, D), tree(&[("a.txt", "a1")]));

    // "" stops keeping versions, and forgets how many to keep.
    ok(&["edit", "docs", "--backup-dir", ""]);
    let text = fs::read_to_string(&config).unwrap();
    assert!(!text.contains("backup_dir") && !text.contains("backup_keep"), "{text}");
    let run = cmd(&["edit", "docs", "--backup-keep", "2"]);
    env.expect(&run, 2);
    assert!(run.stderr.contains("backup_keep applies only with backup_dir"), "{run}");
}

/// On FTP the old file is renamed on the server (RNFR/RNTO): never downloaded, never uploaded.
#[test]
fn on_ftp_the_old_file_is_renamed_on_the_server() {
    let env = TestEnv::new();
    let server = FtpServer::start(&env.dst);
    server.write_netrc(&env.home);
    let sync = |extra: &[&str]| {
        let url = server.url("");
        let mut args = vec!["--json", "sync", env.src.to_str().unwrap(), url.as_str(), "--mode", "clone"];
        args.extend_from_slice(extra);
        let run = env.run(&args);
        env.expect(&run, 0);
        json(&env, &run)
    };
    env.put_at(S, "a.txt", "a1", 1_700_000_000).put(S, "dir/b.txt", "b").put(S, "c.txt", "c");
    sync(&[]);
    env.put_at(S, "a.txt", "a2", 1_700_000_100).rm(S, "dir");
    server.clear_commands();
    let done = sync(&["--backup-dir", DIR, "--backup-keep", "1", "--force"]);
    assert_eq!((done["copied"].as_u64(), done["versioned"].as_u64()), (Some(1), Some(2)), "{done}");
    assert_eq!(synced_tree(&env, D, DIR), env.tree(S), "{}", env.trees());
    assert_eq!(kept(&env, D), tree(&[("a.txt", "a1"), ("dir", "<dir>"), ("dir/b.txt", "b")]));
    if server.kind == ServerKind::Libunftp {
        let commands = server.commands();
        let run = &runs(&env, D)[0];
        let renamed: Vec<&str> =
            commands.iter().filter_map(|c| c.strip_prefix("RNTO ")).map(|p| p.trim_start_matches('/')).collect();
        for want in [format!("{DIR}/{run}/a.txt"), format!("{DIR}/{run}/dir/b.txt")] {
            assert!(renamed.contains(&want.as_str()), "no RNTO {want}: {commands:#?}");
        }
        let read_or_deleted = commands.iter().filter(|c| c.starts_with("RETR ") || c.starts_with("DELE "));
        assert_eq!(read_or_deleted.count(), 0, "{commands:#?}");
        let uploads: Vec<&String> =
            commands.iter().filter(|c| c.starts_with("STOR ") || c.starts_with("APPE ")).collect();
        assert_eq!(uploads.len(), 1, "only the new a.txt is uploaded: {commands:#?}");
    }
    // A second run that keeps a version prunes the first run's folder (--backup-keep 1).
    env.put_at(S, "a.txt", "a3", 1_700_000_200);
    sync(&["--backup-dir", DIR, "--backup-keep", "1"]);
    assert_eq!(kept(&env, D), tree(&[("a.txt", "a2")]));
}
