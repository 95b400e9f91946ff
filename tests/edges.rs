//! Edges found by peers' test suites (issue 11, item 9): paths longer than PATH_MAX are synced,
//! sparse files stay sparse on local copies, and a dry run leaves the state folder untouched.

mod ftp_server;
mod util;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Timespec, Timestamps};
use util::{Side::Destination as D, Side::Source as S, TestEnv};

/// Trees no path of which fits in PATH_MAX, built and read one open folder at a time: every
/// call by path (`fs::*`, walkdir) fails there with ENAMETOOLONG.
mod deep {
    use super::*;

    /// The folder `rel` of `root`, opened (and with `create`, made) one name at a time.
    pub fn folder(root: &Path, rel: &str, create: bool) -> OwnedFd {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut fd = rustix::fs::open(root, flags, Mode::empty()).unwrap();
        for name in rel.split('/').filter(|n| !n.is_empty()) {
            if create {
                match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => panic!("mkdir {name}: {e}"),
                }
            }
            fd = rustix::fs::openat(&fd, name, flags, Mode::empty()).unwrap_or_else(|e| panic!("open {rel}: {e}"));
        }
        fd
    }

    fn split(rel: &str) -> (&str, &str) {
        rel.rsplit_once('/').unwrap_or(("", rel))
    }

    /// Writes the file `rel` (making its folders) with the mtime `mtime` (seconds).
    pub fn put(root: &Path, rel: &str, content: &str, mtime: i64) {
        let (dir, name) = split(rel);
        let dir = folder(root, dir, true);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o644)).unwrap();
        File::from(fd).write_all(content.as_bytes()).unwrap();
        let at = Timespec { tv_sec: mtime, tv_nsec: 0 };
        let times = Timestamps { last_access: at, last_modification: at };
        rustix::fs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    pub fn remove(root: &Path, rel: &str) {
        let (dir, name) = split(rel);
        rustix::fs::unlinkat(folder(root, dir, false), name, AtFlags::empty()).unwrap();
    }

    pub fn rename(root: &Path, from: &str, to: &str) {
        let ((from_dir, from_name), (to_dir, to_name)) = (split(from), split(to));
        let (from_dir, to_dir) = (folder(root, from_dir, false), folder(root, to_dir, true));
        rustix::fs::renameat(from_dir, from_name, to_dir, to_name).unwrap();
    }

    /// Relative path -> "<dir>", or the file's content and mtime (seconds), walked by open
    /// folder.
    pub fn tree(root: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut todo = vec![(String::new(), folder(root, "", false))];
        let mut buf = vec![std::mem::MaybeUninit::uninit(); 16 * 1024];
        while let Some((dir, fd)) = todo.pop() {
            let mut names = Vec::new();
            let mut listing = RawDir::new(&fd, &mut buf);
            while let Some(item) = listing.next() {
                let item = item.unwrap();
                let name = item.file_name().to_str().unwrap().to_string();
                if name != "." && name != ".." {
                    names.push(name);
                }
            }
            for name in names {
                let rel = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
                let st = rustix::fs::statat(&fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).unwrap();
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => {
                        out.insert(rel.clone(), "<dir>".to_string());
                        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                        todo.push((rel, rustix::fs::openat(&fd, name.as_str(), flags, Mode::empty()).unwrap()));
                    }
                    FileType::RegularFile => {
                        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                        let mut content = String::new();
                        let file = rustix::fs::openat(&fd, name.as_str(), flags, Mode::empty()).unwrap();
                        File::from(file).read_to_string(&mut content).unwrap();
                        out.insert(rel, format!("{content} @{}", st.st_mtime));
                    }
                    other => {
                        out.insert(rel, format!("<{other:?}>"));
                    }
                }
            }
        }
        out
    }

    /// Both trees, short enough to read in a failure message: each long name abbreviated.
    pub fn shown(trees: [&BTreeMap<String, String>; 2]) -> String {
        let short = |tree: &BTreeMap<String, String>| -> Vec<String> {
            tree.iter()
                .map(|(path, value)| {
                    let path: Vec<String> = path
                        .split('/')
                        .map(|n| if n.len() > 12 { format!("{}…", &n[..6]) } else { n.into() })
                        .collect();
                    format!("{} = {value}", path.join("/"))
                })
                .collect()
        };
        format!("--- source\n{:#?}\n--- destination\n{:#?}", short(trees[0]), short(trees[1]))
    }
}

