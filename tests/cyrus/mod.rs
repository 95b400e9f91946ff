//! A private, real Cyrus IMAP 3.6 server for the mail tests: a temp folder with its own
//! `imapd.conf` and `cyrus.conf`, `master` running as the `cyrus` user on free loopback ports,
//! delivery over LMTP, changes over IMAP and ManageSieve, and Cyrus's own tools (`mbpath`,
//! `ctl_mboxlist`, `cyr_expire`, `reconstruct`, ...) on the same configuration.
//!
//! The recipe and what was verified about Cyrus 3.6.1 on Debian 12 (layouts, sync log lines,
//! restore) are in ../shared/mail/cyrus-test-server.md.
//!
//! Skip policy: a test starts with `if Cyrus::skip() { return; }`. Without cyrus-imapd (or not
//! root, or without python3/setpriv) that prints "skipped: ..." and the test passes, unless
//! `PAIRSYNC_TEST_CYRUS=1` (CI), which makes it a failure, so CI cannot silently skip.
//!
//! IMAP and ManageSieve go through `tests/cyrus/imap.py` (python3 stdlib, one JSON request on
//! stdin, one session per call); LMTP is spoken here. Anyone logs in with any password
//! (`sasl_pwcheck_method: alwaystrue`); `cyrus` is the admin. Mailbox names are those the user
//! sees: "INBOX", "INBOX.Sent" ("INBOX/Sent" with `unixhierarchysep`); the admin sees
//! "user.alice.Sent" ([`CyrusServer::admin_name`]); the sync log and `mailboxes.db` use the
//! internal name ([`CyrusServer::internal_name`]). Every failure panics with the command line,
//! its exit status, stdout, stderr (with the IMAP transcript) and the tail of `master.log`
//! (Cyrus's own messages go to syslog, which a container does not have: only what master and
//! its children print reaches `master.log`).
//!
//! Layout of `base()` (0755, owned by cyrus:mail): `imapd.conf`, `cyrus.conf`, `master.log`,
//! `conf/` (configdirectory: mailboxes.db, quota/, user/, sync/), `spool/` (partition-default),
//! `sieve/` (sievedir), `meta/` (metapartition-default, only with `Options::metapartition`),
//! `run/` (pid file, proc, locks, lmtp socket).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Set to `1` (CI) to make a missing Cyrus a failure; unset, empty or `0` to let tests skip.
pub const REQUIRE_VARIABLE: &str = "PAIRSYNC_TEST_CYRUS";
/// Debian's cyrus-common / cyrus-imapd / cyrus-replication binaries.
pub const BIN: &str = "/usr/lib/cyrus/bin";
pub const MASTER: &str = "/usr/lib/cyrus/bin/master";
/// The account Cyrus runs as (made by the Debian package), and the group of its files.
pub const ACCOUNT: &str = "cyrus";
pub const GROUP: &str = "mail";
/// The admin login (`admins: cyrus`).
pub const ADMIN: &str = "cyrus";
/// Any password works.
pub const PASSWORD: &str = "x";
/// The IMAP/ManageSieve helper, driven by JSON on stdin.
pub const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cyrus/imap.py");
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
const SETPRIV: &str = "/usr/bin/setpriv";
const PYTHON: &str = "/usr/bin/python3";
/// `master.log` lines shown when something fails.
const LOG_TAIL_LINES: usize = 30;
/// How long a start (until IMAP, LMTP and ManageSieve answer) or a stop may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Socket reads and writes.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the tests can (or must) use Cyrus.
pub struct Cyrus;

impl Cyrus {
    /// Why a Cyrus server cannot run here, or `None` when it can.
    pub fn unavailable() -> Option<String> {
        let executable = |p: &str| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0);
        if !executable(MASTER) {
            return Some(format!("cyrus-imapd not installed ({MASTER} missing)"));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not root (master must be started as the cyrus user)".to_string());
        }
        if account().is_none() {
            return Some(format!("no {ACCOUNT} account (`id {ACCOUNT}` fails)"));
        }
        for (path, package) in [(SETPRIV, "util-linux"), (PYTHON, "python3")] {
            if !executable(path) {
                return Some(format!("{path} missing (package {package})"));
            }
        }
        None
    }

    /// `PAIRSYNC_TEST_CYRUS` asks for Cyrus. Panics on a value other than unset, "", "0" or "1",
    /// so that a typo in CI fails instead of skipping.
    pub fn required() -> bool {
        required_by(std::env::var(REQUIRE_VARIABLE).ok().as_deref())
    }

    /// At the top of every Cyrus test: `if Cyrus::skip() { return; }`. True (after printing
    /// "skipped: <why>") when Cyrus cannot run and is not required; panics when it cannot run
    /// and `PAIRSYNC_TEST_CYRUS=1`.
    pub fn skip() -> bool {
        let required = Cyrus::required();
        let Some(why) = Cyrus::unavailable() else { return false };
        if required {
            panic!(
                "{REQUIRE_VARIABLE}=1 but no Cyrus server can run: {why} \
                 (`apt-get install cyrus-imapd cyrus-admin cyrus-clients cyrus-replication`, run as root)"
            );
        }
        eprintln!("skipped: {why}");
        true
    }
}

/// The decision behind [`Cyrus::required`], for a value of `PAIRSYNC_TEST_CYRUS`.
pub fn required_by(value: Option<&str>) -> bool {
    match value {
        None | Some("") | Some("0") => false,
        Some("1") => true,
        Some(other) => panic!("{REQUIRE_VARIABLE}={other:?}: expected 1 (Cyrus required) or 0/unset (may skip)"),
    }
}

/// uid of `cyrus`, gid of `mail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// The cyrus account, or `None` when it does not exist.
pub fn account() -> Option<Account> {
    static ACCOUNT_IDS: OnceLock<Option<Account>> = OnceLock::new();
    *ACCOUNT_IDS.get_or_init(|| {
        let id = |args: &[&str]| -> Option<u32> {
            let out = Command::new("id").args(args).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok().filter(|_| out.status.success())
        };
        let gid = Command::new("getent")
            .args(["group", GROUP])
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).split(':').nth(2).and_then(|g| g.trim().parse().ok()))
            .or_else(|| id(&["-g", ACCOUNT]))?;
        Some(Account { uid: id(&["-u", ACCOUNT])?, gid })
    })
}

