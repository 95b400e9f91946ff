//! A real Dovecot as a test peer for the mail tests, with no daemon: a temp mail store, a private
//! `dovecot.conf`, deliveries through `dovecot-lda` and changes through `doveadm`, plus helpers to
//! read a store or replica folder back as a tree and explain how two trees differ.
//!
//! How Dovecot runs without its daemons (../shared/mail/dovecot-test-notes.md): `dovecot-lda -d`
//! and `doveadm -u` ask the auth daemon for the user, so instead every command runs *as* the
//! store's owner with `USER=<mail user>` and `HOME=<store>/<mail user>` in a cleared environment
//! and `-c <private dovecot.conf>`; Dovecot then acts on that one user and `mail_location =
//! maildir:~/Maildir` finds the Maildir. As root (CI) the owner is the system account
//! [`MAIL_ACCOUNT`] (made once per machine, under a lock) and commands run through `setpriv
//! --reuid --regid --clear-groups`; as anyone else the owner is the current user and commands run
//! directly. Every failed command panics with the command line (shell-pasteable), its exit
//! status, stdout, stderr and the tail of the Dovecot log.
//!
//! Skip policy: a test starts with `if Dovecot::skip() { return; }`. Without dovecot-core that
//! prints "skipped: dovecot-core not installed" and the test passes, unless
//! `PAIRSYNC_TEST_DOVECOT=1` (set by `.ci/run`), which makes it a failure, so CI cannot
//! silently skip the mail tests.
//!
//! Layout of a [`Store`]'s temp folder (0755, owned by the store's owner):
//! `store/` the mail store ([`Store::root`], `store/<user>/Maildir`), `etc/dovecot.conf`,
//! `log/dovecot.log`, `run/` (Dovecot's `base_dir`). Only `store/` is what a replicator sees.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Set to `1` (CI) to make a missing Dovecot a failure; unset, empty or `0` to let tests skip.
pub const REQUIRE_VARIABLE: &str = "PAIRSYNC_TEST_DOVECOT";
/// Debian's `dovecot-core` paths.
pub const LDA: &str = "/usr/lib/dovecot/dovecot-lda";
pub const DOVEADM: &str = "/usr/bin/doveadm";
/// The system account that owns test stores when the tests run as root.
pub const MAIL_ACCOUNT: &str = "pairsync-vmail";
/// The PATH Dovecot's tools run with (the environment is cleared).
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// Log lines shown when a command fails.
const LOG_TAIL_LINES: usize = 30;

/// Whether the tests can (or must) use Dovecot.
pub struct Dovecot;

impl Dovecot {
    /// Debian's dovecot-core binaries are installed.
    pub fn available() -> bool {
        [LDA, DOVEADM].iter().all(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
    }

    /// `PAIRSYNC_TEST_DOVECOT` asks for Dovecot. Panics on a value other than unset, "", "0" or
    /// "1", so that a typo in CI fails instead of skipping.
    pub fn required() -> bool {
        required_by(std::env::var(REQUIRE_VARIABLE).ok().as_deref())
    }

    /// At the top of every Dovecot test: `if Dovecot::skip() { return; }`. True (after printing
    /// "skipped: dovecot-core not installed") when Dovecot is missing and not required; panics
    /// when it is missing and `PAIRSYNC_TEST_DOVECOT=1`.
    pub fn skip() -> bool {
        let required = Dovecot::required();
        if Dovecot::available() {
            return false;
        }
        if required {
            panic!(
                "{REQUIRE_VARIABLE}=1 but dovecot-core is not installed ({LDA} or {DOVEADM} missing): \
                 `apt-get install dovecot-core` (.ci/run does)"
            );
        }
        eprintln!("skipped: dovecot-core not installed");
        true
    }
}

/// The decision behind [`Dovecot::required`], for a value of `PAIRSYNC_TEST_DOVECOT`.
pub fn required_by(value: Option<&str>) -> bool {
    match value {
        None | Some("") | Some("0") => false,
        Some("1") => true,
        Some(other) => panic!("{REQUIRE_VARIABLE}={other:?}: expected 1 (Dovecot required) or 0/unset (may skip)"),
    }
}

/// Who owns a test store and runs Dovecot's tools on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Commands switch to this account with setpriv (the tests run as root).
    pub switch: bool,
}