/// 20 folders of 250 bytes: 5,020 bytes, past PATH_MAX (4,096).
fn deep_folder() -> String {
    let path: Vec<String> = (0..20).map(|i| format!("{i:02}{}", "d".repeat(248))).collect();
    let path = path.join("/");
    assert!(path.len() > 4096);
    path
}

/// Asserts the exit code, printing the run and both trees (walked by open folder) if it differs.
#[track_caller]
fn expect_deep(env: &TestEnv, run: &util::Run, code: i32) {
    if run.code != code {
        let (src, dst) = (deep::tree(&env.src), deep::tree(&env.dst));
        panic!("exit {} (want {code})\n{run}\n{}", run.code, deep::shown([&src, &dst]));
    }
}

#[track_caller]
fn assert_same_deep(env: &TestEnv, run: &util::Run) -> BTreeMap<String, String> {
    let (src, dst) = (deep::tree(&env.src), deep::tree(&env.dst));
    assert_eq!(src, dst, "trees differ after\n{run}\n{}", deep::shown([&src, &dst]));
    src
}

#[test]
fn walkdir_cannot_read_a_tree_past_path_max() {
    // Why this file walks by open folder: walkdir stats full paths.
    let env = TestEnv::new();
    let bottom = format!("{}/f", deep_folder());
    deep::put(&env.src, &bottom, "x", 1_600_000_000);
    let walked: Result<Vec<_>, _> = walkdir::WalkDir::new(&env.src).into_iter().collect();
    assert!(walked.is_err(), "walkdir read a path past PATH_MAX");
    assert_eq!(deep::tree(&env.src).get(&bottom).map(String::as_str), Some("x @1600000000"));
}

