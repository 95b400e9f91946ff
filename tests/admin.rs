//! What an admin trips on in the first hour (issue 11): silent no-ops, split state, rsync
//! habits. Each test's first line names the trap it guards.

mod util;

use std::fs;
use std::process::Command;

use util::{Side::Destination as D, Side::Source as S, TestEnv};

fn config(env: &TestEnv) -> String {
    env.root.join("conf.toml").to_str().unwrap().to_string()
}

fn add(env: &TestEnv, name: &str, extra: &[&str]) -> util::Run {
    let (conf, src, dst) = (config(env), env.src.to_str().unwrap().to_string(), env.dst.to_str().unwrap().to_string());
    let mut args = vec!["-C", &conf, "add", name, "--source", &src, "--destination", &dst];
    args.extend_from_slice(extra);
    env.run(&args)
}

#[test]
fn a_config_file_that_does_not_exist_is_an_error_except_for_add() {
    // A typo in -C listed nothing and ran nothing, with exit 0.
    let env = TestEnv::new();
    let missing = env.root.join("typo.toml");
    for args in
        [vec!["list"], vec!["run", "--all"], vec!["show", "x"], vec!["groups"], vec!["watch", "--all"], vec!["daemon"]]
    {
        let mut all = vec!["-C", missing.to_str().unwrap()];
        all.extend(args.iter().copied());
        let run = env.run(&all);
        env.expect(&run, 2);
        assert!(run.stderr.contains("typo.toml: no such config file"), "{run}");
        assert!(!missing.exists(), "{run}");
    }
    // `add` creates it, and says so in one line.
    let run = add(&env, "docs", &["--mode", "clone"]);
    env.expect(&run, 0);
    assert_eq!(run.stdout.lines().count(), 1, "{run}");
    assert!(run.stdout.starts_with("added docs: clone ") && run.stdout.contains("(file created)"), "{run}");
    let run = add(&env, "more", &[]);
    assert!(!run.stdout.contains("(file created)"), "{run}");
}

#[test]
fn no_items_is_an_error_for_run_all_daemon_and_watch_all() {
    // They exited 0, or watched 0 items forever.
    let env = TestEnv::new();
    fs::write(config(&env), "# nothing yet\n").unwrap();
    for args in [vec!["run", "--all"], vec!["watch", "--all"], vec!["daemon"]] {
        let conf = config(&env);
        let mut all = vec!["-C", conf.as_str()];
        all.extend(args.iter().copied());
        let run = env.run(&all);
        env.expect(&run, 2);
        assert!(run.stderr.contains("no items in") && run.stderr.contains("conf.toml"), "{run}");
    }
}

#[test]
fn the_config_files_state_dir_is_shared_by_every_command_using_it() {
    // A root shell and the systemd unit kept two states (and two locks) for one pair.
    let env = TestEnv::new();
    env.put(S, "a", "1");
    assert_eq!(add(&env, "docs", &[]).code, 0);
    let conf = config(&env);
    let text = fs::read_to_string(&conf).unwrap();
    fs::write(&conf, format!("state_dir = \"shared-state\"\n{text}")).unwrap();
    let bare = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pairsync"))
            .args(["-C", &conf])
            .args(args)
            .env("HOME", &env.home)
            .env_remove("PAIRSYNC_STATE_DIR")
            .env_remove("XDG_STATE_HOME")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, _) = bare(&["run", "docs"]);
    assert_eq!(code, Some(0));
    let shared = env.root.join("shared-state");
    assert!(shared.join("pairs").is_dir(), "the state went elsewhere");
    assert!(shared.join("items/docs.json").is_file());
    let (_, list) = bare(&["list"]);
    assert!(list.contains(&format!("state: {} (from state_dir in {conf})", shared.display())), "{list}");
    let (_, show) = bare(&["show", "docs"]);
    assert!(show.contains("state dir:") && show.contains("from state_dir in"), "{show}");
    // The flag and the environment still win.
    let run = env.run(&["-C", &conf, "list"]);
    assert!(run.stdout.contains("(from PAIRSYNC_STATE_DIR)"), "{run}");
}

