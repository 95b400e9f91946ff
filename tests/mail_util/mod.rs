//! `MailEnv`: a Maildir store, a directory replica, a state folder, a HOME and a config file in
//! one temp folder; messages with Dovecot's names and bytes; runs of `pairsync mail` that
//! explain themselves when an assertion fails (the command, its output, and how the store and
//! the replica differ, path by path).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The received date of the first message a test delivers (Dovecot keeps it as the mtime).
pub const RECEIVED: i64 = 1_700_000_000;

pub struct MailEnv {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    /// The master: `[mail] store`.
    pub store: PathBuf,
    /// The directory replica "backup".
    pub replica: PathBuf,
    /// `PAIRSYNC_STATE_DIR`: the state, and the default sync log `<state>/mail/log`.
    pub state: PathBuf,
    pub home: PathBuf,
    pub config: PathBuf,
}

/// What one run of the binary printed and returned.
pub struct Run {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nexit: {}\n--- stdout\n{}--- stderr\n{}---",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// The lines of stdout that report an action (`copy`, `rename`, `delete`, `mkdir`).
    pub fn actions(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| ["copy ", "rename ", "delete ", "mkdir "].iter().any(|verb| l.starts_with(verb)))
            .collect()
    }

    /// The one line of stderr, which must be the only one.
    #[track_caller]
    pub fn one_error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected exactly one line on stderr\n{self}");
        lines[0]
    }
}

/// One entry of a tree: a folder, a file (bytes and mtime), or a symbolic link (its target).
#[derive(Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { bytes: Vec<u8>, mtime: (i64, u32) },
    Link(PathBuf),
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Dir => write!(f, "<dir>"),
            Node::Link(target) => write!(f, "<link to {}>", target.display()),
            Node::File { bytes, mtime } => {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
                write!(
                    f,
                    "{} bytes {text:?}{}, mtime {}.{:09}",
                    bytes.len(),
                    if bytes.len() > 40 { "..." } else { "" },
                    mtime.0,
                    mtime.1
                )
            }
        }
    }
}

pub type Tree = BTreeMap<String, Node>;

/// Relative path -> node, symbolic links not followed; empty when `root` is missing.
pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    if !root.exists() {
        return out;
    }
    for entry in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let entry = entry.unwrap_or_else(|e| panic!("walking {}: {e}", root.display()));
        let rel = entry.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let ft = entry.file_type();
        let node = if ft.is_symlink() {
            Node::Link(fs::read_link(entry.path()).unwrap())
        } else if ft.is_dir() {
            Node::Dir
        } else {
            let meta = entry.metadata().unwrap();
            let bytes = fs::read(entry.path()).unwrap_or_else(|e| format!("<unreadable: {e}>").into_bytes());
            Node::File { bytes, mtime: (meta.mtime(), meta.mtime_nsec() as u32) }
        };
        out.insert(rel, node);
    }
    out
}

/// How `right` differs from `left`, one line a path; empty when they are equal.
pub fn diff(left_name: &str, left: &Tree, right_name: &str, right: &Tree) -> String {
    let mut out = String::new();
    for (path, node) in left {
        match right.get(path) {
            None => out.push_str(&format!("  only in {left_name}: {path} {node:?}\n")),
            Some(other) if other != node => out
                .push_str(&format!("  differs: {path}\n      {left_name}: {node:?}\n      {right_name}: {other:?}\n")),
            Some(_) => {}
        }
    }
    for (path, node) in right {
        if !left.contains_key(path) {
            out.push_str(&format!("  only in {right_name}: {path} {node:?}\n"));
        }
    }
    out
}

/// Whether a store path belongs on the replica: not what is in a `tmp/` folder, not Dovecot's
/// caches (the default `ignore`), not its dotlocks and temporary files.
pub fn replicable(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let name = parts[parts.len() - 1];
    let in_tmp = parts[..parts.len() - 1].contains(&"tmp");
    let cache = ["dovecot.index", "dovecot.list.index", "dovecot.mailbox.log"].iter().any(|c| name.starts_with(c));
    let transient = name.ends_with(".lock") || name.starts_with("temp.");
    !in_tmp && !cache && !transient
}

