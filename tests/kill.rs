//! A run killed with SIGKILL at any moment converges on the next run, with no manual step.
//!
//! Drives the real binary on trees big enough that a debug build takes a while, kills it once
//! a given share of the work is visible on disk (polling, not sleeping and hoping), and checks:
//! - no file under a real name was ever partly written (writes are atomic);
//! - the next run exits 0, leaves both trees identical and as the user made them (no edit lost,
//!   both sides of a conflict kept) and removes the killed run's temp files;
//! - a third run is a no-op.
//!
//! Each kill moment runs on a fresh pair; if a run finishes before it could be killed, the tree
//! is doubled and the attempt repeated (a bounded number of times).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use filetime::FileTime;

const BIN: &str = env!("CARGO_BIN_EXE_pairsync");
/// Files of the first attempt; each retry doubles it.
const FILES: usize = 2000;
const FOLDERS: usize = 30;
const ATTEMPTS: u32 = 3;
/// How long to wait for a run to reach a kill point before giving up on that attempt.
const POLL_LIMIT: Duration = Duration::from_secs(20);

/// Relative path -> content.
type Tree = BTreeMap<String, Vec<u8>>;

/// splitmix64: deterministic contents without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// 4 to 64 KiB of noise that starts with `tag`, so every content is unique.
    fn content(&mut self, tag: &str) -> Vec<u8> {
        let len = 4096 + self.below(60 * 1024);
        let mut bytes = tag.as_bytes().to_vec();
        bytes.push(b'\n');
        while bytes.len() < len {
            bytes.extend_from_slice(&self.next().to_le_bytes());
        }
        bytes.truncate(len);
        bytes
    }
}

fn is_temp(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with(".pairsync-") && name.ends_with(".tmp")
}

/// Every file below `root` (temp files included), with its content.
fn read_tree(root: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(root.join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let rel = dir.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                todo.push(rel);
            } else {
                tree.insert(rel.to_str().unwrap().to_string(), fs::read(entry.path()).unwrap());
            }
        }
    }
    tree
}

/// Number of files below `root`, temp files left out (cheap enough to poll).
fn count_files(root: &Path) -> usize {
    let mut count = 0;
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(entry.path()),
                Ok(_) if !is_temp(entry.file_name().to_str().unwrap_or_default()) => count += 1,
                _ => {}
            }
        }
    }
    count
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// Paths where two trees differ, one line each (at most 40).
fn differences(a: &Tree, b: &Tree, names: [&str; 2]) -> String {
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut lines: Vec<String> = Vec::new();
    for path in paths {
        let show = |c: Option<&Vec<u8>>| c.map_or("missing".to_string(), |c| format!("{} bytes", c.len()));
        let (x, y) = (a.get(path), b.get(path));
        if x != y {
            lines.push(format!("    {path}: {} {}, {} {}", names[0], show(x), names[1], show(y)));
        }
    }
    let more = lines.len().saturating_sub(40);
    lines.truncate(40);
    if more > 0 {
        lines.push(format!("    ... and {more} more"));
    }
    lines.join("\n")
}