/// How to configure a server; `Options::default()` is the UUID layout, hashed spool, one
/// unnamed sync log, no ManageSieve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `mailbox_legacy_dirs: yes`: new mailboxes in the name-based layout (`spool/a/user/alice/`)
    /// instead of `spool/uuid/<u0>/<u1>/<uniqueid>/`.
    pub legacy_dirs: bool,
    /// `hashimapspool` (legacy layout only: `spool/a/user/alice` vs `spool/user/alice`). Default true.
    pub hashimapspool: bool,
    /// `fulldirhash: yes`: legacy hash letters A..W instead of the first letter.
    pub fulldirhash: bool,
    /// `sync_log_channels:` verbatim, e.g. `pairsync ""` (both `sync/pairsync/log` and
    /// `sync/log`) or `pairsync` (only `sync/pairsync/log`). `None`: only `sync/log`.
    pub channels: Option<String>,
    /// Run timsieved (ManageSieve) on a loopback port: needed by the `sieve_*` methods.
    pub sieve: bool,
    /// `allowusermoves: yes` (renaming `user.bob` to `user.robert`).
    pub allow_user_moves: bool,
    /// `metapartition-default: <base>/meta` and `metapartition_files:` [`META_FILES`].
    pub metapartition: bool,
    /// `unixhierarchysep: yes`: '/' separates folders ("INBOX/Sent", admin "user/alice/Sent").
    pub unixhierarchysep: bool,
}

/// `metapartition_files` with [`Options::metapartition`]: every value Cyrus 3.6 accepts.
pub const META_FILES: &str = "header index cache expunge squat annotations lock dav archivecache";

impl Default for Options {
    fn default() -> Options {
        Options {
            legacy_dirs: false,
            hashimapspool: true,
            fulldirhash: false,
            channels: None,
            sieve: false,
            allow_user_moves: false,
            metapartition: false,
            unixhierarchysep: false,
        }
    }
}

/// One message as `UID FETCH (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])` after EXAMINE
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub uid: u32,
    /// Sorted, without `\Recent`.
    pub flags: Vec<String>,
    /// As the server prints it: `01-Jan-2024 00:00:00 +0000`.
    pub internaldate: String,
    pub size: u64,
    /// The whole message, byte for byte as Cyrus stores it. LMTP delivery prepends
    /// `Return-Path:`, `Received:`, `X-Cyrus-Session-Id:` and `X-Sieve:` to what was sent
    /// (`body.ends_with(&sent)`); APPEND stores the bytes as given.
    pub body: Vec<u8>,
}

impl Msg {
    /// The Subject header's value (first line only), if any.
    pub fn subject(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.body);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        head.lines().find_map(|l| l.strip_prefix("Subject: ").map(|s| s.trim_end().to_string()))
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

/// What a command printed; returned by [`CyrusServer::tool_status`] and friends.
pub type Output = std::process::Output;

/// A running (or stopped) private Cyrus server. Stopped and its folder removed when dropped.
pub struct CyrusServer {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    opts: Options,
    account: Account,
    /// Unique per server, shown in the IMAP greeting: proves the port answering is ours.
    servername: String,
    imap_port: u16,
    sieve_port: Option<u16>,
    master: Option<Child>,
}

static SERVERS: AtomicUsize = AtomicUsize::new(0);

impl CyrusServer {
    /// Makes the folders and configuration, starts master as cyrus and waits until IMAP, LMTP
    /// (and ManageSieve) answer. Panics when Cyrus cannot run: call [`Cyrus::skip`] first.
    pub fn start(opts: Options) -> CyrusServer {
        if let Some(why) = Cyrus::unavailable() {
            panic!("cannot start a Cyrus server: {why}; start the test with `if Cyrus::skip() {{ return; }}`");
        }
        let account = account().expect("checked by unavailable()");
        let tmp = tempfile::Builder::new()
            .prefix("pairsync-cyrus-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp folder for a Cyrus server: {e}"));
        let base = tmp.path().canonicalize().unwrap_or_else(|e| panic!("canonicalize {}: {e}", tmp.path().display()));
        assert_traversable(&base);
        // The LMTP socket path must fit in sun_path (108 bytes).
        assert!(
            base.join("run/socket/lmtp").as_os_str().len() < 100,
            "{}: too long for a unix socket path; set TMPDIR to a short folder",
            base.display()
        );
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let servername = format!("pairsync-test-{}-{n}", std::process::id());
        let mut server = CyrusServer {
            _tmp: tmp,
            base,
            sieve_port: opts.sieve.then(free_port),
            imap_port: free_port(),
            opts,
            account,
            servername,
            master: None,
        };
        let mut dirs = vec!["conf/socket", "spool", "sieve", "run/proc", "run/lock", "run/socket"];
        if server.opts.metapartition {
            dirs.push("meta");
        }
        for dir in dirs {
            let path = server.base.join(dir);
            std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        }
        let conf = server.conf();
        std::fs::write(&conf, server.imapd_conf()).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        std::fs::set_permissions(&server.base, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod 755 {}: {e}", server.base.display()));
        server.chown_to_cyrus(&server.base.clone());
        server.launch();
        server
    }