impl MailUser {
    /// [`MAIL_ACCOUNT`] when running as root (made if missing), else the current user.
    pub fn get() -> &'static MailUser {
        static USER: OnceLock<MailUser> = OnceLock::new();
        USER.get_or_init(|| {
            // SAFETY: geteuid/getegid have no preconditions.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            if uid != 0 {
                let name = std::env::var("USER").unwrap_or_else(|_| format!("uid {uid}"));
                return MailUser { name, uid, gid, switch: false };
            }
            ensure_account(MAIL_ACCOUNT);
            MailUser {
                name: MAIL_ACCOUNT.to_string(),
                uid: account_id(MAIL_ACCOUNT, "-u"),
                gid: account_id(MAIL_ACCOUNT, "-g"),
                switch: true,
            }
        })
    }
}

/// Makes the system account `name` unless it exists. Safe when several test processes do it at
/// once: they take turns on a lock file, and useradd's "already exists" (exit 9) counts as done.
fn ensure_account(name: &str) {
    if account_exists(name) {
        return;
    }
    let lock_path = std::env::temp_dir().join(format!("{name}.useradd.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
    lock.lock().unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    if !account_exists(name) {
        let mut command = Command::new("useradd");
        command.args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]);
        let out = command.output().unwrap_or_else(|e| panic!("run useradd (package passwd): {e}"));
        if !out.status.success() && out.status.code() != Some(9) {
            panic!("cannot make the mail account:\n{}", Output::new(shell_line(&command, None), out, ""));
        }
    }
    drop(lock);
}

fn account_exists(name: &str) -> bool {
    Command::new("id").args(["-u", name]).output().is_ok_and(|o| o.status.success())
}

/// `id FLAG NAME` as a number.
fn account_id(name: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap_or_else(|e| panic!("run id: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {flag} {name}: {}", String::from_utf8_lossy(&out.stderr).trim()))
}

/// What one failed command did, rendered for a panic message.
struct Output {
    line: String,
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    log: String,
}

impl Output {
    fn new(line: String, out: std::process::Output, log: &str) -> Output {
        Output {
            line,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            log: log.to_string(),
        }
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\n--- stdout\n{}--- stderr\n{}",
            self.line, self.status, self.stdout, self.stderr
        )?;
        if !self.log.is_empty() {
            write!(f, "--- dovecot log (last {LOG_TAIL_LINES} lines)\n{}", self.log)?;
        }
        write!(f, "---")
    }
}

/// A mail store in a temp folder, its private Dovecot configuration, and the commands that
/// change it. Removed when dropped.
pub struct Store {
    _tmp: tempfile::TempDir,
    /// The temp folder: `store/`, `etc/`, `log/`, `run/`.
    pub dir: PathBuf,
    /// The mail store: `<root>/<user>/Maildir`.
    pub root: PathBuf,
    pub conf: PathBuf,
    pub log: PathBuf,
    pub owner: MailUser,
}