/// A temp source, destination, state folder and HOME for one pair.
struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    state: PathBuf,
    src: PathBuf,
    dst: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let [home, state, src, dst] = ["home", "state", "src", "dst"].map(|d| tmp.path().join(d));
        for dir in [&home, &state, &src, &dst] {
            fs::create_dir(dir).unwrap();
        }
        Env { _tmp: tmp, home, state, src, dst }
    }

    /// `pairsync --state-dir S [--json] sync SRC DST`, with HOME and XDG_* in the temp folder.
    fn command(&self, json: bool) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--state-dir").arg(&self.state);
        if json {
            cmd.arg("--json");
        }
        cmd.arg("sync").arg(&self.src).arg(&self.dst);
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_STATE_HOME", self.home.join(".local/state"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_RUNTIME_DIR", self.home.join("run"))
            .env_remove("PAIRSYNC_STATE_DIR")
            .env_remove("PAIRSYNC_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs a sync to its end; it must exit 0.
    fn sync(&self, json: bool) -> (Command, Output) {
        let mut cmd = self.command(json);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "the sync did not exit 0\n{}", explain(&cmd, &out));
        (cmd, out)
    }

    /// Starts a sync and kills it (SIGKILL) once `progress()` reaches `target`. Returns the
    /// progress at the kill, or `None` when the run ended first.
    fn sync_and_kill(&self, target: usize, mut progress: impl FnMut() -> usize) -> Option<usize> {
        let mut cmd = self.command(false);
        let mut child: Child = cmd.spawn().unwrap();
        let started = Instant::now();
        let killed_at = loop {
            if child.try_wait().unwrap().is_some() {
                break None;
            }
            let done = progress();
            if done >= target || started.elapsed() > POLL_LIMIT {
                child.kill().unwrap();
                break Some(done);
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let out = child.wait_with_output().unwrap();
        // What happened is what the exit status says: the run may have ended on its own between
        // the last check and the kill (the kill then hits a zombie and changes nothing).
        match std::os::unix::process::ExitStatusExt::signal(&out.status) {
            Some(9) if killed_at.is_some() => killed_at,
            // A run that ended on its own must have ended well.
            _ => {
                assert!(out.status.success(), "the sync failed before it was killed\n{}", explain(&cmd, &out));
                None
            }
        }
    }

    /// Both trees, which must be identical, hold no temp file and equal `expected` (when given);
    /// then a third run must be a no-op.
    fn assert_converged(&self, resumed: &(Command, Output), expected: Option<&Tree>) -> Tree {
        let (src, dst) = (read_tree(&self.src), read_tree(&self.dst));
        let context = || explain(&resumed.0, &resumed.1);
        assert!(
            src == dst,
            "after the resumed run the trees differ:\n{}\n{}",
            differences(&src, &dst, ["source", "destination"]),
            context()
        );
        let temps: Vec<&String> = src.keys().chain(dst.keys()).filter(|p| is_temp(p)).collect();
        assert!(temps.is_empty(), "temp files were left behind: {temps:?}\n{}", context());
        if let Some(expected) = expected {
            assert!(
                &src == expected,
                "after the resumed run the trees are not what the user made:\n{}\n{}",
                differences(expected, &src, ["expected", "got"]),
                context()
            );
        }
        let (cmd, out) = self.sync(true);
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("--json printed no JSON object: {e}\n{}", explain(&cmd, &out)));
        for field in ["copied", "deleted", "renamed", "folders_created"] {
            assert_eq!(summary[field], 0, "the third run was not a no-op ({field})\n{}", explain(&cmd, &out));
        }
        for field in ["conflicts", "problems"] {
            assert_eq!(summary[field], serde_json::json!([]), "the third run had {field}\n{}", explain(&cmd, &out));
        }
        src
    }
}