    /// The private imapd.conf; each optional line comes from [`Options`].
    fn imapd_conf(&self) -> String {
        let b = self.base.display();
        let yes = |on: bool| if on { "yes" } else { "no" };
        let mut conf = format!(
            "# pairsync test server (tests/cyrus/mod.rs); recipe: shared/mail/cyrus-test-server.md\n\
             servername: {servername}\n\
             configdirectory: {b}/conf\n\
             partition-default: {b}/spool\n\
             defaultpartition: default\n\
             sievedir: {b}/sieve\n\
             proc_path: {b}/run/proc\n\
             mboxname_lockpath: {b}/run/lock\n\
             lmtpsocket: {b}/run/socket/lmtp\n\
             idlesocket: {b}/run/socket/idle\n\
             notifysocket: {b}/run/socket/notify\n\
             admins: {ADMIN}\n\
             allowplaintext: yes\n\
             # Any user, any password; no user database.\n\
             sasl_pwcheck_method: alwaystrue\n\
             sasl_mech_list: PLAIN\n\
             hashimapspool: {hash}\n\
             unixhierarchysep: {unix}\n\
             altnamespace: no\n\
             lmtp_downcase_rcpt: yes\n\
             sync_log: 1\n\
             sync_shutdown_file: {b}/conf/sync/shutdown\n\
             syslog_prefix: cyrus-test\n\
             mailbox_legacy_dirs: {legacy}\n\
             fulldirhash: {full}\n\
             allowusermoves: {moves}\n",
            servername = self.servername,
            hash = yes(self.opts.hashimapspool),
            unix = yes(self.opts.unixhierarchysep),
            legacy = yes(self.opts.legacy_dirs),
            full = yes(self.opts.fulldirhash),
            moves = yes(self.opts.allow_user_moves),
        );
        if let Some(channels) = &self.opts.channels {
            let _ = writeln!(conf, "sync_log_channels: {channels}");
        }
        if self.opts.metapartition {
            let _ = writeln!(conf, "metapartition-default: {b}/meta\nmetapartition_files: {META_FILES}");
        }
        conf
    }

    /// cyrus.conf with the current ports; no EVENTS, so nothing expires unless a test says so.
    fn cyrus_conf(&self) -> String {
        let (b, conf) = (self.base.display(), self.conf());
        let conf = conf.display();
        let sieve = match self.sieve_port {
            Some(port) => format!("  sieve    cmd=\"timsieved -C {conf}\" listen=\"127.0.0.1:{port}\" prefork=0\n"),
            None => String::new(),
        };
        format!(
            "START {{\n  recover cmd=\"ctl_cyrusdb -r -C {conf}\"\n}}\n\
             SERVICES {{\n\
             \x20 imap     cmd=\"imapd -C {conf}\"     listen=\"127.0.0.1:{imap}\"  prefork=0\n\
             {sieve}\
             \x20 lmtpunix cmd=\"lmtpd -C {conf}\"     listen=\"{b}/run/socket/lmtp\" prefork=0\n\
             }}\nEVENTS {{\n}}\nDAEMON {{\n}}\n",
            imap = self.imap_port,
        )
    }