impl Store {
    /// An empty store with its own `dovecot.conf`. Panics when Dovecot is missing: call
    /// [`Dovecot::skip`] first.
    pub fn new() -> Store {
        assert!(
            Dovecot::available(),
            "dovecot-core is not installed: start the test with `if Dovecot::skip() {{ return; }}`"
        );
        let owner = MailUser::get().clone();
        if owner.switch {
            assert!(
                Path::new("/usr/bin/setpriv").exists() || Path::new("/bin/setpriv").exists(),
                "setpriv (util-linux) is needed to run Dovecot as {MAIL_ACCOUNT}"
            );
        }
        let tmp = tempfile::Builder::new()
            .prefix("pairsync-dovecot-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp folder for a mail store: {e}"));
        let dir = tmp.path().canonicalize().unwrap_or_else(|e| panic!("canonicalize {}: {e}", tmp.path().display()));
        assert_traversable(&dir, &owner);
        let store = Store {
            root: dir.join("store"),
            conf: dir.join("etc/dovecot.conf"),
            log: dir.join("log/dovecot.log"),
            dir,
            owner,
            _tmp: tmp,
        };
        for sub in ["store", "etc", "log", "run"] {
            let path = store.dir.join(sub);
            std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        }
        std::fs::write(&store.conf, store.config()).unwrap_or_else(|e| panic!("write {}: {e}", store.conf.display()));
        std::fs::write(&store.log, "").unwrap_or_else(|e| panic!("write {}: {e}", store.log.display()));
        // Everything but etc/ belongs to the owner (Dovecot writes there); all of it stays readable.
        for path in
            [store.dir.clone(), store.root.clone(), store.dir.join("log"), store.log.clone(), store.dir.join("run")]
        {
            store.give(&path);
        }
        for path in [&store.dir, &store.root, &store.dir.join("etc"), &store.conf] {
            let mode = if path.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
        }
        store
    }

    /// The private dovecot.conf; each line says why it is there.
    fn config(&self) -> String {
        let (uid, gid) = (self.owner.uid, self.owner.gid);
        let d = self.dir.display();
        format!(
            "# pairsync test store: Dovecot's tools run as uid {uid} with USER/HOME set, no daemon.\n\
             # Found by trying (Dovecot 2.3.19): only mail_location, the lda_ and log lines are needed\n\
             # by the tools, and first_valid_gid when the gid is 0; the rest is insurance.\n\
             # HOME is <store>/<user>.\n\
             mail_location = maildir:~/Maildir\n\
             # Without it `dovecot-lda -m Sent` saves to INBOX when Sent does not exist (exit 0).\n\
             lda_mailbox_autocreate = yes\n\
             lda_mailbox_autosubscribe = yes\n\
             # The default log is syslog, where a failed delivery's reason would be lost (doveadm\n\
             # prints its own errors on stderr).\n\
             log_path = {d}/log/dovecot.log\n\
             info_log_path = {d}/log/dovecot.log\n\
             debug_log_path = {d}/log/dovecot.log\n\
             # Dovecot refuses to run with gid 0 (\"User is missing GID\") unless allowed.\n\
             first_valid_gid = {gid}\n\
             # Runtime files here, not in /run/dovecot; and no stats-writer connection, which doveadm\n\
             # otherwise makes to /run/dovecot/stats-writer (a running system Dovecot's socket).\n\
             base_dir = {d}/run\n\
             stats_writer_socket_path =\n\
             # No services and no TLS: a `dovecot -c` on this file would not listen either.\n\
             protocols =\n\
             ssl = no\n"
        )
    }

    /// `<root>/<user>/Maildir`, made (owned by the store's owner) if missing. Idempotent.
    pub fn user(&self, user: &str) -> PathBuf {
        assert!(
            !user.is_empty() && !user.contains('/') && user != "." && user != "..",
            "user {user:?}: not a folder name"
        );
        let home = self.root.join(user);
        let maildir = home.join("Maildir");
        std::fs::create_dir_all(&maildir).unwrap_or_else(|e| panic!("mkdir {}: {e}", maildir.display()));
        self.give(&home);
        self.give(&maildir);
        maildir
    }

    /// `<root>/<user>`: the user's HOME.
    pub fn home(&self, user: &str) -> PathBuf {
        self.root.join(user)
    }

    /// The Maildir++ folder of `mailbox`: the Maildir itself for INBOX, else `Maildir/.<name>`
    /// (hierarchy separator '.', so `Work.2024` is `.Work.2024`). ASCII names only: Dovecot
    /// stores others in modified UTF-7.
    pub fn mailbox_dir(&self, user: &str, mailbox: &str) -> PathBuf {
        let maildir = self.root.join(user).join("Maildir");
        if mailbox.eq_ignore_ascii_case("INBOX") {
            return maildir;
        }
        assert!(mailbox.is_ascii(), "mailbox {mailbox:?}: non-ASCII names are stored in modified UTF-7");
        maildir.join(format!(".{}", mailbox.replace('&', "&-")))
    }

    /// A deterministic RFC 5322 message whose body is exactly `body_size` bytes (lines of 72
    /// characters, LF endings, content derived from `subject`). Dovecot stores it byte for byte.
    pub fn message(&self, subject: &str, body_size: usize) -> Vec<u8> {
        message(subject, body_size)
    }

    /// Delivers `message` with `dovecot-lda` to `mailbox` (INBOX when `None`; made if missing)
    /// of `user` (made if missing). Returns the path of the new message file.
    pub fn deliver(&self, user: &str, mailbox: Option<&str>, message: &[u8]) -> PathBuf {
        self.user(user);
        let folder = self.mailbox_dir(user, mailbox.unwrap_or("INBOX"));
        let before = message_files(&folder);
        let mut args = vec!["-c", self.conf.to_str().unwrap()];
        if let Some(mailbox) = mailbox {
            args.extend(["-m", mailbox]);
        }
        self.run(user, LDA, &args, Some(message));
        let added: Vec<PathBuf> = message_files(&folder).difference(&before).cloned().collect();
        match &added[..] {
            [one] => one.clone(),
            _ => panic!(
                "delivery to {user} {}: expected one new file in {}, found {added:?}\n--- dovecot log\n{}",
                mailbox.unwrap_or("INBOX"),
                folder.display(),
                self.log_tail()
            ),
        }
    }

    /// `doveadm -c CONF ARGS...` as `user`; returns stdout.
    pub fn doveadm(&self, user: &str, args: &[&str]) -> String {
        let mut all = vec!["-c", self.conf.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run(user, DOVEADM, &all, None)
    }

    /// `doveadm flags add FLAGS mailbox MAILBOX SEARCH`. `flags` is space separated (`\Seen
    /// $Label1`); `search` is a doveadm search query (`all`, `uid 3`, `subject alpha`, `"a b"`
    /// quotes one word).
    pub fn flags_add(&self, user: &str, mailbox: &str, search: &str, flags: &str) -> String {
        self.with_search(user, &["flags", "add", flags, "mailbox", mailbox], search)
    }

    pub fn flags_remove(&self, user: &str, mailbox: &str, search: &str, flags: &str) -> String {
        self.with_search(user, &["flags", "remove", flags, "mailbox", mailbox], search)
    }

    pub fn expunge(&self, user: &str, mailbox: &str, search: &str) -> String {
        self.with_search(user, &["expunge", "mailbox", mailbox], search)
    }

    /// `doveadm copy TO mailbox FROM SEARCH` (Dovecot hard-links the file into `to`).
    pub fn copy(&self, user: &str, from: &str, to: &str, search: &str) -> String {
        self.with_search(user, &["copy", to, "mailbox", from], search)
    }

    /// `doveadm move TO mailbox FROM SEARCH` (a hard link into `to`, then an unlink: same inode).
    pub fn move_(&self, user: &str, from: &str, to: &str, search: &str) -> String {
        self.with_search(user, &["move", to, "mailbox", from], search)
    }

    pub fn mailbox_create(&self, user: &str, name: &str) -> String {
        self.doveadm(user, &["mailbox", "create", name])
    }

    /// One rename(2) of the folder (and of its children).
    pub fn mailbox_rename(&self, user: &str, from: &str, to: &str) -> String {
        self.doveadm(user, &["mailbox", "rename", from, to])
    }

    /// Deletes the mailbox with its messages.
    pub fn mailbox_delete(&self, user: &str, name: &str) -> String {
        self.doveadm(user, &["mailbox", "delete", name])
    }

    /// `doveadm -o maildir_empty_new=yes force-resync MAILBOX`: moves new/ to cur/ (keeping
    /// inodes), as an IMAP login would; plain doveadm never does.
    pub fn force_resync(&self, user: &str, mailbox: &str) -> String {
        self.doveadm(user, &["-o", "maildir_empty_new=yes", "force-resync", mailbox])
    }

    /// `doveadm fetch FIELDS mailbox MAILBOX all` as doveadm prints it (`field: value` lines,
    /// messages separated by a form feed line), e.g. fields `uid flags hdr.subject`. Flags include
    /// `\Recent` while no session has claimed the message. Panics if the mailbox does not exist
    /// (doveadm fetch itself prints nothing and exits 0 then).
    pub fn fetch(&self, user: &str, mailbox: &str, fields: &str) -> String {
        let out = self.doveadm(user, &["fetch", fields, "mailbox", mailbox, "all"]);
        if out.is_empty() {
            self.assert_mailbox_exists(user, mailbox);
        }
        out
    }

    /// [`Store::fetch`] as rows (`-f tab`): one map field -> value per message, in UID order.
    pub fn fetch_rows(&self, user: &str, mailbox: &str, fields: &str) -> Vec<BTreeMap<String, String>> {
        let out = self.doveadm(user, &["-f", "tab", "fetch", fields, "mailbox", mailbox, "all"]);
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
        let rows: Vec<BTreeMap<String, String>> = lines
            .map(|line| header.iter().zip(line.split('\t')).map(|(k, v)| (k.to_string(), v.to_string())).collect())
            .collect();
        if rows.is_empty() {
            self.assert_mailbox_exists(user, mailbox);
        }
        rows
    }

    /// `doveadm mailbox list` as names, sorted.
    pub fn mailboxes(&self, user: &str) -> Vec<String> {
        let mut names: Vec<String> = self.doveadm(user, &["mailbox", "list"]).lines().map(str::to_string).collect();
        names.sort();
        names
    }

    fn assert_mailbox_exists(&self, user: &str, mailbox: &str) {
        // Fails (and panics with Dovecot's "Mailbox doesn't exist") for a missing mailbox.
        self.doveadm(user, &["mailbox", "status", "messages", mailbox]);
    }

    /// Hands `path` (and everything under it) to the store's owner: files restored by root must
    /// be, before Dovecot can update them. Nothing to do when the tests do not run as root.
    pub fn chown_to_mail_user(&self, path: &Path) {
        if !self.owner.switch {
            return;
        }
        for entry in walkdir::WalkDir::new(path).follow_links(false) {
            let entry = entry.unwrap_or_else(|e| panic!("walk {}: {e}", path.display()));
            self.give(entry.path());
        }
    }

    /// lchown of one path to the owner (as root only).
    fn give(&self, path: &Path) {
        if self.owner.switch {
            std::os::unix::fs::lchown(path, Some(self.owner.uid), Some(self.owner.gid))
                .unwrap_or_else(|e| panic!("chown {} to {}: {e}", path.display(), self.owner.name));
        }
    }

    /// The last lines of the Dovecot log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})\n", self.log.display()));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].iter().map(|l| format!("{l}\n")).collect()
    }

    fn with_search(&self, user: &str, args: &[&str], search: &str) -> String {
        let words = search_words(search);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(words.iter().map(String::as_str));
        self.doveadm(user, &all)
    }

    /// Runs `program ARGS` as the store's owner for `user` (USER, HOME; nothing else from the
    /// test's environment), feeding `stdin`; returns stdout, panics on failure.
    fn run(&self, user: &str, program: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
        let mut command = if self.owner.switch {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={}", self.owner.uid))
                .arg(format!("--regid={}", self.owner.gid))
                .arg("--clear-groups")
                .arg(program);
            command
        } else {
            Command::new(program)
        };
        command
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("USER", user)
            .env("HOME", self.home(user))
            .current_dir(&self.dir)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let line = shell_line(&command, stdin.map(<[u8]>::len));
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
        let out = std::thread::scope(|scope| {
            if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
                // A writer thread: the child may fill stdout before it reads all of stdin.
                scope.spawn(move || {
                    let _ = pipe.write_all(bytes);
                });
            }
            child.wait_with_output().unwrap_or_else(|e| panic!("wait for {line}: {e}"))
        });
        if !out.status.success() {
            panic!("Dovecot command failed\n{}", Output::new(line, out, &self.log_tail()));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Default for Store {
    fn default() -> Store {
        Store::new()
    }
}

/// The temp folder's ancestors must let the owner through (a TMPDIR under /root would not).
fn assert_traversable(dir: &Path, owner: &MailUser) {
    if !owner.switch {
        return;
    }
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor).map(|m| m.mode()).unwrap_or(0);
        assert!(
            mode & 0o001 != 0,
            "{MAIL_ACCOUNT} cannot reach the store {} through {} (mode {mode:o}): set TMPDIR to a folder under /tmp",
            dir.display(),
            ancestor.display()
        );
    }
}

