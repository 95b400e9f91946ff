//! Runs that leave their bulk rows for later (issue 15): with `PAIRSYNC_STREAM_HOLD=0` every
//! file a folder alone decides is listed again, planned and applied after the rest of the plan,
//! folder by folder. Each scenario runs twice, holding every row and leaving them for later,
//! and both must end alike; the safety stop must still come before anything is done.

mod util;

use std::collections::BTreeMap;
use std::process::Command;

use util::{Run, Side::Destination as D, Side::Source as S, TestEnv};

/// A sync of `env` that holds at most `hold` bulk rows.
fn sync(env: &TestEnv, hold: usize, extra: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pairsync"));
    command.env("PAIRSYNC_STREAM_HOLD", hold.to_string());
    let (src, dst) = (env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    let mut args = vec!["sync", src, dst];
    args.extend_from_slice(extra);
    env.run_with(command, &args)
}

fn summary(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"))
}

/// What a summary counts, and its actions (kind, side and path, sorted).
fn counts(run: &Run) -> (Vec<Option<u64>>, Vec<String>) {
    let summary = summary(run);
    let numbers =
        ["copied", "bytes", "deleted", "renamed", "folders_created", "exit_code"].map(|k| summary[k].as_u64()).to_vec();
    let mut actions: Vec<String> = summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let side = a["side"].as_str().unwrap_or("");
            format!("{} {side} {}", a["kind"].as_str().unwrap(), unstamped(a["path"].as_str().unwrap()))
        })
        .collect();
    actions.sort();
    (numbers, actions)
}

/// A conflict copy's name without the time of its run.
fn unstamped(path: &str) -> String {
    regex::Regex::new(r"conflict-\d{8}-\d{6}").unwrap().replace_all(path, "conflict-T").into_owned()
}

fn tree(env: &TestEnv, side: util::Side) -> BTreeMap<String, String> {
    env.tree(side).into_iter().map(|(path, content)| (unstamped(&path), content)).collect()
}

/// Builds the same history in three envs: one holding every row, one leaving them for later
/// once it holds two (a spill in the middle of the tree), one leaving every one for later; after
/// each run all three must have done the same, and a last run must find nothing to do.
fn alike(mode: &str, first: impl Fn(&TestEnv), then: impl Fn(&TestEnv)) {
    let envs = [(TestEnv::new(), 1_000_000), (TestEnv::new(), 2), (TestEnv::new(), 0)];
    for step in [&first as &dyn Fn(&TestEnv), &then] {
        let runs: Vec<Run> = envs
            .iter()
            .map(|(env, hold)| {
                step(env);
                sync(env, *hold, &["--mode", mode, "--json"])
            })
            .collect();
        let (held, held_run) = (&envs[0].0, &runs[0]);
        for ((env, hold), run) in envs.iter().zip(&runs).skip(1) {
            assert_eq!(counts(held_run), counts(run), "\nheld:\n{held_run}\nhold {hold}:\n{run}");
            for side in [S, D] {
                assert_eq!(tree(held, side), tree(env, side), "hold {hold}, {side}\n{}\n{}", held.trees(), env.trees());
            }
        }
    }
    for (env, hold) in &envs {
        let last = sync(env, *hold, &["--mode", mode, "--json"]);
        let (numbers, actions) = counts(&last);
        assert_eq!((&numbers[..5], actions.len()), (&[Some(0); 5][..], 0), "hold {hold}: not a no-op\n{last}");
    }
}

/// Three folders of files, one nested, with fixed mtimes.
fn base(env: &TestEnv) {
    for dir in ["a", "b", "c/d"] {
        for i in 0..4 {
            env.put_at(S, &format!("{dir}/f{i}"), &format!("{dir} {i}"), 1_700_000_000 + i);
        }
    }
    env.put_at(S, "top", "top", 1_700_000_000);
}