#[test]
fn run_takes_dry_run_and_force_as_sync_does() {
    // `run NAME --dry-run` was refused; a safety stop could not be passed for an item.
    let env = TestEnv::new();
    for i in 0..4 {
        env.put(S, &format!("f{i}"), "x");
    }
    assert_eq!(add(&env, "docs", &["--mode", "clone"]).code, 0);
    let conf = config(&env);
    let run = env.run(&["-C", &conf, "run", "docs", "--dry-run"]);
    env.expect(&run, 0);
    assert!(run.stdout.contains("would copy"), "{run}");
    assert!(env.tree(D).is_empty(), "a dry run copied\n{run}");
    assert!(!env.state.join("items/docs.json").exists(), "a dry run recorded a last run");
    assert!(!env.state.join("logs/docs.log").exists(), "a dry run logged");
    env.expect(&env.run(&["-C", &conf, "run", "docs"]), 0);
    for i in 0..4 {
        env.rm(S, &format!("f{i}"));
    }
    env.put(S, "new", "n");
    let run = env.run(&["-C", &conf, "run", "docs"]);
    env.expect(&run, 4);
    let run = env.run(&["-C", &conf, "run", "docs", "--force"]);
    env.expect(&run, 0);
    env.assert_tree(D, &[("new", "n")]);
}

#[test]
fn globs_exclude_and_include_as_rsync_users_write_them() {
    // Only regexes were taken: `--exclude '*.tmp'` was an unknown flag.
    let env = TestEnv::new();
    env.put(S, "a.txt", "a").put(S, "x.tmp", "t").put(S, "d/b.tmp", "t").put(S, "d/c.jpg", "c");
    env.put(S, "cache/big", "b").put(S, "photos/p.jpg", "p");
    env.sync_ok(&["--mode", "clone", "--exclude", "*.tmp", "--exclude", "cache/"]);
    env.assert_tree(D, &[("a.txt", "a"), ("d", "<dir>"), ("d/c.jpg", "c"), ("photos", "<dir>"), ("photos/p.jpg", "p")]);
    let env = TestEnv::new();
    env.put(S, "a.txt", "a").put(S, "d/c.jpg", "c").put(S, "secret.jpg", "s");
    env.sync_ok(&["--mode", "clone", "--include", "*.jpg", "--exclude", "secret*"]);
    env.assert_tree(D, &[("d", "<dir>"), ("d/c.jpg", "c")]);
    // A regex that is really a glob says which flag it wanted.
    let run = env.sync(&["--ignore", "*.tmp"]);
    env.expect(&run, 2);
    assert!(run.stderr.contains("(a glob? --exclude \"*.tmp\" takes globs)"), "{run}");
    // An item keeps its globs.
    assert_eq!(add(&env, "pics", &["--include", "*.jpg"]).code, 0);
    let text = fs::read_to_string(config(&env)).unwrap();
    assert!(text.contains("include = [\"*.jpg\"]"), "{text}");
}

#[test]
fn max_delete_takes_a_percentage_or_an_rsync_count() {
    // `--max-delete 5` meant 5 percent, where rsync users mean 5 files.
    let env = TestEnv::new();
    for i in 0..10 {
        env.put(S, &format!("f{i}"), "x");
    }
    env.sync_ok(&["--mode", "clone"]);
    for i in 0..3 {
        env.rm(S, &format!("f{i}"));
    }
    let run = env.sync(&["--mode", "clone", "--max-delete", "2"]);
    env.expect(&run, 4);
    assert!(run.stderr.contains("above --max-delete 2;"), "{run}");
    let run = env.sync(&["--mode", "clone", "--max-delete", "20%"]);
    env.expect(&run, 4);
    assert!(run.stderr.contains("above --max-delete 20%"), "{run}");
    env.sync_ok(&["--mode", "clone", "--max-delete", "3"]);
    let run = env.sync(&["--max-delete", "150%"]);
    env.expect(&run, 2);
    // In an item: an integer stays a percentage, a count is written as a string.
    assert_eq!(add(&env, "a", &["--max-delete", "7"]).code, 0);
    assert_eq!(add(&env, "b", &["--max-delete", "7%"]).code, 0);
    let text = fs::read_to_string(config(&env)).unwrap();
    assert!(text.contains("max_delete = \"7\"") && text.contains("max_delete = 7\n"), "{text}");
}

#[test]
fn rsync_flags_get_a_hint_naming_pairsyncs_way() {
    // `-P`, `--delete`, `-a`, `-z`, `-vv` got clap's "use -- to pass it as a value".
    let env = TestEnv::new();
    for (flag, hint) in [
        ("-P", "continued by itself"),
        ("--delete", "--mode clone"),
        ("-a", "always keeps mtimes"),
        ("-z", "no compression"),
        ("-vv", "-v prints every action"),
    ] {
        let run = env.sync(&[flag]);
        env.expect(&run, 2);
        assert!(run.stderr.contains(&format!("{flag}: not a pairsync flag;")) && run.stderr.contains(hint), "{run}");
        assert!(!run.stderr.contains("tip: to pass"), "{run}");
    }
}