/// The command as a line a developer can paste into a root shell (`env -i` and the environment).
fn shell_line(command: &Command, stdin_len: Option<usize>) -> String {
    let mut words = vec!["env -i".to_string()];
    words.extend(
        command
            .get_envs()
            .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quote(&v?.to_string_lossy())))),
    );
    words.push(quote(&command.get_program().to_string_lossy()));
    words.extend(command.get_args().map(|a| quote(&a.to_string_lossy())));
    let mut line = words.join(" ");
    if let Some(n) = stdin_len {
        let _ = write!(line, " < message ({n} bytes)");
    }
    line
}

fn quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Splits a doveadm search query into arguments: words separated by spaces, `"..."` keeps
/// spaces inside one word.
pub fn search_words(search: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut word, mut quoted, mut any) = (String::new(), false, false);
    for c in search.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    assert!(!quoted, "search {search:?}: unbalanced quote");
    if any {
        words.push(word);
    }
    assert!(!words.is_empty(), "empty search: use \"all\"");
    words
}

/// See [`Store::message`].
pub fn message(subject: &str, body_size: usize) -> Vec<u8> {
    // FNV-1a of the subject: different subjects get different bodies and Message-IDs.
    let seed = subject.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut out = format!(
        "From: Sender <sender@example.org>\n\
         To: Recipient <recipient@example.org>\n\
         Subject: {subject}\n\
         Date: Mon, 01 Jan 2024 00:00:00 +0000\n\
         Message-ID: <{seed:016x}@pairsync.test>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=us-ascii\n\
         \n"
    )
    .into_bytes();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
    let mut state = seed;
    for i in 0..body_size {
        if i + 1 == body_size || i % 73 == 72 {
            out.push(b'\n');
        } else {
            // xorshift64: cheap, deterministic filler.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(ALPHABET[(state % ALPHABET.len() as u64) as usize]);
        }
    }
    out
}