    /// Writes cyrus.conf, starts master and waits until it serves; picks new ports when another
    /// process took ours between the probe and master's bind.
    fn launch(&mut self) {
        for attempt in 1..=3 {
            let cyrus_conf = self.base.join("cyrus.conf");
            std::fs::write(&cyrus_conf, self.cyrus_conf())
                .unwrap_or_else(|e| panic!("write {}: {e}", cyrus_conf.display()));
            self.give(&cyrus_conf);
            let _ = std::fs::remove_file(self.lmtp_socket());
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.master_log())
                .unwrap_or_else(|e| panic!("open {}: {e}", self.master_log().display()));
            let _ = writeln!(&log, "--- pairsync: starting master (attempt {attempt})");
            let mut command = self.as_cyrus(MASTER);
            command
                .arg("-C")
                .arg(self.conf())
                .arg("-M")
                .arg(&cyrus_conf)
                .arg("-p")
                .arg(self.pid_file())
                .arg("-D")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap_or_else(|e| panic!("dup master.log: {e}")))
                .stderr(log)
                .process_group(0);
            let line = shell_line(&command, None);
            let child = command.spawn().unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
            self.master = Some(child);
            match self.wait_ready(&line) {
                Ready::Yes => return,
                Ready::Stolen(what) => {
                    self.stop_inner(true);
                    assert!(attempt < 3, "{what}, three times: giving up\n{}", self.log_report());
                    self.imap_port = free_port();
                    self.sieve_port = self.opts.sieve.then(free_port);
                }
            }
        }
    }

    fn wait_ready(&mut self, line: &str) -> Ready {
        let started = Instant::now();
        loop {
            if let Some(status) = self.master.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.master = None;
                panic!("Cyrus master exited while starting\ncommand: {line}\nstatus: {status}\n{}", self.log_report());
            }
            let last = match self.probe() {
                Ok(()) => return Ready::Yes,
                Err(Probe::Stolen(what)) => return Ready::Stolen(what),
                Err(Probe::NotYet(why)) => why,
            };
            if started.elapsed() > START_TIMEOUT {
                self.stop_inner(false);
                panic!(
                    "Cyrus master did not serve within {START_TIMEOUT:?} (last: {last})\ncommand: {line}\n{}",
                    self.log_report()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// One readiness check: our IMAP greeting, the LMTP greeting, the ManageSieve greeting.
    fn probe(&self) -> Result<(), Probe> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.imap_port));
        let imap = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .map_err(|e| Probe::NotYet(format!("IMAP {addr}: {e}")))?;
        // Master does not say when a bind fails (it logs to syslog and keeps running): a port
        // that accepts but does not greet, or greets with another servername, is someone else's.
        let greeting = read_greeting(&imap, |l| l.starts_with("* ")).map_err(|e| match e {
            Greeting::Silent(what) => Probe::Stolen(format!("port {}: {what}", self.imap_port)),
            Greeting::Closed(what) => Probe::NotYet(what),
        })?;
        if !greeting.contains(&self.servername) {
            return Err(Probe::Stolen(format!("port {} answers for someone else: {greeting:?}", self.imap_port)));
        }
        let _ = (&imap).write_all(b"x LOGOUT\r\n");
        let lmtp = UnixStream::connect(self.lmtp_socket())
            .map_err(|e| Probe::NotYet(format!("LMTP {}: {e}", self.lmtp_socket().display())))?;
        lmtp.set_read_timeout(Some(IO_TIMEOUT)).ok();
        let mut reader = BufReader::new(&lmtp);
        let mut greeting = String::new();
        reader.read_line(&mut greeting).map_err(|e| Probe::NotYet(format!("LMTP greeting: {e}")))?;
        if !greeting.starts_with("220") {
            return Err(Probe::NotYet(format!("LMTP greeting {greeting:?}")));
        }
        let _ = (&lmtp).write_all(b"QUIT\r\n");
        if let Some(port) = self.sieve_port {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let sieve = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .map_err(|e| Probe::NotYet(format!("ManageSieve {addr}: {e}")))?;
            let greeting = read_greeting(&sieve, |l| l.starts_with("OK")).map_err(|e| match e {
                Greeting::Silent(what) => Probe::Stolen(format!("port {port}: {what}")),
                Greeting::Closed(what) => Probe::NotYet(what),
            })?;
            if !greeting.contains("timsieved") {
                return Err(Probe::Stolen(format!("port {port} answers for someone else: {greeting:?}")));
            }
            let _ = (&sieve).write_all(b"LOGOUT\r\n");
        }
        Ok(())
    }

    /// SIGTERM to master, waits for it and for every process it started. Idempotent.
    pub fn stop(&mut self) {
        self.stop_inner(true);
    }

    /// Stops (if running) and starts again on the same folder and configuration.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Master is running (it has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.master.as_mut() {
            None => false,
            Some(child) => child.try_wait().ok().flatten().is_none(),
        }
    }

    fn stop_inner(&mut self, may_panic: bool) {
        let Some(mut child) = self.master.take() else { return };
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; pid is our child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        let mut failure = None;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() > STOP_TIMEOUT => {
                    // SAFETY: as above; -pid is master's process group.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    let _ = child.wait();
                    failure = Some(format!("Cyrus master (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT:?}: killed"));
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    failure = Some(format!("wait for Cyrus master (pid {pid}): {e}"));
                    break;
                }
            }
        }
        // Master's children (imapd, lmtpd, timsieved) are in its process group; they exit on
        // master's SIGTERM. Nothing may touch the spool after stop() returns.
        let started = Instant::now();
        while group_alive(pid) {
            if started.elapsed() > Duration::from_secs(10) {
                // SAFETY: as above.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                std::thread::sleep(Duration::from_millis(100));
                failure.get_or_insert(format!("processes of master's group {pid} outlived it by 10 s: killed"));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(failure) = failure {
            if may_panic && !std::thread::panicking() {
                panic!("{failure}\n{}", self.log_report());
            }
        }
    }

    // ---- paths

    /// The server's folder.
    pub fn base(&self) -> &Path {
        &self.base
    }
    pub fn options(&self) -> &Options {
        &self.opts
    }
    /// `<base>/imapd.conf`: pass to every Cyrus tool as `-C`.
    pub fn conf(&self) -> PathBuf {
        self.base.join("imapd.conf")
    }
    /// `partition-default`: `<base>/spool`.
    pub fn spool(&self) -> PathBuf {
        self.base.join("spool")
    }
    /// `configdirectory`: `<base>/conf`.
    pub fn config_dir(&self) -> PathBuf {
        self.base.join("conf")
    }
    /// `sievedir`: `<base>/sieve`.
    pub fn sieve_dir(&self) -> PathBuf {
        self.base.join("sieve")
    }
    /// `metapartition-default` (`<base>/meta`) with [`Options::metapartition`].
    pub fn meta_dir(&self) -> Option<PathBuf> {
        self.opts.metapartition.then(|| self.base.join("meta"))
    }
    /// `{configdirectory}/sync/log`, or `sync/<channel>/log` for a named channel. Cyrus makes it
    /// at the first line.
    pub fn sync_log(&self, channel: Option<&str>) -> PathBuf {
        match channel {
            None => self.config_dir().join("sync/log"),
            Some(c) => self.config_dir().join("sync").join(c).join("log"),
        }
    }
    /// The lines of [`CyrusServer::sync_log`]; empty when the file does not exist.
    pub fn sync_log_lines(&self, channel: Option<&str>) -> Vec<String> {
        match std::fs::read_to_string(self.sync_log(channel)) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read {}: {e}", self.sync_log(channel).display()),
        }
    }
    /// `sync_shutdown_file`: `{configdirectory}/sync/shutdown`.
    pub fn shutdown_file(&self) -> PathBuf {
        self.config_dir().join("sync/shutdown")
    }
    pub fn lmtp_socket(&self) -> PathBuf {
        self.base.join("run/socket/lmtp")
    }
    pub fn master_log(&self) -> PathBuf {
        self.base.join("master.log")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.base.join("run/master.pid")
    }
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }
    pub fn sieve_port(&self) -> Option<u16> {
        self.sieve_port
    }
    /// The account master and the tools run as.
    pub fn account(&self) -> Account {
        self.account
    }

    // ---- names

    /// The hierarchy separator clients see: '.' or '/' (`unixhierarchysep`).
    pub fn separator(&self) -> char {
        if self.opts.unixhierarchysep {
            '/'
        } else {
            '.'
        }
    }

    /// `mailbox` of `user` ("INBOX", "INBOX.Sent") as the admin sees it: "user.alice",
    /// "user.alice.Sent" ("user/alice/Sent" with unixhierarchysep).
    pub fn admin_name(&self, user: &str, mailbox: &str) -> String {
        let sep = self.separator();
        let rest = if mailbox.eq_ignore_ascii_case("INBOX") {
            ""
        } else {
            match mailbox.get(..6) {
                Some(head) if head.eq_ignore_ascii_case(&format!("INBOX{sep}")) => &mailbox[5..],
                _ => panic!("{mailbox:?}: not INBOX or below INBOX{sep} (a mailbox name as {user} sees it)"),
            }
        };
        format!("user{sep}{user}{rest}")
    }

    /// The internal name (mailboxes.db, `ctl_mboxlist`, the sync log; not `mbpath` nor
    /// `reconstruct`, which take [`CyrusServer::admin_name`]):
    /// "user.alice.Sent"; with unixhierarchysep a '.' inside a name becomes '^'
    /// ("user.john^doe"). ASCII names only.
    pub fn internal_name(&self, user: &str, mailbox: &str) -> String {
        let admin = self.admin_name(user, mailbox);
        if self.opts.unixhierarchysep {
            admin.split('/').map(|c| c.replace('.', "^")).collect::<Vec<_>>().join(".")
        } else {
            admin
        }
    }

    // ---- Cyrus tools

    /// `<BIN>/<name> -C <conf> ARGS...` as cyrus; whatever it does.
    pub fn tool_status(&self, name: &str, args: &[&str]) -> Output {
        self.run_tool(name, args, None).1
    }

    /// [`CyrusServer::tool_status`], panicking (with everything) unless it exits 0.
    pub fn tool(&self, name: &str, args: &[&str]) -> Output {
        self.tool_input(name, args, None)
    }

    /// [`CyrusServer::tool`] with `stdin` (e.g. `ctl_mboxlist -u` with a dump).
    pub fn tool_input(&self, name: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let (line, out) = self.run_tool(name, args, stdin);
        if !out.status.success() {
            panic!("Cyrus tool failed\n{}", self.report(&line, &out));
        }
        out
    }

    fn run_tool(&self, name: &str, args: &[&str], stdin: Option<&[u8]>) -> (String, Output) {
        assert!(!name.contains('/'), "tool {name:?}: a name in {BIN}");
        let mut command = self.as_cyrus(&format!("{BIN}/{name}"));
        command.arg("-C").arg(self.conf()).args(args);
        run(command, stdin)
    }

    /// `mbpath ARGS...`'s stdout (one line per name found). Names as the admin sees them
    /// ([`CyrusServer::admin_name`]). Panics on a non-zero exit and also on anything printed to
    /// stderr: mbpath skips an unknown name with "Invalid mailbox name: 'x'" on stderr, and its
    /// exit status is that of the last name only.
    pub fn mbpath(&self, args: &[&str]) -> String {
        let (line, out) = self.run_tool("mbpath", args, None);
        if !out.status.success() || !out.stderr.is_empty() {
            panic!("mbpath failed\n{}", self.report(&line, &out));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The folder of one mailbox, from mbpath. `admin_name` as the admin sees it
    /// ([`CyrusServer::admin_name`]): "user.alice.Sent", or "user/john.doe/Sent" with
    /// unixhierarchysep (mbpath refuses the internal "user.john^doe.Sent").
    pub fn mailbox_path(&self, admin_name: &str) -> PathBuf {
        PathBuf::from(self.mbpath(&[admin_name]).trim_end_matches('\n'))
    }

    /// `ctl_mboxlist -d`: internal name -> record (`mbtype`, `uniqueid`, `partition`, `acl`, ...).
    pub fn mboxlist(&self) -> Value {
        let out = self.tool("ctl_mboxlist", &["-d"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("ctl_mboxlist -d printed no JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout))
        })
    }

    /// `cyr_expire ARGS` (`["-X", "0"]` drops expunged messages, `["-D", "0"]` deleted
    /// mailboxes); returns stdout.
    pub fn expire(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.tool("cyr_expire", args).stdout).into_owned()
    }

    /// `reconstruct ARGS`; returns stdout (what it did). Names as the admin sees them: with
    /// unixhierarchysep an internal name ("user.john^doe") silently does nothing (exit 0).
    pub fn reconstruct(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.tool("reconstruct", args).stdout).into_owned()
    }

    /// Hands `path` and everything under it to cyrus:mail (files restored by root must be).
    pub fn chown_to_cyrus(&self, path: &Path) {
        for entry in walkdir::WalkDir::new(path).follow_links(false) {
            let entry = entry.unwrap_or_else(|e| panic!("walk {}: {e}", path.display()));
            self.give(entry.path());
        }
    }

    fn give(&self, path: &Path) {
        std::os::unix::fs::lchown(path, Some(self.account.uid), Some(self.account.gid))
            .unwrap_or_else(|e| panic!("chown {} to {ACCOUNT}:{GROUP}: {e}", path.display()));
    }

    // ---- delivery

    /// A deterministic RFC 5322 message with CRLF line ends whose body is exactly `body_size`
    /// bytes (lines of at most 72 characters, content derived from `subject`).
    pub fn message(&self, subject: &str, body_size: usize) -> Vec<u8> {
        message(subject, body_size)
    }

    /// Delivers `message` over LMTP to `user`'s INBOX, or to `mailbox` ("INBOX.Sent", which must
    /// exist) as `user+Sent`. Cyrus files `user+Sent` in INBOX unless `anyone` may post (`p`)
    /// to the folder, so for a folder this first grants that ([`CyrusServer::allow_post`]),
    /// when missing: one SETACL (a `MAILBOX` sync log line, a new cyrus.header) the first time.
    /// Panics unless Cyrus answers 250 (a user without INBOX gets `550 5.1.1 User unknown`).
    /// lmtpd prepends its trace headers (see [`Msg::body`]).
    pub fn deliver(&self, user: &str, mailbox: Option<&str>, message: &[u8]) {
        let mailbox = mailbox.filter(|m| !m.eq_ignore_ascii_case("INBOX"));
        let rcpt = match mailbox {
            None => user.to_string(),
            Some(mailbox) => {
                self.allow_post(user, mailbox);
                let admin = self.admin_name(user, mailbox);
                format!("{user}+{}", &admin[format!("user{}{user}", self.separator()).len() + 1..])
            }
        };
        self.lmtp(&rcpt, message);
    }

    /// One LMTP transaction for `rcpt` (`alice`, `alice+Sent`).
    pub fn lmtp(&self, rcpt: &str, message: &[u8]) {
        let mut transcript = String::new();
        let result = lmtp_exchange(&self.lmtp_socket(), rcpt, message, &mut transcript);
        if let Err(e) = result {
            panic!(
                "LMTP delivery to {rcpt} ({} bytes) through {} failed: {e}\n--- transcript\n{transcript}{}",
                message.len(),
                self.lmtp_socket().display(),
                self.log_report()
            );
        }
    }

    // ---- IMAP and ManageSieve

    /// Runs `ops` (JSON objects, see tests/cyrus/imap.py) in one session logged in as `login`;
    /// one result per op. Panics with the transcript when one fails.
    pub fn imap(&self, login: &str, ops: Vec<Value>) -> Vec<Value> {
        let request = json!({
            "host": "127.0.0.1",
            "port": self.imap_port,
            "sieve_port": self.sieve_port,
            "user": login,
            "password": PASSWORD,
            "ops": ops,
        });
        let input = request.to_string();
        let mut command = Command::new(PYTHON);
        command.arg(HELPER).env_clear().env("PATH", PATH).current_dir(&self.base);
        let (line, out) = run(command, Some(input.as_bytes()));
        if !out.status.success() {
            let shown = if input.len() > 4000 { format!("{}...", &input[..4000]) } else { input.clone() };
            let line = line.rsplit_once(" < input").map_or(line.as_str(), |(command, _)| command);
            let line = format!("{line} <<'JSON'\n{shown}\nJSON");
            panic!("IMAP as {login} failed\n{}", self.report(&line, &out));
        }
        let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{HELPER} printed no JSON list ({e}):\n{}", String::from_utf8_lossy(&out.stdout))
        });
        assert_eq!(results.len(), ops_len(&request), "one result per op");
        results
    }

    fn one(&self, login: &str, op: Value) -> Value {
        self.imap(login, vec![op]).pop().expect("one result")
    }

    /// Admin: CREATE user.<user> (the user's INBOX).
    pub fn create_user(&self, user: &str) {
        self.one(ADMIN, json!({"op": "create", "mailbox": self.admin_name(user, "INBOX")}));
    }

    /// Admin: gives itself the `x` right, then DELETE user.<user> (its folders become DELETED.*
    /// with the default delete_mode: delayed).
    pub fn delete_user(&self, user: &str) {
        let inbox = self.admin_name(user, "INBOX");
        self.imap(
            ADMIN,
            vec![
                json!({"op": "setacl", "mailbox": inbox, "who": ADMIN, "rights": "lrswipkxtecda"}),
                json!({"op": "delete", "mailbox": inbox}),
            ],
        );
    }

    /// Admin: RENAME user.<from> user.<to> (needs [`Options::allow_user_moves`]): Cyrus logs the
    /// RENAMEs, then `UNUSER from` and `USER to`.
    pub fn rename_user(&self, from: &str, to: &str) {
        let (from, to) = (self.admin_name(from, "INBOX"), self.admin_name(to, "INBOX"));
        self.one(ADMIN, json!({"op": "rename", "from": from, "to": to}));
    }

    /// As `user`: CREATE `mailbox` ("INBOX.Sent").
    pub fn create(&self, user: &str, mailbox: &str) {
        self.one(user, json!({"op": "create", "mailbox": mailbox}));
    }

    /// As `user`: DELETE `mailbox`.
    pub fn delete(&self, user: &str, mailbox: &str) {
        self.one(user, json!({"op": "delete", "mailbox": mailbox}));
    }

    /// As `user`: RENAME `from` `to`.
    pub fn rename(&self, user: &str, from: &str, to: &str) {
        self.one(user, json!({"op": "rename", "from": from, "to": to}));
    }

    pub fn subscribe(&self, user: &str, mailbox: &str) {
        self.one(user, json!({"op": "subscribe", "mailbox": mailbox}));
    }

    pub fn unsubscribe(&self, user: &str, mailbox: &str) {
        self.one(user, json!({"op": "unsubscribe", "mailbox": mailbox}));
    }

    /// As `user`: SELECT `mailbox`, `UID STORE uids ACTION (FLAGS)`; `action` is "+FLAGS",
    /// "-FLAGS" or "FLAGS" (".SILENT" allowed); flags like `\Seen`, `$Work`.
    pub fn store(&self, user: &str, mailbox: &str, uids: &str, action: &str, flags: &[&str]) {
        self.one(user, json!({"op": "store", "mailbox": mailbox, "uids": uids, "action": action, "flags": flags}));
    }

    pub fn add_flags(&self, user: &str, mailbox: &str, uids: &str, flags: &[&str]) {
        self.store(user, mailbox, uids, "+FLAGS", flags);
    }

    pub fn remove_flags(&self, user: &str, mailbox: &str, uids: &str, flags: &[&str]) {
        self.store(user, mailbox, uids, "-FLAGS", flags);
    }

    /// As `user`: `UID COPY uids to` from `mailbox`.
    pub fn copy(&self, user: &str, mailbox: &str, uids: &str, to: &str) {
        self.one(user, json!({"op": "copy", "mailbox": mailbox, "uids": uids, "to": to}));
    }

    /// As `user`: `UID MOVE uids to` from `mailbox`.
    pub fn move_(&self, user: &str, mailbox: &str, uids: &str, to: &str) {
        self.one(user, json!({"op": "move", "mailbox": mailbox, "uids": uids, "to": to}));
    }

    /// As `user`: with `uids`, `UID STORE uids +FLAGS.SILENT (\Deleted)` then `UID EXPUNGE uids`;
    /// without, EXPUNGE (every `\Deleted` message). Cyrus keeps the records and files until
    /// `cyr_expire -X 0` ([`CyrusServer::expire`]).
    pub fn expunge(&self, user: &str, mailbox: &str, uids: Option<&str>) {
        self.one(user, json!({"op": "expunge", "mailbox": mailbox, "uids": uids}));
    }

    /// As `user`: APPEND; `internaldate` like `01-Jan-2024 00:00:00 +0000`. Returns the new UID.
    pub fn append(&self, user: &str, mailbox: &str, flags: &[&str], internaldate: Option<&str>, message: &[u8]) -> u32 {
        let uid = self.one(
            user,
            json!({"op": "append", "mailbox": mailbox, "flags": flags, "internaldate": internaldate,
                   "message": hex(message)}),
        );
        uid.as_u64().unwrap_or_else(|| panic!("APPEND to {mailbox}: no APPENDUID ({uid})")) as u32
    }

    /// Admin: SETACL `mailbox` (admin name, "user.alice.Sent") `who` `rights` ("+p", "lrs").
    pub fn setacl(&self, mailbox: &str, who: &str, rights: &str) {
        self.one(ADMIN, json!({"op": "setacl", "mailbox": mailbox, "who": who, "rights": rights}));
    }

    /// Admin: GETACL `mailbox` (admin name) as `who rights` pairs.
    pub fn getacl(&self, mailbox: &str) -> Vec<(String, String)> {
        let data = self.one(ADMIN, json!({"op": "getacl", "mailbox": mailbox}));
        let text: Vec<String> = strings(&data);
        let words: Vec<&str> = text.iter().flat_map(|l| l.split_whitespace()).skip(1).collect();
        words.chunks(2).map(|p| (p[0].to_string(), p.get(1).unwrap_or(&"").to_string())).collect()
    }

    /// Lets LMTP `user+folder` file into `mailbox` of `user`: grants `anyone` the `p` right
    /// unless it has it. True when it changed the ACL.
    pub fn allow_post(&self, user: &str, mailbox: &str) -> bool {
        let admin = self.admin_name(user, mailbox);
        self.one(ADMIN, json!({"op": "allow_post", "mailbox": admin})) == json!(true)
    }

    /// Admin: SETQUOTA `root` (`limits` like "STORAGE 100000", in KiB; "" removes).
    pub fn setquota(&self, root: &str, limits: &str) {
        self.one(ADMIN, json!({"op": "setquota", "root": root, "limits": limits}));
    }

    /// As `login`: SETMETADATA `mailbox` (`""`: a server annotation) `(entry value)`;
    /// `None` removes it. Entry like `/private/comment`, `/shared/comment`.
    pub fn setmetadata(&self, login: &str, mailbox: &str, entry: &str, value: Option<&str>) {
        self.one(login, json!({"op": "setmetadata", "mailbox": mailbox, "entry": entry, "value": value}));
    }

    /// As `login`: the METADATA response lines for `entry` of `mailbox` (raw).
    pub fn getmetadata(&self, login: &str, mailbox: &str, entry: &str) -> Vec<String> {
        let data = self.one(login, json!({"op": "getmetadata", "mailbox": mailbox, "entry": entry}));
        data.as_array().into_iter().flatten().map(|l| strings(l).concat()).collect()
    }

    /// As `user`: LIST "" * (names sorted).
    pub fn list(&self, user: &str) -> Vec<String> {
        strings(&self.one(user, json!({"op": "list"})))
    }

    /// As `user`: LSUB "" * (names sorted).
    pub fn lsub(&self, user: &str) -> Vec<String> {
        strings(&self.one(user, json!({"op": "lsub"})))
    }

    /// As `user`: STATUS `mailbox` (`items` like "MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ").
    pub fn status(&self, user: &str, mailbox: &str, items: &str) -> Value {
        self.one(user, json!({"op": "status", "mailbox": mailbox, "items": items}))
    }

    /// As `user`: EXAMINE `mailbox`, `UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE
    /// BODY.PEEK[])`, in UID order. Changes nothing (no \Seen, no \Recent, no sync log line).
    pub fn messages(&self, user: &str, mailbox: &str) -> Vec<Msg> {
        let data = self.one(user, json!({"op": "messages", "mailbox": mailbox}));
        data.as_array()
            .unwrap_or_else(|| panic!("messages: {data}"))
            .iter()
            .map(|m| Msg {
                uid: m["uid"].as_u64().expect("uid") as u32,
                flags: strings(&m["flags"]),
                internaldate: m["internaldate"].as_str().unwrap_or_default().to_string(),
                size: m["size"].as_u64().unwrap_or_default(),
                body: unhex(m["body"].as_str().unwrap_or_default()),
            })
            .collect()
    }

    /// UID and sorted flags of each message: the compact view for assertions.
    pub fn flags(&self, user: &str, mailbox: &str) -> Vec<(u32, Vec<String>)> {
        self.messages(user, mailbox).into_iter().map(|m| (m.uid, m.flags)).collect()
    }

    /// As `user` over ManageSieve: PUTSCRIPT `name` (then SETACTIVE when `activate`).
    pub fn sieve_put(&self, user: &str, name: &str, script: &str, activate: bool) {
        self.one(user, json!({"op": "sieve_put", "name": name, "script": script, "activate": activate}));
    }

    /// SETACTIVE `name`; `None` deactivates every script.
    pub fn sieve_activate(&self, user: &str, name: Option<&str>) {
        self.one(user, json!({"op": "sieve_activate", "name": name}));
    }

    pub fn sieve_delete(&self, user: &str, name: &str) {
        self.one(user, json!({"op": "sieve_delete", "name": name}));
    }

    /// GETSCRIPT `name`.
    pub fn sieve_get(&self, user: &str, name: &str) -> String {
        self.one(user, json!({"op": "sieve_get", "name": name})).as_str().unwrap_or_default().to_string()
    }

    /// LISTSCRIPTS: (name, active), sorted.
    pub fn sieve_scripts(&self, user: &str) -> Vec<(String, bool)> {
        let data = self.one(user, json!({"op": "sieve_list"}));
        data.as_array()
            .into_iter()
            .flatten()
            .map(|p| (p[0].as_str().unwrap_or_default().to_string(), p[1].as_bool().unwrap_or(false)))
            .collect()
    }

    // ---- reporting

    /// The last lines of master.log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.master_log())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})\n", self.master_log().display()));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].iter().map(|l| format!("{l}\n")).collect()
    }

    fn log_report(&self) -> String {
        format!("--- {} (last {LOG_TAIL_LINES} lines)\n{}---", self.master_log().display(), self.log_tail())
    }

    fn report(&self, line: &str, out: &Output) -> String {
        format!(
            "command: {line}\nstatus: {}\n--- stdout\n{}--- stderr\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_report()
        )
    }

    /// `setpriv --reuid=cyrus --regid=mail --clear-groups PROGRAM` in a cleared environment,
    /// run in the server's folder.
    fn as_cyrus(&self, program: &str) -> Command {
        let mut command = Command::new(SETPRIV);
        command
            .arg(format!("--reuid={}", self.account.uid))
            .arg(format!("--regid={}", self.account.gid))
            .arg("--clear-groups")
            .arg(program)
            .env_clear()
            .env("PATH", PATH)
            .current_dir(&self.base);
        command
    }
}