#[test]
fn a_two_way_pair_is_the_same_pair_in_either_order() {
    // `sync B A` after `sync A B` merged afresh under a second state (and a second lock).
    let env = TestEnv::new();
    env.put(S, "a", "1").put(D, "b", "2");
    // The same content with other mtimes on the two sides, so the record's two observations
    // differ (that they are read turned round is checked where the state is, in state/).
    env.put_at(S, "m", "same", 1_500_000_000).put_at(D, "m", "same", 1_600_000_000);
    let (src, dst) = (env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    env.expect(&env.run(&["sync", src, dst, "--modify-window", "200000000"]), 0);
    let reversed = env.run(&["--json", "sync", dst, src]);
    env.expect(&reversed, 0);
    let summary: serde_json::Value = serde_json::from_str(&reversed.stdout).unwrap();
    for field in ["copied", "deleted", "renamed"] {
        assert_eq!(summary[field], 0, "the reversed run was not a no-op\n{reversed}");
    }
    let databases =
        fs::read_dir(env.state.join("pairs")).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
    assert_eq!(databases, 1, "a second state was made\n{reversed}");
    // The state is read right way round: an edit and a delete are carried, in both orders.
    env.put_at(D, "a", "edited on the destination", 2_000_000_000);
    env.put_at(D, "m", "edited too", 2_000_000_000);
    env.rm(S, "b");
    let run = env.run(&["sync", dst, src]);
    env.expect(&run, 0);
    assert!(run.stdout.contains(" 0 conflicts"), "an edit on one side was taken for a conflict\n{run}");
    let want = [("a", "edited on the destination"), ("m", "edited too")];
    env.assert_tree(S, &want);
    env.assert_tree(D, &want);
    env.put(S, "c", "3");
    env.expect(&env.run(&["sync", src, dst]), 0);
    env.assert_tree(D, &[("a", "edited on the destination"), ("c", "3"), ("m", "edited too")]);
    // And one lock: a run of one order keeps the other out (exit 5).
    let id = pairsync::state::pair_id(src, dst);
    let lock = fs::File::options().write(true).open(env.state.join("pairs").join(format!("{id}.lock"))).unwrap();
    lock.lock().unwrap();
    env.expect(&env.run(&["sync", dst, src]), 5);
    drop(lock);
    // One-way modes have a direction: the other order is another pair.
    env.expect(&env.run(&["sync", dst, src, "--mode", "simple"]), 0);
}

#[test]
fn purge_state_removes_only_state_no_other_item_uses_and_says_so() {
    // --purge-state removed a state another item of the same pair still used, silently.
    let env = TestEnv::new();
    env.put(S, "a", "1");
    assert_eq!(add(&env, "one", &[]).code, 0);
    assert_eq!(add(&env, "two", &[]).code, 0);
    let conf = config(&env);
    env.expect(&env.run(&["-C", &conf, "run", "one"]), 0);
    let pairs =
        || fs::read_dir(env.state.join("pairs")).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
    assert_eq!(pairs(), 1);
    let run = env.run(&["-C", &conf, "delete", "one", "--purge-state"]);
    env.expect(&run, 0);
    assert!(run.stdout.contains("deleted one; its pair's state is kept: item two uses it"), "{run}");
    assert_eq!(pairs(), 1);
    let run = env.run(&["-C", &conf, "delete", "two", "--purge-state"]);
    env.expect(&run, 0);
    assert!(run.stdout.contains("deleted two; purged its state"), "{run}");
    assert_eq!(pairs(), 0);
}

#[test]
fn sync_reads_only_state_dir_from_a_config_it_does_not_run() {
    // A plain `sync` failed (exit 2) on an invalid item it never runs, when looking for the
    // config file's state_dir.
    let env = TestEnv::new();
    env.put(S, "a", "1");
    let conf = config(&env);
    fs::write(&conf, "state_dir = \"st\"\n[[item]]\nname = \"broken\"\nmode = 7\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pairsync"))
        .args(["-C", &conf, "sync", env.src.to_str().unwrap(), env.dst.to_str().unwrap()])
        .env("HOME", &env.home)
        .env_remove("PAIRSYNC_STATE_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.root.join("st/pairs").is_dir(), "the config's state_dir was not used");
    env.assert_tree(D, &[("a", "1")]);
}