/// An RFC 5322 message of about `size` bytes (at least the headers), LF line ends as Dovecot
/// stores them.
pub fn message(subject: &str, size: usize) -> Vec<u8> {
    let mut text = format!(
        "Return-Path: <bob@example.org>\nDelivered-To: alice@example.org\nFrom: Bob <bob@example.org>\n\
         To: Alice <alice@example.org>\nSubject: {subject}\nMessage-ID: <{subject}@example.org>\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\n\n"
    );
    let mut line = 0;
    while text.len() < size {
        text.push_str(&format!("Line {line} of {subject}: the quick brown fox jumps over the lazy dog.\n"));
        line += 1;
    }
    text.into_bytes()
}

/// Dovecot's unique name for the `n`th message of a test with these bytes:
/// `<time>.M<usecs>P<pid>.mx,S=<size>,W=<size with CRLF>`.
pub fn unique(n: u32, bytes: &[u8]) -> String {
    let crlf = bytes.len() + bytes.iter().filter(|b| **b == b'\n').count();
    format!("{}.M{}P{}.mx,S={},W={crlf}", RECEIVED + i64::from(n), 100_000 + n * 7919, 4500 + n, bytes.len())
}

/// The received date a message name starts with (its mtime in the store).
fn received(name: &str) -> i64 {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.split('.').next().and_then(|t| t.parse().ok()).unwrap_or(RECEIVED)
}

impl MailEnv {
    /// A store holding nothing yet, and a config with `[mail] store` and the directory replica
    /// "backup" (which does not exist yet: the first run creates it).
    pub fn new() -> MailEnv {
        MailEnv::with_config("", "")
    }

    /// [`MailEnv::new`] with more lines in `[mail]` and in `[[mail.replica]]`.
    pub fn with_config(mail_extra: &str, replica_extra: &str) -> MailEnv {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let env = MailEnv {
            store: root.join("vmail"),
            replica: root.join("backup"),
            state: root.join("state"),
            home: root.join("home"),
            config: root.join("pairsync.toml"),
            root,
            _tmp: tmp,
        };
        fs::create_dir_all(&env.store).unwrap();
        fs::create_dir_all(&env.home).unwrap();
        env.write_config(mail_extra, replica_extra);
        env
    }

    /// Rewrites the config file: `[mail]` with the store and `mail_extra`, one replica.
    pub fn write_config(&self, mail_extra: &str, replica_extra: &str) {
        let text = format!(
            "# written by tests/mail.rs\n[mail]\nstore = \"{}\"\n{mail_extra}\n\n[[mail.replica]]\nname = \"backup\"\n\
             type = \"directory\"\ndirectory = \"{}\"\n{replica_extra}\n",
            self.store.display(),
            self.replica.display()
        );
        fs::write(&self.config, text).unwrap();
    }

    /// The default sync log, `<state dir>/mail/log`.
    pub fn sync_log(&self) -> PathBuf {
        self.state.join("mail").join("log")
    }

    /// `<sync log>-run`.
    pub fn sync_log_run(&self) -> PathBuf {
        self.state.join("mail").join("log-run")
    }

    /// A mailbox folder relative to the store: `alice/Maildir` (folder "") or
    /// `alice/Maildir/.Sent` (folder ".Sent").
    pub fn folder(user: &str, folder: &str) -> String {
        if folder.is_empty() {
            format!("{user}/Maildir")
        } else {
            format!("{user}/Maildir/{folder}")
        }
    }

