//! `TestEnv`: temp source, destination, state and HOME folders, a tree DSL, and runs of the
//! real binary that explain themselves when an assertion fails (command, output, both trees).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use pairsync::core::model::Side;
use Side::{Destination, Source};

pub struct TestEnv {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub src: PathBuf,
    pub dst: PathBuf,
    pub state: PathBuf,
    pub home: PathBuf,
}

/// What one run of the binary printed and returned.
pub struct Run {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nexit: {}\n--- stdout\n{}--- stderr\n{}---",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let env = TestEnv {
            src: root.join("src"),
            dst: root.join("dst"),
            state: root.join("state"),
            home: root.join("home"),
            root,
            _tmp: tmp,
        };
        for dir in [&env.src, &env.dst, &env.home] {
            fs::create_dir_all(dir).unwrap();
        }
        env
    }

    pub fn side(&self, side: Side) -> &Path {
        match side {
            Source => &self.src,
            Destination => &self.dst,
        }
    }

    /// Writes a file, making its folders.
    pub fn put(&self, side: Side, path: &str, content: &str) -> &Self {
        let full = self.side(side).join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, content).unwrap();
        self
    }

    /// Writes a file with a given mtime (seconds since the epoch), so that two edits in one
    /// clock tick are still told apart.
    pub fn put_at(&self, side: Side, path: &str, content: &str, mtime: i64) -> &Self {
        self.put(side, path, content);
        self.set_mtime(side, path, mtime);
        self
    }

    pub fn set_mtime(&self, side: Side, path: &str, mtime: i64) {
        filetime::set_file_mtime(self.side(side).join(path), filetime::FileTime::from_unix_time(mtime, 0)).unwrap();
    }

    pub fn mtime(&self, side: Side, path: &str) -> i64 {
        let meta = fs::metadata(self.side(side).join(path)).unwrap();
        filetime::FileTime::from_last_modification_time(&meta).unix_seconds()
    }

    pub fn mkdir(&self, side: Side, path: &str) -> &Self {
        fs::create_dir_all(self.side(side).join(path)).unwrap();
        self
    }

    pub fn rm(&self, side: Side, path: &str) -> &Self {
        let full = self.side(side).join(path);
        if full.is_dir() {
            fs::remove_dir_all(full).unwrap();
        } else {
            fs::remove_file(full).unwrap();
        }
        self
    }

    pub fn mv(&self, side: Side, from: &str, to: &str) -> &Self {
        let base = self.side(side);
        fs::create_dir_all(base.join(to).parent().unwrap()).unwrap();
        fs::rename(base.join(from), base.join(to)).unwrap();
        self
    }

    pub fn read(&self, side: Side, path: &str) -> String {
        fs::read_to_string(self.side(side).join(path))
            .unwrap_or_else(|e| panic!("{side} {path}: {e}\n{}", self.trees()))
    }

    pub fn exists(&self, side: Side, path: &str) -> bool {
        self.side(side).join(path).symlink_metadata().is_ok()
    }

    /// Relative path -> content, with folders as "<dir>" (symlinks as "<link>").
    pub fn tree(&self, side: Side) -> BTreeMap<String, String> {
        tree_of(self.side(side))
    }

    pub fn trees(&self) -> String {
        format!("--- source tree\n{:#?}\n--- destination tree\n{:#?}", self.tree(Source), self.tree(Destination))
    }

    /// Runs the binary with isolated HOME/XDG folders and this env's state folder.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(Command::new(env!("CARGO_BIN_EXE_pairsync")), args)
    }

    pub fn run_with(&self, mut command: Command, args: &[&str]) -> Run {
        command
            .args(args)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_STATE_HOME", self.home.join("state"))
            .env("PAIRSYNC_STATE_DIR", &self.state)
            .env_remove("PAIRSYNC_CONFIG")
            .current_dir(&self.root);
        let shown = format!("{:?} {}", command.get_program(), args.join(" "));
        let out = command.output().unwrap();
        Run {
            command: shown,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `pairsync sync SRC DST EXTRA...`
    pub fn sync(&self, extra: &[&str]) -> Run {
        let (src, dst) = (self.src.to_str().unwrap(), self.dst.to_str().unwrap());
        let mut args = vec!["sync", src, dst];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Asserts the exit code, printing the run and both trees if it differs.
    #[track_caller]
    pub fn expect(&self, run: &Run, code: i32) {
        assert_eq!(run.code, code, "\n{run}\n{}", self.trees());
    }

    /// Runs a sync that must exit 0.
    #[track_caller]
    pub fn sync_ok(&self, extra: &[&str]) -> Run {
        let run = self.sync(extra);
        self.expect(&run, 0);
        run
    }

    /// Both trees hold the same paths, kinds and bytes.
    #[track_caller]
    pub fn assert_same(&self) {
        assert_eq!(self.tree(Source), self.tree(Destination), "trees differ\n{}", self.trees());
    }

    #[track_caller]
    pub fn assert_tree(&self, side: Side, want: &[(&str, &str)]) {
        let want: BTreeMap<String, String> = want.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect();
        assert_eq!(self.tree(side), want, "{side} tree\n{}", self.trees());
    }
}

pub fn tree_of(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let ft = entry.file_type();
        let value = if ft.is_symlink() {
            "<link>".to_string()
        } else if ft.is_dir() {
            "<dir>".to_string()
        } else {
            String::from_utf8_lossy(&fs::read(entry.path()).unwrap()).into_owned()
        };
        out.insert(rel, value);
    }
    out
}
