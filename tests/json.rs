//! `--json` (issue 13 item 2): one object with the counts, the actions (kind, path, side,
//! bytes; conflicts with their reason), and problems and warnings as objects; with `--dry-run`
//! the whole plan; `run` and `mail` in the same shape.

mod util;

use std::os::unix::ffi::OsStrExt;

use serde_json::Value;
use util::{Side::Destination as D, Side::Source as S, TestEnv};

fn object(run: &util::Run) -> Value {
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{run}"))
}

/// The actions of a summary as `kind path side` strings, sorted.
fn actions(summary: &Value) -> Vec<String> {
    let mut all: Vec<String> = summary["actions"]
        .as_array()
        .unwrap_or_else(|| panic!("no actions in {summary}"))
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["kind"].as_str().unwrap(),
                a["path"].as_str().unwrap(),
                a["side"].as_str().unwrap_or("-")
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn a_sync_lists_what_it_did() {
    let env = TestEnv::new();
    env.put(S, "keep.txt", "k").put(S, "old.txt", "rename me").put(D, "gone.txt", "g");
    env.sync_ok(&[]);
    env.put(S, "docs/new.txt", "twelve bytes");
    std::fs::rename(env.src.join("old.txt"), env.src.join("new-name.txt")).unwrap();
    std::fs::remove_file(env.dst.join("gone.txt")).unwrap();
    let run = env.sync_ok(&["--json"]);
    let summary = object(&run);
    assert_eq!(
        actions(&summary),
        [
            "copy docs/new.txt destination",
            "delete gone.txt source",
            "mkdir docs destination",
            "rename new-name.txt destination",
        ],
        "{run}"
    );
    let copy = summary["actions"].as_array().unwrap().iter().find(|a| a["kind"] == "copy").unwrap();
    assert_eq!((copy["bytes"].as_u64(), copy["from"].as_str()), (Some(12), Some("source")), "{copy}");
    let rename = summary["actions"].as_array().unwrap().iter().find(|a| a["kind"] == "rename").unwrap();
    assert_eq!(rename["old_path"], "old.txt");
    assert_eq!((summary["copied"].as_u64(), summary["exit_code"].as_u64()), (Some(1), Some(0)));
    assert!(summary["problems"].as_array().unwrap().is_empty() && summary["warnings"].as_array().unwrap().is_empty());
}

#[test]
fn a_dry_run_lists_the_whole_plan_and_does_nothing() {
    let env = TestEnv::new();
    env.put(S, "a.txt", "a").put(S, "sub/b.txt", "bb");
    let run = env.sync_ok(&["--json", "--dry-run", "--mode", "clone"]);
    let summary = object(&run);
    assert_eq!(
        actions(&summary),
        ["copy a.txt destination", "copy sub/b.txt destination", "mkdir sub destination"],
        "{run}"
    );
    assert_eq!(summary["dry_run"], true);
    assert!(!env.dst.join("a.txt").exists());
}

#[test]
fn conflicts_warnings_and_problems_are_objects() {
    let env = TestEnv::new();
    env.put(S, "r.txt", "base");
    env.sync_ok(&[]);
    env.put_at(S, "r.txt", "source edit", 1_700_000_000);
    env.put_at(D, "r.txt", "destination edit, newer", 1_700_000_100);
    std::os::unix::fs::symlink("r.txt", env.src.join("link")).unwrap();
    let run = env.sync_ok(&["--json"]);
    let summary = object(&run);
    let conflict =
        summary["actions"].as_array().unwrap().iter().find(|a| a["kind"] == "conflict").unwrap_or_else(|| {
            panic!("no conflict action: {run}");
        });
    assert_eq!(conflict["path"], "r.txt");
    assert_eq!(conflict["reason"], "changed on both sides", "{conflict}");
    assert!(conflict["resolution"].as_str().is_some());
    assert!(actions(&summary).iter().any(|a| a.starts_with("set-aside ")), "{run}");
    let warning = &summary["warnings"][0];
    assert_eq!(warning["path"], "link", "{run}");
    assert!(warning["message"].as_str().unwrap().starts_with("source: "), "{warning}");
    // A problem: a name that is not UTF-8 cannot be carried (exit 1), said with its path.
    let env = TestEnv::new();
    let bad = std::ffi::OsStr::from_bytes(b"bad-\xff.txt");
    std::fs::write(env.src.join(bad), "x").unwrap();
    env.put(S, "fine.txt", "ok");
    let run = env.sync(&["--json"]);
    assert_eq!(run.code, 1, "{run}");
    let summary = object(&run);
    let problem = &summary["problems"][0];
    assert!(problem["path"].as_str().is_some_and(|p| p.starts_with("bad-")), "{run}");
    assert!(problem["message"].as_str().is_some_and(|m| !m.is_empty()), "{run}");
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(actions(&summary), ["copy fine.txt destination"], "{run}");
}

#[test]
fn run_of_several_items_gives_each_its_own_summary_with_actions() {
    let env = TestEnv::new();
    env.put(S, "x.txt", "x");
    let other = tempfile::tempdir().unwrap();
    let config = env.home.join("items.toml");
    std::fs::write(
        &config,
        format!(
            "[[item]]\nname = \"one\"\nmode = \"clone\"\n[item.source]\ndirectory = \"{}\"\n[item.destination]\ndirectory = \"{}\"\n\
             [[item]]\nname = \"two\"\nmode = \"clone\"\n[item.source]\ndirectory = \"{}\"\n[item.destination]\ndirectory = \"{}\"\n",
            env.src.display(),
            env.dst.display(),
            env.src.display(),
            other.path().display()
        ),
    )
    .unwrap();
    let run = env.run(&["-C", config.to_str().unwrap(), "--json", "run", "one", "two"]);
    assert_eq!(run.code, 0, "{run}");
    let all = object(&run);
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(actions(item), ["copy x.txt destination"], "{}", item["item"]);
    }
}