/// Message files (full paths) in `folder`'s new/ and cur/; empty if it does not exist.
pub fn message_files(folder: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(folder.join(sub)) else { continue };
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("list {}/{sub}: {e}", folder.display()));
            files.insert(entry.path());
        }
    }
    files
}

/// The inode number of `path` (not following a symlink).
pub fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).ino()
}

/// Relative path -> (content, mtime in seconds): the regular files of a store or replica folder.
pub type Tree = BTreeMap<String, (Vec<u8>, i64)>;

/// File names not worth replicating (the `[mail] ignore` default): Dovecot's caches.
pub fn ignored(name: &str) -> bool {
    ["dovecot.index", "dovecot.list.index", "dovecot.mailbox.log"].iter().any(|p| name.starts_with(p))
}

/// The regular files under `root` (symlinks and folders are not listed), without the contents
/// of Maildir tmp/ folders and without [`ignored`] caches.
pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let entry = entry.unwrap_or_else(|e| panic!("walk {}: {e}", root.display()));
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let in_tmp = path.parent().and_then(Path::file_name).is_some_and(|n| n == "tmp");
        if in_tmp || ignored(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let content = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mtime = entry.metadata().unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).mtime();
        out.insert(rel, (content, mtime));
    }
    out
}

/// How `b` differs from `a`, one line per path; empty when they are the same. A path only in
/// `a` is "missing", only in `b` "extra"; a missing file whose bytes `b` has under another name
/// says so (a rename that was not replicated as one).
pub fn diff(a: &Tree, b: &Tree) -> String {
    let mut out = String::new();
    for (path, (content, mtime)) in a {
        match b.get(path) {
            None => {
                let twin = b.iter().find(|(p, (c, _))| !a.contains_key(*p) && c == content).map(|(p, _)| p);
                let _ = match twin {
                    Some(other) => {
                        writeln!(out, "missing: {path} ({} bytes; b has the same bytes at {other})", content.len())
                    }
                    None => writeln!(out, "missing: {path} ({} bytes)", content.len()),
                };
            }
            Some((other, other_mtime)) => {
                if other != content {
                    let at =
                        content.iter().zip(other).position(|(x, y)| x != y).unwrap_or(content.len().min(other.len()));
                    let _ = writeln!(
                        out,
                        "content: {path}: {} bytes vs {} bytes, first difference at byte {at}",
                        content.len(),
                        other.len()
                    );
                }
                if other_mtime != mtime {
                    let _ = writeln!(out, "mtime: {path}: {mtime} vs {other_mtime} ({:+} s)", other_mtime - mtime);
                }
            }
        }
    }
    for (path, (content, _)) in b {
        if !a.contains_key(path) {
            let _ = writeln!(out, "extra: {path} ({} bytes)", content.len());
        }
    }
    out
}

/// Asserts that the trees under `expected` and `actual` hold the same files, bytes and mtimes,
/// explaining every difference.
#[track_caller]
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let d = diff(&tree(expected), &tree(actual));
    assert!(d.is_empty(), "{} (b) differs from {} (a):\n{d}", actual.display(), expected.display());
}