#[test]
fn a_two_way_run_carries_every_kind_of_change_alike() {
    alike("two-way", base, |env| {
        env.put_at(S, "a/f0", "edited on the source", 1_700_000_100); // carried
        env.put_at(D, "b/f1", "edited on the destination", 1_700_000_100); // carried back
        env.put_at(S, "b/f2", "edited here", 1_700_000_100); // a conflict, kept both
        env.put_at(D, "b/f2", "and there", 1_700_000_200);
        env.rm(S, "a/f3"); // a deletion
        env.mv(S, "c/d/f1", "new/moved"); // a rename into a new folder
        env.mv(D, "a/f2", "b/moved back"); // a rename the other way
        env.put_at(S, "new/deeper/n1", "new in a new folder", 1_700_000_300);
        env.put_at(D, "fresh/x", "new on the destination", 1_700_000_300);
        env.put_at(S, "c/both", "same", 1_700_000_400); // new on both sides, equal
        env.put_at(D, "c/both", "same", 1_700_000_400);
        env.rm(D, "c/d"); // a folder deleted, with a file edited inside on the other side
        env.put_at(S, "c/d/f0", "edited while deleted there", 1_700_000_500);
        env.mkdir(D, "b/new and empty");
        env.mkdir(S, "new/deeper/empty too");
    });
}

#[test]
fn a_clone_run_mirrors_alike() {
    alike("clone", base, |env| {
        env.put_at(D, "extra/x", "only on the destination", 1_700_000_100); // deleted
        env.put_at(D, "a/f0", "edited on the destination", 1_700_000_100); // overwritten
        env.put_at(S, "added/y", "new", 1_700_000_100);
        env.mv(S, "b/f0", "added/moved");
    });
}

#[test]
fn a_simple_run_copies_alike_and_never_deletes() {
    alike("simple", base, |env| {
        env.put_at(D, "extra/x", "only on the destination", 1_700_000_100);
        env.put_at(D, "a/f0", "edited on the destination", 1_700_000_100);
        env.put_at(S, "b/f1", "edited on the source", 1_700_000_100);
        env.put_at(S, "added/deeper/y", "new", 1_700_000_100);
        env.rm(S, "c");
    });
}

#[test]
fn type_changes_and_links_where_a_new_folder_would_go_are_alike() {
    alike("two-way", base, |env| {
        env.rm(S, "a/f0").mkdir(S, "a/f0").put_at(S, "a/f0/inner", "a folder where a file was", 1_700_000_100);
        env.rm(D, "b").put_at(D, "b", "a file where a folder was", 1_700_000_100);
        // A new folder on the source where the destination holds a link: left alone.
        env.put_at(S, "linked/x1", "x1", 1_700_000_100).put_at(S, "linked/x2", "x2", 1_700_000_100);
        std::os::unix::fs::symlink("/nonexistent", env.dst.join("linked")).unwrap();
    });
}

#[test]
fn a_rename_into_another_folder_is_still_a_rename() {
    let env = TestEnv::new();
    base(&env);
    env.expect(&sync(&env, 0, &[]), 0);
    env.mv(S, "a/f1", "elsewhere/deep/f1");
    let run = sync(&env, 0, &["--json"]);
    env.expect(&run, 0);
    let summary = summary(&run);
    assert_eq!((summary["renamed"].as_u64(), summary["copied"].as_u64()), (Some(1), Some(0)), "{run}");
    env.assert_same();
}

#[test]
fn the_safety_stop_comes_before_any_row_left_for_later_is_copied() {
    let env = TestEnv::new();
    base(&env);
    env.expect(&sync(&env, 0, &[]), 0);
    // Most files gone from the source (a half-unmounted drive?), and new ones elsewhere.
    for dir in ["a", "b"] {
        env.rm(S, dir);
    }
    env.put_at(S, "c/new", "new", 1_700_000_100);
    env.put_at(D, "c/new on the destination", "new", 1_700_000_100);
    let (source, destination) = (env.tree(S), env.tree(D));
    let run = sync(&env, 0, &[]);
    env.expect(&run, 4);
    assert!(run.stderr.contains("would delete 8 of"), "{run}");
    assert_eq!((env.tree(S), env.tree(D)), (source, destination), "nothing may be done before the stop\n{run}");
}

#[test]
fn a_dry_run_plans_the_rows_left_for_later_too() {
    let (held, later) = (TestEnv::new(), TestEnv::new());
    for env in [&held, &later] {
        base(env);
    }
    let a = sync(&held, 1_000_000, &["--dry-run", "--json"]);
    let b = sync(&later, 0, &["--dry-run", "--json"]);
    assert_eq!(counts(&a), counts(&b), "\n{a}\n{b}");
    assert_eq!(counts(&b).0[0], Some(13), "{b}");
    assert!(later.tree(D).is_empty(), "a dry run writes nothing\n{}", later.trees());
}