impl Drop for CyrusServer {
    fn drop(&mut self) {
        self.stop_inner(false);
    }
}

enum Ready {
    Yes,
    Stolen(String),
}

enum Probe {
    NotYet(String),
    Stolen(String),
}

/// A loopback port free right now (bind port 0, read it, release it).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}")).port()
}

enum Greeting {
    /// Nothing (complete) within 5 s.
    Silent(String),
    /// Closed or failed.
    Closed(String),
}

/// Reads lines until one matches `last` (the greeting's end); all of it, or why not.
fn read_greeting(stream: &TcpStream, last: impl Fn(&str) -> bool) -> Result<String, Greeting> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| Greeting::Closed(e.to_string()))?;
    let mut reader = BufReader::new(stream);
    let mut all = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return Err(Greeting::Closed(format!("connection closed after {all:?}"))),
            Ok(_) => {
                all.push_str(&line);
                if last(&line) {
                    return Ok(all);
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(Greeting::Silent(format!("no greeting within 5 s (got {all:?})")))
            }
            Err(e) => return Err(Greeting::Closed(format!("greeting: {e} after {all:?}"))),
        }
    }
}

/// Any process of process group `pgid` other than a zombie.
fn group_alive(pgid: libc::pid_t) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else { return false };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[0] != "X" && fields[2] == pgid.to_string()
    })
}