fn explain(cmd: &Command, out: &Output) -> String {
    format!(
        "command: {cmd:?}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh tree of `files` files across [`FOLDERS`] folders (a few nested).
fn make_tree(root: &Path, files: usize, seed: u64) -> Tree {
    let mut rng = Rng(seed);
    let mut tree = Tree::new();
    for i in 0..files {
        let folder = i % FOLDERS;
        let rel = if folder % 5 == 4 {
            format!("d{:02}/sub/f{i:05}.bin", folder - 1)
        } else {
            format!("d{folder:02}/f{i:05}.bin")
        };
        let content = rng.content(&rel);
        write(root, &rel, &content);
        tree.insert(rel, content);
    }
    tree
}

/// Tries up to [`ATTEMPTS`] fresh pairs, doubling the tree, until `scenario` manages to kill
/// its run (it then says when it killed it); panics if it never did.
fn with_kill(label: &str, scenario: impl Fn(usize) -> Option<String>) {
    for attempt in 0..ATTEMPTS {
        let files = FILES << attempt;
        let started = Instant::now();
        if let Some(when) = scenario(files) {
            let seconds = started.elapsed().as_secs_f64();
            eprintln!("{label}: {files} files, killed after {when}, converged; {seconds:.1} s in all");
            return;
        }
        eprintln!("{label}: the run with {files} files ended before it could be killed; trying a bigger tree");
    }
    panic!("{label}: the sync always finished before it could be killed ({ATTEMPTS} attempts)");
}

/// Two-way to an empty destination, killed once `share` of the files are there.
fn first_run_killed(label: &str, share: f64) {
    with_kill(label, |files| {
        let env = Env::new();
        let tree = make_tree(&env.src, files, files as u64);
        let target = ((files as f64 * share) as usize).max(1);
        let done = env.sync_and_kill(target, || count_files(&env.dst))?;
        // Atomic writes: whatever the killed run left under a real name is complete.
        for (path, content) in read_tree(&env.dst).iter().filter(|(p, _)| !is_temp(p)) {
            assert!(
                tree.get(path) == Some(content),
                "{label}: after the kill at {done} files, {path} on the destination is not the source's file \
                 ({} bytes, source {:?} bytes)",
                content.len(),
                tree.get(path).map(Vec::len)
            );
        }
        let resumed = env.sync(false);
        env.assert_converged(&resumed, Some(&tree));
        Some(format!("{done} of {files} files"))
    });
}

#[test]
fn first_run_killed_early_converges() {
    first_run_killed("killed at 10%", 0.1);
}

#[test]
fn first_run_killed_midway_converges() {
    first_run_killed("killed at 50%", 0.5);
}

#[test]
fn first_run_killed_late_converges() {
    first_run_killed("killed at 90%", 0.9);
}

/// What the user did to both sides of a synced pair before the killed run.
struct Edits {
    /// The tree both sides should end with, conflict copies left out.
    expected: Tree,
    /// Files the source edited; the destination left them alone.
    edited_on_source: Vec<String>,
    /// Files the destination created.
    created_on_destination: Vec<String>,
    /// Files edited differently on both sides: (path, source's content, destination's content).
    edited_on_both: Vec<(String, Vec<u8>, Vec<u8>)>,
}

/// A quarter of the files edited on the source, as many new files on the destination (some in
/// new folders), a few deleted on the destination, a few moved on the source, and a few edited
/// on both sides. Every write gets an explicit mtime no file had, so no edit can hide behind
/// an unchanged size and mtime.
fn edit_both_sides(env: &Env, mut tree: Tree, seed: u64) -> Edits {
    let mut rng = Rng(seed);
    let paths: Vec<String> = tree.keys().cloned().collect();
    let mut mtime = 1_500_000_000;
    let mut stamp = |path: &Path| {
        mtime += 1;
        filetime::set_file_mtime(path, FileTime::from_unix_time(mtime, 0)).unwrap();
    };
    let quarter = paths.len() / 4;
    let few = (paths.len() / 100).max(3);
    let mut edited_on_source = Vec::new();
    let mut edited_on_both = Vec::new();
    let mut created_on_destination = Vec::new();
    // Disjoint sets, by position: 0.. edited on the source, then deleted on the destination,
    // then moved on the source, then edited on both.
    for (i, path) in paths.iter().enumerate() {
        if i % 4 == 0 && edited_on_source.len() < quarter {
            let content = rng.content(&format!("{path} edited on the source"));
            write(&env.src, path, &content);
            stamp(&env.src.join(path));
            tree.insert(path.clone(), content);
            edited_on_source.push(path.clone());
        } else if i % 4 == 1 && i / 4 < few {
            fs::remove_file(env.dst.join(path)).unwrap();
            tree.remove(path);
        } else if i % 4 == 2 && i / 4 < few {
            let to = format!("moved/{}", path.replace('/', "-"));
            fs::create_dir_all(env.src.join("moved")).unwrap();
            fs::rename(env.src.join(path), env.src.join(&to)).unwrap();
            let content = tree.remove(path).unwrap();
            tree.insert(to, content);
        } else if i % 4 == 3 && i / 4 < few {
            let ours = rng.content(&format!("{path} edited on the source, in conflict"));
            let theirs = rng.content(&format!("{path} edited on the destination, in conflict"));
            write(&env.src, path, &ours);
            stamp(&env.src.join(path));
            write(&env.dst, path, &theirs);
            stamp(&env.dst.join(path));
            tree.remove(path);
            edited_on_both.push((path.clone(), ours, theirs));
        }
    }
    for i in 0..quarter {
        let rel =
            if i % 2 == 0 { format!("new{:02}/n{i:05}.bin", i % 10) } else { format!("d{:02}/n{i:05}.bin", i % 30) };
        let content = rng.content(&format!("{rel} created on the destination"));
        write(&env.dst, &rel, &content);
        stamp(&env.dst.join(&rel));
        tree.insert(rel.clone(), content);
        created_on_destination.push(rel);
    }
    Edits { expected: tree, edited_on_source, created_on_destination, edited_on_both }
}

/// How many of the one-sided changes have reached the other side (by size and mtime).
fn landed(env: &Env, edits: &Edits) -> usize {
    let same = |a: &Path, b: &Path| match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.len() == b.len() && a.modified().ok() == b.modified().ok(),
        _ => false,
    };
    let edited = edits.edited_on_source.iter().filter(|p| same(&env.src.join(p), &env.dst.join(p))).count();
    let created = edits.created_on_destination.iter().filter(|p| env.src.join(p).exists()).count();
    edited + created
}

/// Files whose name marks them as conflict copies, on both sides.
fn conflict_copies(env: &Env) -> usize {
    let mut count = 0;
    let mut todo = vec![env.src.clone(), env.dst.clone()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(entry.path());
            } else if entry.file_name().to_str().is_some_and(|n| n.contains(".conflict-")) {
                count += 1;
            }
        }
    }
    count
}