    /// Makes a mailbox in the store as Dovecot does: cur/, new/, tmp/, and `maildirfolder` in
    /// a Maildir++ folder. Returns its folder relative to the store.
    pub fn mailbox(&self, user: &str, folder: &str) -> String {
        let rel = MailEnv::folder(user, folder);
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(self.store.join(&rel).join(sub)).unwrap();
        }
        if !folder.is_empty() && !self.store.join(&rel).join("maildirfolder").exists() {
            fs::write(self.store.join(&rel).join("maildirfolder"), b"").unwrap();
        }
        rel
    }

    /// Delivers a message file into a mailbox (made if needed): `name` is `new/<unique>` or
    /// `cur/<unique>:2,<flags>`; its mtime is the received date its name starts with. Returns
    /// its path relative to the store.
    pub fn deliver(&self, user: &str, folder: &str, name: &str, bytes: &[u8]) -> String {
        let rel = format!("{}/{name}", self.mailbox(user, folder));
        self.put_at(&rel, bytes, received(name));
        rel
    }

    /// Writes any file of the store, making its folders, with this mtime.
    pub fn put_at(&self, rel: &str, bytes: &[u8], mtime: i64) {
        let full = self.store.join(rel);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, bytes).unwrap();
        filetime::set_file_mtime(&full, filetime::FileTime::from_unix_time(mtime, 0)).unwrap();
    }

    /// Writes any file of the store, making its folders (mtime: now).
    pub fn put(&self, rel: &str, bytes: &[u8]) {
        let full = self.store.join(rel);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, bytes).unwrap();
    }

    /// Renames in the store, as Dovecot does (one rename(2): same inode, same mtime).
    pub fn mv(&self, from: &str, to: &str) {
        fs::create_dir_all(self.store.join(to).parent().unwrap()).unwrap();
        fs::rename(self.store.join(from), self.store.join(to)).unwrap();
    }

    pub fn rm(&self, rel: &str) {
        let full = self.store.join(rel);
        if full.is_dir() {
            fs::remove_dir_all(full).unwrap();
        } else {
            fs::remove_file(full).unwrap();
        }
    }

    /// Appends raw text to a file (a sync log written by hand).
    pub fn append(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    /// The replica's inode of `rel`.
    #[track_caller]
    pub fn replica_ino(&self, rel: &str) -> u64 {
        fs::symlink_metadata(self.replica.join(rel))
            .unwrap_or_else(|e| panic!("replica {rel}: {e}\n{}", self.trees()))
            .ino()
    }

    pub fn on_replica(&self, rel: &str) -> bool {
        self.replica.join(rel).symlink_metadata().is_ok()
    }

    pub fn in_store(&self, rel: &str) -> bool {
        self.store.join(rel).symlink_metadata().is_ok()
    }

    pub fn store_tree(&self) -> Tree {
        tree(&self.store)
    }

    pub fn replica_tree(&self) -> Tree {
        tree(&self.replica)
    }

    /// What the replica must hold: the store without what is never replicated.
    pub fn expected_replica(&self) -> Tree {
        self.store_tree().into_iter().filter(|(path, _)| replicable(path)).collect()
    }

    /// Both trees and how the replica differs from what the store says it should hold.
    pub fn trees(&self) -> String {
        let differences = diff("store", &self.expected_replica(), "replica", &self.replica_tree());
        format!(
            "--- store tree\n{:#?}\n--- replica tree\n{:#?}\n--- replica vs store (caches and tmp/ files left out)\n{}",
            self.store_tree(),
            self.replica_tree(),
            if differences.is_empty() { "  (no difference)\n".to_string() } else { differences }
        )
    }

    /// The replica holds exactly the store's replicable files, byte for byte and mtime for
    /// mtime, and its folders.
    #[track_caller]
    pub fn assert_replica_mirrors_store(&self, after: &Run) {
        let differences = diff("store", &self.expected_replica(), "replica", &self.replica_tree());
        assert!(differences.is_empty(), "the replica is not the store\n{after}\n{differences}\n{}", self.trees());
    }

    /// A command for the binary with HOME, XDG and the state folder isolated.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_STATE_HOME", self.home.join("state"))
            .env("PAIRSYNC_STATE_DIR", &self.state)
            .env_remove("PAIRSYNC_CONFIG")
            .current_dir(&self.root);
        command
    }

    /// `pairsync -C <config> mail ARGS...` (global flags such as `-v` go in ARGS: clap takes
    /// them anywhere).
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(Command::new(env!("CARGO_BIN_EXE_pairsync")), args)
    }

    /// [`MailEnv::run`] through another program (`setpriv ... pairsync`).
    pub fn run_with(&self, base: Command, args: &[&str]) -> Run {
        let mut command = self.command(base.get_program());
        command.args(base.get_args());
        command.arg("-C").arg(&self.config).arg("mail").args(args);
        let shown = format!("pairsync -C {} mail {}", self.config.display(), args.join(" "));
        let out = command.output().unwrap();
        Run {
            command: shown,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `pairsync ARGS...` with no config flag and no `mail` (for a config without [mail]).
    pub fn run_raw(&self, args: &[&str]) -> Run {
        let out = self.command(env!("CARGO_BIN_EXE_pairsync")).args(args).output().unwrap();
        Run {
            command: format!("pairsync {}", args.join(" ")),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `pairsync -C <config> mail ARGS...` in the background, output piped.
    pub fn spawn(&self, args: &[&str]) -> Background {
        let child = self
            .command(env!("CARGO_BIN_EXE_pairsync"))
            .arg("-C")
            .arg(&self.config)
            .arg("mail")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Background {
            child: Some(child),
            what: format!("pairsync mail {}", args.join(" ")),
            stderr: None,
            seen: Vec::new(),
        }
    }

    /// Asserts the exit code, printing the run and both trees if it differs.
    #[track_caller]
    pub fn expect(&self, run: &Run, code: i32) {
        assert_eq!(run.code, code, "\n{run}\n{}", self.trees());
    }

    /// Runs `mail ARGS...`, which must exit 0.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        self.expect(&run, 0);
        run
    }
}

/// A run of the binary in the background; killed (by its id) if a test drops it running.
pub struct Background {
    child: Option<Child>,
    what: String,
    /// Its stderr lines, read by a thread once [`Background::wait_for_stderr`] was called.
    stderr: Option<std::sync::mpsc::Receiver<String>>,
    seen: Vec<String>,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` to the run, by its id.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, by its id, with integer arguments.
        let sent = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "kill {}: {}", self.pid(), std::io::Error::last_os_error());
    }

    /// Waits (at most `limit`) for a line of stderr holding `needle`.
    #[track_caller]
    pub fn wait_for_stderr(&mut self, needle: &str, limit: Duration) {
        if self.stderr.is_none() {
            let pipe = self.child.as_mut().expect("running").stderr.take().expect("stderr piped");
            let (send, receive) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)).map_while(Result::ok) {
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
            self.stderr = Some(receive);
        }
        let started = Instant::now();
        while !self.seen.iter().any(|line| line.contains(needle)) {
            let left = limit.checked_sub(started.elapsed()).unwrap_or_default();
            match self.stderr.as_ref().unwrap().recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    panic!("{}: no {needle:?} on stderr within {limit:?}; it printed {:#?}", self.what, self.seen)
                }
            }
        }
    }

    /// Waits (at most 60 s, then kills it and fails) for the run to end; what it printed.
    #[track_caller]
    pub fn finish(mut self) -> Run {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let mut in_time = true;
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                in_time = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        let mut stderr: String = self.seen.iter().map(|l| format!("{l}\n")).collect();
        if let Some(lines) = self.stderr.take() {
            stderr.extend(lines.try_iter().map(|l| format!("{l}\n")));
        }
        stderr.push_str(&String::from_utf8_lossy(&out.stderr));
        let run = Run {
            command: self.what.clone(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        };
        assert!(in_time, "did not exit within 60 s; killed\n{run}");
        run
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `done` every 10 ms until it holds; panics naming `what` after `limit`.
#[track_caller]
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "gave up waiting {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The binary run so that root loses its power to read any file (tests may run as root):
/// as tests/cli.rs does it.
pub fn without_read_override() -> Command {
    let me = tempfile::tempfile().unwrap().metadata().unwrap();
    if me.uid() != 0 {
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

/// True when this process runs as root.
pub fn is_root() -> bool {
    tempfile::tempfile().unwrap().metadata().unwrap().uid() == 0
}