#[test]
fn a_two_way_sync_carries_every_change_past_path_max_both_ways() {
    // Cause: peers' suites found paths past PATH_MAX; the scan walked by folder fd, but not
    // every access of a sync was checked to.
    let env = TestEnv::new();
    let deep = deep_folder();
    let at = |name: &str| format!("{deep}/{name}");
    let t = 1_600_000_000;
    deep::put(&env.src, &at("a.txt"), "a from the source", t);
    deep::put(&env.src, &at("b.txt"), "b from the source", t);
    deep::put(&env.src, &at("sub/s.txt"), "deeper still", t);
    deep::put(&env.dst, &at("c.txt"), "c from the destination", t);
    deep::put(&env.dst, "top.txt", "at the top", t);

    // The first run merges: every file is copied down 20 folders the other side lacks.
    let run = env.sync(&[]);
    expect_deep(&env, &run, 0);
    let merged = assert_same_deep(&env, &run);
    for name in ["a.txt", "b.txt", "c.txt", "sub/s.txt"] {
        assert!(merged.contains_key(&at(name)), "{name} missing\n{run}");
    }
    assert_eq!(merged[&at("a.txt")], format!("a from the source @{t}"), "content or mtime not carried");

    // A create on each side, an edit, a delete and a rename, on both sides.
    deep::put(&env.src, &at("a.txt"), "a edited on the source", t + 10);
    deep::put(&env.src, &at("new-on-source/n.txt"), "new on the source", t + 10);
    deep::remove(&env.src, &at("sub/s.txt"));
    deep::put(&env.dst, &at("new-on-destination.txt"), "new on the destination", t + 10);
    deep::remove(&env.dst, &at("b.txt"));
    deep::rename(&env.dst, &at("c.txt"), &at("c-renamed.txt"));
    let run = env.sync(&["--json"]);
    expect_deep(&env, &run, 0);
    let synced = assert_same_deep(&env, &run);
    let want: BTreeMap<String, String> = [
        ("a.txt", format!("a edited on the source @{}", t + 10)),
        ("c-renamed.txt", format!("c from the destination @{t}")),
        ("new-on-destination.txt", format!("new on the destination @{}", t + 10)),
        ("new-on-source", "<dir>".into()),
        ("new-on-source/n.txt", format!("new on the source @{}", t + 10)),
        ("sub", "<dir>".into()),
    ]
    .into_iter()
    .map(|(name, value)| (at(name), value))
    .collect();
    let got: BTreeMap<String, String> = synced
        .iter()
        .filter(|(p, _)| p.starts_with(&format!("{deep}/")))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect();
    assert_eq!(got, want, "\n{run}");
    assert!(run.stdout.contains("\"renamed\":1"), "the rename was not carried as one\n{run}");

    // The state holds the long paths: the next run has nothing to do.
    let run = env.sync(&["--json"]);
    expect_deep(&env, &run, 0);
    assert!(run.stdout.contains("\"copied\":0") && run.stdout.contains("\"deleted\":0"), "not a no-op\n{run}");
    assert_same_deep(&env, &run);

    // The other way round: the destination's deep folder deleted whole.
    let ids: Vec<String> = deep::tree(&env.dst).into_keys().filter(|p| p.starts_with(&format!("{deep}/"))).collect();
    for path in ids.iter().rev() {
        let (dir, name) = path.rsplit_once('/').unwrap();
        let flags = if deep::tree(&env.dst)[path] == "<dir>" { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        rustix::fs::unlinkat(deep::folder(&env.dst, dir, false), name, flags).unwrap();
    }
    let run = env.sync(&["--force"]);
    expect_deep(&env, &run, 0);
    let emptied = assert_same_deep(&env, &run);
    assert!(!emptied.keys().any(|p| p.starts_with(&format!("{deep}/"))), "\n{run}");
}

#[test]
fn a_file_check_past_path_max_is_read() {
    let env = TestEnv::new();
    let marker = format!("{}/drive-id", deep_folder());
    deep::put(&env.dst, &marker, "backup drive 7\n", 1_600_000_000);
    env.put(S, "f", "data");
    let run = env.sync(&["--check-destination", &format!("{marker}=^backup drive 7$")]);
    expect_deep(&env, &run, 0);
    assert_eq!(env.read(D, "f"), "data");
    let run = env.sync(&["--check-destination", &format!("{marker}=^another drive$")]);
    expect_deep(&env, &run, 3);
}

const MIB: u64 = 1 << 20;

/// 64 MiB with two small data extents (8 KiB at 1 MiB, a few bytes at 40 MiB); the rest holes.
fn put_sparse(path: &Path) {
    let file = File::create(path).unwrap();
    file.write_all_at(&[0xA5; 8192], MIB).unwrap();
    file.write_all_at(b"the second extent", 40 * MIB).unwrap();
    file.set_len(64 * MIB).unwrap();
}

/// 4 MiB written byte by byte, 2 MiB of them zeros: no holes.
fn put_dense(path: &Path) {
    let mut content: Vec<u8> = (0..4 * MIB).map(|i| (i % 251) as u8).collect();
    content[MIB as usize..3 * MIB as usize].fill(0);
    fs::write(path, content).unwrap();
}

/// Bytes allocated on disk.
fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

#[track_caller]
fn assert_sparse(path: &Path) {
    let size = fs::metadata(path).unwrap().len();
    assert!(allocated(path) < size / 4, "{}: {} bytes allocated of {size}", path.display(), allocated(path));
}

#[track_caller]
fn assert_dense(path: &Path) {
    let size = fs::metadata(path).unwrap().len();
    assert!(allocated(path) >= size, "{}: {} bytes allocated of {size}", path.display(), allocated(path));
}

#[track_caller]
fn assert_same_bytes(a: &Path, b: &Path) {
    assert!(fs::read(a).unwrap() == fs::read(b).unwrap(), "{} and {} differ", a.display(), b.display());
}

#[test]
fn a_sparse_file_stays_sparse_on_a_local_copy_both_ways() {
    // Cause: a copy wrote every byte it read, so 64 MiB of holes became 64 MiB on disk.
    let env = TestEnv::new();
    put_sparse(&env.src.join("sparse.bin"));
    put_dense(&env.src.join("dense.bin"));
    put_sparse(&env.dst.join("back.bin"));
    assert_sparse(&env.src.join("sparse.bin"));
    assert_dense(&env.src.join("dense.bin"));
    env.sync_ok(&[]);
    for (from, to) in [(&env.src, &env.dst), (&env.dst, &env.src)] {
        let name = if from == &env.src { "sparse.bin" } else { "back.bin" };
        assert_same_bytes(&from.join(name), &to.join(name));
        assert_sparse(&to.join(name));
    }
    // Zeros that were written are data, kept as such.
    assert_same_bytes(&env.src.join("dense.bin"), &env.dst.join("dense.bin"));
    assert_dense(&env.dst.join("dense.bin"));

    // The recorded hash is of the whole logical content, holes as zeros: the same bytes
    // written out in full, under a new name, are found to be the copy's rename.
    let bytes = fs::read(env.src.join("sparse.bin")).unwrap();
    fs::remove_file(env.src.join("sparse.bin")).unwrap();
    fs::write(env.src.join("moved.bin"), &bytes).unwrap();
    assert_dense(&env.src.join("moved.bin"));
    let run = env.sync_ok(&["--json"]);
    assert!(run.stdout.contains("\"renamed\":1") && run.stdout.contains("\"copied\":0"), "not a rename\n{run}");
    assert_sparse(&env.dst.join("moved.bin"));
    assert_same_bytes(&env.src.join("moved.bin"), &env.dst.join("moved.bin"));
}

#[test]
fn a_sparse_copy_cut_off_midway_is_continued_and_stays_sparse() {
    // The resumable path (files of 1 MiB or more): a partial temp is continued, not rewritten.
    let env = TestEnv::new();
    let src = env.src.join("sparse.bin");
    put_sparse(&src);
    let meta = fs::metadata(&src).unwrap();
    let mtime = filetime::FileTime::from_last_modification_time(&meta);
    let like = pairsync::core::model::Entry::file(
        meta.len(),
        mtime.unix_seconds() * 1_000_000_000 + i64::from(mtime.nanoseconds()),
    );
    let id = pairsync::state::pair_id(env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    let temp = env.dst.join(pairsync::endpoint::resumable_temp(&id[..8], "sparse.bin", &like));
    // What a run cut off after 2 MiB left: the first extent, and the hole after it.
    let partial = File::create(&temp).unwrap();
    partial.write_all_at(&[0xA5; 8192], MIB).unwrap();
    partial.set_len(2 * MIB).unwrap();
    let inode = fs::metadata(&temp).unwrap().ino();
    env.sync_ok(&["--mode", "clone"]);
    let copy = env.dst.join("sparse.bin");
    assert_eq!(fs::metadata(&copy).unwrap().ino(), inode, "the copy was not continued");
    assert_same_bytes(&src, &copy);
    assert_sparse(&copy);
    assert!(!temp.exists());
}

#[test]
fn an_ftp_download_of_a_sparse_file_is_written_whole_as_before() {
    // Only a local source says where its holes are; bytes from a server are all written.
    let env = TestEnv::new();
    let server = ftp_server::FtpServer::start(&env.src);
    server.write_netrc(&env.home);
    put_sparse(&env.src.join("sparse.bin"));
    let run = env.run(&["sync", &server.url(""), env.dst.to_str().unwrap(), "--mode", "clone"]);
    env.expect(&run, 0);
    assert_same_bytes(&env.src.join("sparse.bin"), &env.dst.join("sparse.bin"));
    assert_dense(&env.dst.join("sparse.bin"));
}

/// Every file and folder under `root` (the root too): kind, size, mtime to the nanosecond,
/// permissions, and a file's bytes. `None`: there is no `root`.
fn snapshot(root: &Path) -> Option<BTreeMap<String, String>> {
    root.symlink_metadata().ok()?;
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.unwrap();
        let meta = entry.path().symlink_metadata().unwrap();
        let bytes = if meta.is_file() {
            blake3::hash(&fs::read(entry.path()).unwrap()).to_hex()[..16].to_string()
        } else {
            "-".into()
        };
        let rel = entry.path().strip_prefix(root).unwrap().display().to_string();
        let stamp = format!(
            "{:?} {} bytes, mtime {}.{:09}, mode {:o}, content {bytes}",
            meta.file_type(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.mode()
        );
        out.insert(rel, stamp);
    }
    Some(out)
}

/// Runs `pairsync sync SRC DST ARGS` with its own TMPDIR, which must be empty afterwards.
fn sync_in(env: &TestEnv, args: &[&str]) -> util::Run {
    let tmp = env.root.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pairsync"));
    command.env("TMPDIR", &tmp);
    let (src, dst) = (env.src.to_str().unwrap(), env.dst.to_str().unwrap());
    let run = env.run_with(command, &[&["sync", src, dst][..], args].concat());
    let left: Vec<PathBuf> = fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}\n{run}");
    run
}

#[track_caller]
fn assert_unchanged(before: &Option<BTreeMap<String, String>>, env: &TestEnv, run: &util::Run) {
    let after = snapshot(&env.state);
    assert!(before == &after, "the dry run changed the state folder\n{run}\nbefore {before:#?}\nafter {after:#?}");
}

#[test]
fn a_dry_run_leaves_the_state_folder_byte_for_byte_as_it_was() {
    // Cause: sled writes to a database's files whenever it opens one, even only to read it.
    let env = TestEnv::new();
    env.put(S, "a", "a").put(S, "keep/b", "b").put(D, "c", "c").put(S, "x.tmp", "ignored later");
    env.sync_ok(&[]);
    env.put_at(S, "a", "a edited", 1_700_000_000).put(D, "new", "new").rm(S, "keep/b");
    let sides = (env.tree(S), env.tree(D));
    let before = snapshot(&env.state);
    // Twice (a second open finds what a first one might have left), and once dropping the
    // records of a path now ignored.
    for args in [&["--dry-run"][..], &["--dry-run", "-v"], &["--dry-run", "--ignore", "\\.tmp$"]] {
        let run = sync_in(&env, args);
        env.expect(&run, 0);
        assert_unchanged(&before, &env, &run);
    }
    assert!((env.tree(S), env.tree(D)) == sides, "a dry run changed a side\n{}", env.trees());
    // The state is whole: the real run carries exactly the changes made since the last one.
    let run = env.sync_ok(&["--json"]);
    assert!(run.stdout.contains("\"deleted\":1"), "the state was lost\n{run}");
    env.assert_same();
    assert!(!env.exists(D, "keep/b"));
}

#[test]
fn a_first_dry_run_creates_no_state_folder_and_adds_nothing_to_one() {
    let env = TestEnv::new();
    env.put(S, "a", "a").put(D, "b", "b");
    let run = sync_in(&env, &["--dry-run"]);
    env.expect(&run, 0);
    assert!(!env.state.exists(), "a dry run created the state folder\n{run}");

    // A state folder holding another pair: this pair's first dry run adds nothing to it.
    let other = env.root.join("other");
    fs::create_dir(&other).unwrap();
    let run = env.run(&["sync", env.src.to_str().unwrap(), other.to_str().unwrap()]);
    env.expect(&run, 0);
    let before = snapshot(&env.state);
    let run = sync_in(&env, &["--dry-run"]);
    env.expect(&run, 0);
    assert_unchanged(&before, &env, &run);
    assert!(env.tree(D).len() == 1, "a dry run copied\n{}", env.trees());
}

#[test]
fn a_dry_run_leaves_an_unreadable_database_where_it_is() {
    let env = TestEnv::new();
    env.put(S, "a", "a");
    env.sync_ok(&[]);
    let pairs = env.state.join("pairs");
    let db = fs::read_dir(&pairs).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
    for file in fs::read_dir(&db).unwrap() {
        let file = file.unwrap().path();
        if file.is_file() {
            fs::write(&file, vec![0xAB; 4096]).unwrap();
        }
    }
    let before = snapshot(&env.state);
    let run = sync_in(&env, &["--dry-run"]);
    env.expect(&run, 0);
    assert!(run.stderr.contains("this dry run plans as a first run"), "{run}");
    assert_unchanged(&before, &env, &run);
}

#[test]
fn a_dry_run_and_a_real_run_of_a_pair_keep_each_other_out() {
    let env = TestEnv::new();
    env.put(S, "a", "a");
    env.sync_ok(&[]);
    env.put(S, "b", "b");
    let lock_file = fs::read_dir(env.state.join("pairs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "lock"))
        .unwrap();
    // A real run in progress: a dry run waits for nothing and says so.
    let held = File::open(&lock_file).unwrap();
    held.lock().unwrap();
    let run = sync_in(&env, &["--dry-run"]);
    env.expect(&run, 5);
    drop(held);
    // A dry run in progress (its lock is shared): another dry run goes on, a real run does not.
    let held = File::open(&lock_file).unwrap();
    held.lock_shared().unwrap();
    let run = sync_in(&env, &["--dry-run"]);
    env.expect(&run, 0);
    let run = env.sync(&[]);
    env.expect(&run, 5);
    drop(held);
    env.sync_ok(&[]);
    assert_eq!(env.read(D, "b"), "b");
}