/// Two-way with edits on both sides, killed once `share` of the changes have landed, or, with
/// `None`, as soon as the first conflicting file is set aside (the plan does that first).
fn edits_killed(label: &str, share: Option<f64>) {
    with_kill(label, |files| {
        let env = Env::new();
        let tree = make_tree(&env.src, files, 7 + files as u64);
        env.sync(false);
        let edits = edit_both_sides(&env, tree, 11 + files as u64);
        let before = [read_tree(&env.src), read_tree(&env.dst)];
        let changes = edits.edited_on_source.len() + edits.created_on_destination.len();
        let done = match share {
            Some(share) => env.sync_and_kill(((changes as f64 * share) as usize).max(1), || landed(&env, &edits))?,
            None => {
                env.sync_and_kill(1, || conflict_copies(&env))?;
                landed(&env, &edits)
            }
        };
        // Atomic writes: every file under a real name is a whole version that existed before.
        let versions: BTreeSet<&Vec<u8>> = before.iter().flat_map(|t| t.values()).collect();
        for (side, root) in [("source", &env.src), ("destination", &env.dst)] {
            for (path, content) in read_tree(root).iter().filter(|(p, _)| !is_temp(p)) {
                assert!(
                    versions.contains(content),
                    "{label}: after the kill at {done} of {changes} changes, {path} on the {side} holds \
                     {} bytes that no file held before (a partial write?)",
                    content.len()
                );
            }
        }
        let resumed = env.sync(false);
        let result = env.assert_converged(&resumed, None);
        // Everything one side changed is there as that side made it; for each file edited on
        // both sides, both versions are kept: one under its name, one as a conflict copy.
        let mut rest = result.clone();
        let mut report = String::new();
        for (path, ours, theirs) in &edits.edited_on_both {
            let (stem, ext) = path.rsplit_once('.').unwrap();
            let copies: Vec<String> = rest
                .keys()
                .filter(|p| p.starts_with(&format!("{stem}.conflict-")) && p.ends_with(ext))
                .cloned()
                .collect();
            let mut found: Vec<Vec<u8>> = copies.iter().map(|p| rest.remove(p).unwrap()).collect();
            found.extend(rest.remove(path));
            found.sort();
            let mut want = vec![ours.clone(), theirs.clone()];
            want.sort();
            if found != want {
                let sizes: Vec<usize> = found.iter().map(Vec::len).collect();
                writeln!(
                    report,
                    "    {path}: edited on both sides ({} and {} bytes); found {sizes:?} bytes at {path} and {copies:?}",
                    ours.len(),
                    theirs.len()
                )
                .unwrap();
            }
        }
        let diff = differences(&edits.expected, &rest, ["expected", "got"]);
        assert!(
            report.is_empty() && diff.is_empty(),
            "{label}: after the kill at {done} of {changes} changes and a resumed run, edits are not as made:\n\
             {report}{diff}\n{}",
            explain(&resumed.0, &resumed.1)
        );
        Some(format!("{done} of {changes} changes"))
    });
}

#[test]
fn two_way_edits_killed_early_converge() {
    edits_killed("edits, killed at 10%", Some(0.1));
}

#[test]
fn two_way_edits_killed_midway_converge() {
    edits_killed("edits, killed at 60%", Some(0.6));
}

#[test]
fn two_way_edits_killed_while_setting_conflicts_aside_converge() {
    edits_killed("edits, killed at the first conflict copy", None);
}