/// The temp folder's ancestors must let cyrus through (a TMPDIR under /root would not).
fn assert_traversable(dir: &Path) {
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor).map(|m| m.mode()).unwrap_or(0);
        assert!(
            mode & 0o001 != 0,
            "{ACCOUNT} cannot reach {} through {} (mode {mode:o}): set TMPDIR to a folder under /tmp",
            dir.display(),
            ancestor.display()
        );
    }
}

fn ops_len(request: &Value) -> usize {
    request["ops"].as_array().map_or(0, Vec::len)
}

/// The strings of a JSON array (non-strings skipped).
fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or_else(|_| panic!("not hex: {text:.40}")))
        .collect()
}

/// Runs `command` with `stdin`, capturing stdout and stderr; returns its shell line too.
fn run(mut command: Command, stdin: Option<&[u8]>) -> (String, Output) {
    command
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
    (line, out)
}

/// The command as a line a developer can paste into a root shell.
fn shell_line(command: &Command, stdin_len: Option<usize>) -> String {
    let mut words = Vec::new();
    if let Some(dir) = command.get_current_dir() {
        words.push(format!("cd {} &&", quote(&dir.to_string_lossy())));
    }
    words.push("env -i".to_string());
    words.extend(
        command
            .get_envs()
            .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quote(&v?.to_string_lossy())))),
    );
    words.push(quote(&command.get_program().to_string_lossy()));
    words.extend(command.get_args().map(|a| quote(&a.to_string_lossy())));
    let mut line = words.join(" ");
    if let Some(n) = stdin_len {
        let _ = write!(line, " < input ({n} bytes)");
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

/// LHLO, MAIL, RCPT, DATA (dot-stuffed, CRLF-terminated), QUIT; every line kept in `transcript`.
fn lmtp_exchange(socket: &Path, rcpt: &str, message: &[u8], transcript: &mut String) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    lmtp_reply(&mut reader, transcript, "220")?;
    for (line, code) in [
        ("LHLO pairsync.test".to_string(), "250"),
        ("MAIL FROM:<sender@example.org>".to_string(), "250"),
        (format!("RCPT TO:<{rcpt}>"), "250"),
        ("DATA".to_string(), "354"),
    ] {
        let _ = writeln!(transcript, "C: {line}");
        stream.write_all(format!("{line}\r\n").as_bytes()).map_err(|e| format!("write: {e}"))?;
        lmtp_reply(&mut reader, transcript, code)?;
    }
    let mut data = Vec::with_capacity(message.len() + 64);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    let _ = writeln!(transcript, "C: <message, {} bytes>\nC: .", message.len());
    stream.write_all(&data).map_err(|e| format!("write message: {e}"))?;
    lmtp_reply(&mut reader, transcript, "250")?;
    let _ = writeln!(transcript, "C: QUIT");
    stream.write_all(b"QUIT\r\n").map_err(|e| format!("write: {e}"))?;
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    Ok(())
}

/// Reads one (possibly multi-line) LMTP reply; an error unless its code is `code`.
fn lmtp_reply(reader: &mut impl BufRead, transcript: &mut String, code: &str) -> Result<(), String> {
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        let _ = write!(transcript, "S: {line}");
        if line.is_empty() {
            return Err("connection closed".to_string());
        }
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        return if line.starts_with(code) { Ok(()) } else { Err(format!("expected {code}, got {}", line.trim_end())) };
    }
}

/// See [`CyrusServer::message`]. `body_size` 1 is impossible (a body is CRLF-terminated lines);
/// 0 is a message that ends with the empty line after the header.
pub fn message(subject: &str, body_size: usize) -> Vec<u8> {
    assert_ne!(body_size, 1, "a CRLF body cannot be 1 byte long");
    // FNV-1a of the subject: different subjects get different bodies and Message-IDs.
    let seed = subject.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut out = format!(
        "From: Sender <sender@example.org>\r\n\
         To: Recipient <recipient@example.org>\r\n\
         Subject: {subject}\r\n\
         Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\
         Message-ID: <{seed:016x}@pairsync.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n"
    )
    .into_bytes();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
    let mut state = seed | 1;
    let mut remaining = body_size;
    while remaining > 0 {
        // A line of up to 72 characters + CRLF, never leaving a single byte for the last line.
        let mut len = remaining.saturating_sub(2).min(72);
        if remaining - (len + 2) == 1 {
            len -= 1;
        }
        for _ in 0..len {
            // xorshift64: cheap, deterministic filler.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(ALPHABET[(state % ALPHABET.len() as u64) as usize]);
        }
        out.extend_from_slice(b"\r\n");
        remaining -= len + 2;
    }
    out
}
