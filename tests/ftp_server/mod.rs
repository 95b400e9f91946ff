//! In-process FTP server for integration tests (libunftp + unftp-sbe-fs), so that sync tests against
//! an `ftp://` endpoint need no installed software.
//!
//! Layout: a tokio runtime runs on a background thread. It owns a public control listener on
//! `127.0.0.1:<port>` and, for every client, hands a loopback connection to a freshly built libunftp
//! [`Server`](libunftp::Server) via `Server::service`. Data connections (PASV/EPSV) go straight to
//! libunftp on `127.0.0.1`, in a passive port range outside the kernel's ephemeral range.
//!
//! Authentication: libunftp's `Authenticator` trait lives in the `unftp-core` crate, which is not a
//! dev-dependency of this crate, so it cannot be implemented here. libunftp therefore runs with its
//! built-in anonymous authenticator and this module gates the login on the control connection
//! instead: until a `PASS` with the right user and password has been seen, client lines are relayed
//! one by one; a `PASS` with wrong credentials is never forwarded and is replaced by a command the
//! not-yet-logged-in server answers with `530 Please authenticate`. After a successful login the
//! connection is relayed byte for byte.
//!
//! Faults ([`Faults`], [`FtpServer::start_with`]): to cut an upload part way through, the server's
//! passive replies (227/229) are rewritten to point at a relay of the data connection, which counts
//! the bytes the client sends. Once one upload has passed `cut_upload_after` bytes, that session's
//! control connection is closed first (so no "226" reaches the client), then its data connection.
//! With `down_after_cut`, every session is dropped as well and new connections are closed at
//! once until [`FtpServer::heal`]. Without faults, data connections go straight to libunftp.
//!
//! Other servers ([`ServerKind`]): `PAIRSYNC_TEST_FTP=pyftpdlib` or `=vsftpd` makes
//! [`FtpServer::start`] run that installed server instead (as a child process, on a free port,
//! same user and password), so the same scenarios run against real servers in CI (`.ci/run`).
//! pyftpdlib (`python3 -m pyftpdlib`) offers MLSD and MFMT and serves `root` as "/". vsftpd has
//! no MLSD (LIST only, minute precision) and no MFMT; it needs a local account "tester" with
//! password "s3cret-pw" (made by `.ci/run` on the CI machine), runs without chroot, so URLs name
//! the folder by its file-system path, and files the tests write into `root` as another user are
//! handed to "tester" by [`FtpServer::url`]. A selected server that cannot be started panics.
//! [`FtpServer::start_with`] (faults) always uses libunftp: the faults are features of its relay.
#![allow(dead_code)]

use std::io::{BufRead, BufReader as StdBufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libunftp::ServerBuilder;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use unftp_sbe_fs::Filesystem;

const USER: &str = "tester";
const PASSWORD: &str = "s3cret-pw";
const GREETING: &str = "pairsync test FTP server";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Selects the server [`FtpServer::start`] runs: `libunftp` (default), `pyftpdlib` or `vsftpd`.
pub const SERVER_VARIABLE: &str = "PAIRSYNC_TEST_FTP";

/// Which FTP server the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// In process (this module); MLSD, no MFMT.
    Libunftp,
    /// `python3 -m pyftpdlib` (PyPI); MLSD and MFMT.
    Pyftpdlib,
    /// `/usr/sbin/vsftpd` (Debian); LIST only, no MFMT.
    Vsftpd,
}

impl ServerKind {
    /// The server `PAIRSYNC_TEST_FTP` names; libunftp when it is unset or empty. Panics on
    /// anything else, so that a typo in CI fails instead of testing the default.
    pub fn selected() -> ServerKind {
        match std::env::var(SERVER_VARIABLE) {
            Err(std::env::VarError::NotPresent) => ServerKind::Libunftp,
            Ok(value) => match value.as_str() {
                "" | "libunftp" => ServerKind::Libunftp,
                "pyftpdlib" => ServerKind::Pyftpdlib,
                "vsftpd" => ServerKind::Vsftpd,
                other => panic!("{SERVER_VARIABLE}={other:?}: expected libunftp, pyftpdlib or vsftpd"),
            },
            Err(e) => panic!("{SERVER_VARIABLE}: {e}"),
        }
    }

    /// The server sets mtimes with MFMT.
    pub fn has_mfmt(self) -> bool {
        self == ServerKind::Pyftpdlib
    }

    /// The server lists with MLSD (else LIST, minute precision at best).
    pub fn has_mlsd(self) -> bool {
        self != ServerKind::Vsftpd
    }

    fn name(self) -> &'static str {
        match self {
            ServerKind::Libunftp => "libunftp",
            ServerKind::Pyftpdlib => "pyftpdlib",
            ServerKind::Vsftpd => "vsftpd",
        }
    }
}

/// Faults to inject; none by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Drop the control and data connections of the first upload (STOR) that has sent this many
    /// bytes. Fires once per server.
    pub cut_upload_after: Option<u64>,
    /// After that cut, drop every session and close new connections at once until
    /// [`FtpServer::heal`]: a server that went away.
    pub down_after_cut: bool,
    /// Take at most this many sessions at once: a connection beyond them is greeted with "421
    /// Too many connections" and closed, as servers capping connections per client do.
    pub max_sessions: Option<usize>,
}

/// Fault state shared by the accept loop and the relays.
struct FaultState {
    faults: Faults,
    cuts: AtomicUsize,
    /// True while the server is "down".
    down: watch::Sender<bool>,
    /// Sessions open now, and connections refused for `max_sessions`.
    sessions: Arc<AtomicUsize>,
    refused: AtomicUsize,
}

impl FaultState {
    /// True for the one data connection that fires the cut.
    fn claim_cut(&self) -> bool {
        self.cuts.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }
}

/// A running in-process FTP server; shut down when dropped.
pub struct FtpServer {
    pub port: u16,
    pub root: PathBuf,
    pub user: &'static str,
    pub password: &'static str,
    pub kind: ServerKind,
    faults: Option<Arc<FaultState>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// pyftpdlib or vsftpd.
    external: Option<External>,
    /// libunftp: every command sent after a login, as "VERB argument".
    commands: Arc<std::sync::Mutex<Vec<String>>>,
}

/// A server run as a child process (in its own process group).
struct External {
    child: Child,
    /// Its log (stdout and stderr) and, for vsftpd, its configuration.
    dir: tempfile::TempDir,
    /// vsftpd: uid and gid of the FTP account, which must own what it serves.
    owner: Option<(u32, u32)>,
}

impl FtpServer {
    /// Starts a server on 127.0.0.1 (free port) serving `root` (created if missing) for user
    /// "tester" / password "s3cret-pw". Returns once the server answers with its 220 greeting.
    ///
    /// The server is the one `PAIRSYNC_TEST_FTP` selects ([`ServerKind::selected`]); panics if it
    /// cannot be started.
    pub fn start(root: &Path) -> FtpServer {
        match ServerKind::selected() {
            ServerKind::Libunftp => FtpServer::start_inner(root, None),
            kind => FtpServer::start_external(root, kind),
        }
    }

    /// [`FtpServer::start`] with faults armed: always libunftp, whatever `PAIRSYNC_TEST_FTP`
    /// says (the faults are features of its relay).
    pub fn start_with(root: &Path, faults: Faults) -> FtpServer {
        if ServerKind::selected() != ServerKind::Libunftp {
            eprintln!("note: {SERVER_VARIABLE} is ignored by fault tests: they run against libunftp");
        }
        let state = FaultState {
            faults,
            cuts: AtomicUsize::new(0),
            down: watch::Sender::new(false),
            sessions: Arc::new(AtomicUsize::new(0)),
            refused: AtomicUsize::new(0),
        };
        FtpServer::start_inner(root, Some(Arc::new(state)))
    }

    /// How many uploads were cut (0 or 1).
    pub fn cuts(&self) -> usize {
        self.faults.as_ref().map_or(0, |f| f.cuts.load(Ordering::SeqCst))
    }

    /// Connections refused for [`Faults::max_sessions`], and sessions open now.
    pub fn refused(&self) -> usize {
        self.faults.as_ref().map_or(0, |f| f.refused.load(Ordering::SeqCst))
    }

    pub fn sessions(&self) -> usize {
        self.faults.as_ref().map_or(0, |f| f.sessions.load(Ordering::SeqCst))
    }

    /// Accepts connections again after a cut with `down_after_cut` (the cut does not fire again).
    pub fn heal(&self) {
        if let Some(faults) = &self.faults {
            faults.down.send_replace(false);
        }
    }

    fn start_inner(root: &Path, faults: Option<Arc<FaultState>>) -> FtpServer {
        std::fs::create_dir_all(root).unwrap_or_else(|e| panic!("create FTP root {}: {e}", root.display()));
        let root = root.canonicalize().unwrap_or_else(|e| panic!("canonicalize FTP root {}: {e}", root.display()));

        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<u16>>();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let serve_root = root.clone();
        let serve_faults = faults.clone();
        let commands = Arc::new(std::sync::Mutex::new(Vec::new()));
        let serve_commands = commands.clone();
        let thread = std::thread::Builder::new()
            .name("ftp-test-server".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(serve(serve_root, serve_faults, serve_commands, ready_tx, shutdown_rx));
                // Drops every session task (and their sockets); bounded in case a blocking fs call hangs.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn FTP server thread");

        let port = match ready_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => panic!("FTP test server failed to start: {e}"),
            Err(e) => panic!("FTP test server did not report its port: {e}"),
        };
        let server = FtpServer {
            port,
            root,
            user: USER,
            password: PASSWORD,
            kind: ServerKind::Libunftp,
            faults,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
            external: None,
            commands,
        };
        server.wait_until_ready();
        server
    }

    /// The commands clients sent after logging in, as "VERB argument" (libunftp only; other
    /// servers give an empty list). Cleared by [`FtpServer::clear_commands`].
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }

    pub fn clear_commands(&self) {
        self.commands.lock().unwrap().clear();
    }

    /// `ftp://tester@127.0.0.1:PORT/<dir>` (a leading `/` in `dir` is ignored); for vsftpd, which
    /// runs without chroot, `ftp://tester@127.0.0.1:PORT<root>/<dir>`.
    ///
    /// Calls [`FtpServer::fix_permissions`] first, so a URL taken right before a run lets the
    /// server use whatever the test wrote into `root` since the last one.
    pub fn url(&self, dir: &str) -> String {
        self.fix_permissions();
        let dir = dir.trim_start_matches('/');
        match self.kind {
            ServerKind::Vsftpd => format!("ftp://{}@127.0.0.1:{}{}/{dir}", self.user, self.port, self.root.display()),
            _ => format!("ftp://{}@127.0.0.1:{}/{dir}", self.user, self.port),
        }
    }

    /// vsftpd: hands everything under `root` (root included) to the FTP account, as if it had
    /// written it itself; the tests write there as another user (root in CI). Modes and mtimes are
    /// kept. Nothing to do for the other servers, which run as the test's own user.
    pub fn fix_permissions(&self) {
        let Some((uid, gid)) = self.external.as_ref().and_then(|e| e.owner) else { return };
        for entry in walkdir::WalkDir::new(&self.root).follow_links(false) {
            let entry = entry.unwrap_or_else(|e| panic!("walk {}: {e}", self.root.display()));
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to {USER}: {e}", entry.path().display()));
        }
    }

    /// Starts pyftpdlib or vsftpd on a free port, trying a few ports (another process may take
    /// the one picked before the server binds it).
    fn start_external(root: &Path, kind: ServerKind) -> FtpServer {
        std::fs::create_dir_all(root).unwrap_or_else(|e| panic!("create FTP root {}: {e}", root.display()));
        let root = root.canonicalize().unwrap_or_else(|e| panic!("canonicalize FTP root {}: {e}", root.display()));
        let owner = (kind == ServerKind::Vsftpd).then(|| {
            let owner = (account_id(USER, "-u"), account_id(USER, "-g"));
            make_ancestors_traversable(&root);
            owner
        });
        let mut failures = Vec::new();
        for _ in 0..4 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("temp folder for the FTP server");
            let log = dir.path().join("server.log");
            let mut command = match kind {
                ServerKind::Pyftpdlib => {
                    let mut command = Command::new("python3");
                    command.args(["-m", "pyftpdlib", "-i", "127.0.0.1", "-p", &port.to_string(), "-w", "-d"]);
                    command.arg(&root).args(["-u", USER, "-P", PASSWORD]);
                    command
                }
                ServerKind::Vsftpd => {
                    let mut command = Command::new("/usr/sbin/vsftpd");
                    command.arg(write_vsftpd_conf(dir.path(), port));
                    command
                }
                ServerKind::Libunftp => unreachable!("libunftp runs in process"),
            };
            let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
            command
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log file handle"))
                .stderr(log_file)
                .process_group(0);
            let child = command.spawn().unwrap_or_else(|e| {
                panic!(
                    "{SERVER_VARIABLE}={}: cannot run {:?}: {e} (is it installed? .ci/run installs it)",
                    kind.name(),
                    command.get_program()
                )
            });
            let mut server = FtpServer {
                port,
                root: root.clone(),
                user: USER,
                password: PASSWORD,
                kind,
                faults: None,
                shutdown: None,
                thread: None,
                external: Some(External { child, dir, owner }),
                commands: Arc::default(),
            };
            match server.wait_until_external_ready() {
                Ok(()) => {
                    server.fix_permissions();
                    return server;
                }
                Err(e) => {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    failures.push(format!("port {port}: {e}\n--- server log\n{log}---"));
                    // Dropping `server` kills what is left of it.
                }
            }
        }
        panic!("{SERVER_VARIABLE}={}: the FTP server did not start:\n{}", kind.name(), failures.join("\n"));
    }

    /// Polls (bounded) until the child answers with a 220 greeting; an error if it exits first.
    fn wait_until_external_ready(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last_error = String::from("no answer");
        while Instant::now() < deadline {
            let external = self.external.as_mut().expect("an external server");
            if let Ok(Some(status)) = external.child.try_wait() {
                return Err(format!("exited ({status}) before answering: {last_error}"));
            }
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(stream) => {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut line = String::new();
                    match StdBufReader::new(stream).read_line(&mut line) {
                        // The greeting names the server: not some other process on that port.
                        Ok(_) if line.starts_with("220") && line.to_ascii_lowercase().contains(self.kind.name()) => {
                            return Ok(())
                        }
                        Ok(_) => last_error = format!("unexpected greeting {line:?}"),
                        Err(e) => last_error = e.to_string(),
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not ready within {STARTUP_TIMEOUT:?}: {last_error}"))
    }

    /// Writes `<home>/.netrc` (mode 0600, replacing any existing one) with this server's credentials.
    pub fn write_netrc(&self, home: &Path) {
        write_netrc(home, self.user, self.password);
    }

    /// Connects until the full pipeline (listener, relay, libunftp) answers with a 220 greeting.
    fn wait_until_ready(&self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(stream) => {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut line = String::new();
                    match StdBufReader::new(stream).read_line(&mut line) {
                        Ok(_) if line.starts_with("220") => return,
                        Ok(_) => last_error = format!("unexpected greeting {line:?}"),
                        Err(e) => last_error = e.to_string(),
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("FTP test server on port {} not ready within {STARTUP_TIMEOUT:?}: {last_error}", self.port);
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        if let Some(mut external) = self.external.take() {
            // The whole process group: vsftpd forks a process per session.
            let pid = external.child.id() as libc::pid_t;
            // SAFETY: kill(2) has no memory-safety preconditions; -pid is the group this child leads.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = external.child.kill();
            let _ = external.child.wait();
            drop(external.dir);
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes `<home>/.netrc` (mode 0600, replacing any existing one) for 127.0.0.1.
pub fn write_netrc(home: &Path, user: &str, password: &str) {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(home).unwrap_or_else(|e| panic!("create {}: {e}", home.display()));
    let path = home.join(".netrc");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    writeln!(file, "machine 127.0.0.1 login {user} password {password}")
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A port that was free a moment ago on 127.0.0.1 (released again for the server to bind).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// `id FLAG USER` as a number (uid for "-u", gid for "-g"); panics if there is no such account.
fn account_id(user: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, user]).output().unwrap_or_else(|e| panic!("run id: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse() {
        Ok(id) if out.status.success() => id,
        _ => panic!(
            "{SERVER_VARIABLE}=vsftpd needs a local account {user:?} with password {PASSWORD:?} (.ci/run makes \
             it on the CI machine): id {flag} {user}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Adds search (x) permission for everyone to the ancestors of `root` inside the temp folder
/// (test folders are 0700), so that the FTP account can reach `root`. Ancestors outside it are
/// left alone: one the account cannot search is an error.
fn make_ancestors_traversable(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let temp = std::env::temp_dir().canonicalize().unwrap_or_else(|_| std::env::temp_dir());
    for dir in root.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("stat {}: {e}", dir.display()));
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        if !dir.starts_with(&temp) || dir == temp {
            panic!("{SERVER_VARIABLE}=vsftpd: {USER} cannot reach {} through {}", root.display(), dir.display());
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o111))
            .unwrap_or_else(|e| panic!("chmod a+x {}: {e}", dir.display()));
    }
}

/// Writes `<dir>/vsftpd.conf` for a vsftpd listening on 127.0.0.1:`port` (local users, no
/// chroot, UTC listings, passive only) and returns its path.
fn write_vsftpd_conf(dir: &Path, port: u16) -> PathBuf {
    // vsftpd insists on an existing, empty folder for its unprivileged helper, even without chroot.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap_or_else(|e| panic!("create {}: {e}", empty.display()));
    let passive = passive_port_range();
    let conf = format!(
        "listen=YES\n\
         listen_ipv6=NO\n\
         listen_address=127.0.0.1\n\
         listen_port={port}\n\
         background=NO\n\
         anonymous_enable=NO\n\
         local_enable=YES\n\
         write_enable=YES\n\
         local_umask=022\n\
         pasv_enable=YES\n\
         pasv_min_port={}\n\
         pasv_max_port={}\n\
         seccomp_sandbox=NO\n\
         isolate=NO\n\
         isolate_network=NO\n\
         use_localtime=NO\n\
         chroot_local_user=NO\n\
         allow_writeable_chroot=YES\n\
         pam_service_name=vsftpd\n\
         secure_chroot_dir={}\n\
         xferlog_enable=NO\n",
        passive.start(),
        passive.end(),
        empty.display()
    );
    let path = dir.join("vsftpd.conf");
    std::fs::write(&path, conf).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Passive data ports: above the kernel's ephemeral range if there is room, so a PASV listener
/// never collides with an outgoing connection's local port.
fn passive_port_range() -> RangeInclusive<u16> {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok().and_then(|s| {
        let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
        Some((it.next()??, it.next()??))
    });
    match ephemeral {
        Some((_, high)) if high <= 64_535 => (high + 1)..=65_535,
        Some((low, _)) if low >= 12_024 => 10_000..=(low - 1),
        _ => 49_152..=65_535,
    }
}

async fn serve(
    root: PathBuf,
    faults: Option<Arc<FaultState>>,
    commands: Arc<std::sync::Mutex<Vec<String>>>,
    ready: std::sync::mpsc::Sender<std::io::Result<u16>>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let bind = async {
        let public = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let internal = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Ok::<_, std::io::Error>((public, internal))
    };
    let (public, internal) = match bind.await {
        Ok(listeners) => listeners,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let internal_addr = match internal.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    match public.local_addr() {
        Ok(addr) => {
            let _ = ready.send(Ok(addr.port()));
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    }

    let passive_ports = passive_port_range();
    let make_server = move || {
        let root = root.clone();
        ServerBuilder::new(Box::new(move || Filesystem::new(root.clone()).expect("open FTP root")))
            .greeting(GREETING)
            .passive_host(Ipv4Addr::LOCALHOST)
            .passive_ports(passive_ports.clone())
            .idle_session_timeout(120)
            .build()
            .expect("build libunftp server")
    };

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = public.accept() => {
                let Ok((client, _)) = accepted else { continue };
                if faults.as_ref().is_some_and(|f| *f.down.borrow()) {
                    // Down: the connection is closed before the greeting.
                    drop(client);
                    continue;
                }
                if let Some(f) = faults.as_ref().filter(|f| f.faults.max_sessions.is_some_and(|max| f.sessions.load(Ordering::SeqCst) >= max)) {
                    f.refused.fetch_add(1, Ordering::SeqCst);
                    let mut client = client;
                    let _ = client.write_all(b"421 Too many connections.\r\n").await;
                    continue;
                }
                // Connect and accept in this loop so each relay is paired with exactly one session.
                let Ok(upstream) = TcpStream::connect(internal_addr).await else { continue };
                let Ok((session, _)) = internal.accept().await else { continue };
                let server = make_server();
                tokio::spawn(async move {
                    let _ = server.service(session).await;
                });
                let sessions = faults.as_ref().map(|f| f.sessions.clone());
                if let Some(sessions) = &sessions {
                    sessions.fetch_add(1, Ordering::SeqCst);
                }
                let relayed = relay(client, upstream, faults.clone(), commands.clone());
                tokio::spawn(async move {
                    relayed.await;
                    if let Some(sessions) = sessions {
                        sessions.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        }
    }
}

/// Relays one control connection. With faults armed, until the session is cut (by its data
/// relay) or the server goes down: returning drops both control sockets.
async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    faults: Option<Arc<FaultState>>,
    commands: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let Some(faults) = faults else { return relay_control(client, upstream, None, commands).await };
    let (cut_tx, mut cut_rx) = watch::channel(false);
    let cut = Arc::new(cut_tx);
    let mut down = faults.down.subscribe();
    tokio::select! {
        _ = relay_control(client, upstream, Some(Session { faults: faults.clone(), cut: cut.clone() }), commands) => {}
        _ = cut_rx.wait_for(|cut| *cut) => {}
        _ = down.wait_for(|down| *down) => {}
    }
    // `cut_rx` is dropped on return: that tells a cutting data relay the control connection is gone.
}

/// What a session's data relays need.
struct Session {
    faults: Arc<FaultState>,
    /// Set to cut this session; closed once its control connection is gone.
    cut: Arc<watch::Sender<bool>>,
}

/// Relays one control connection, enforcing USER/PASS before anything reaches a logged-in session.
/// With `session`, passive replies are rewritten to route data connections through [`relay_data`].
/// After the login, each command is appended to `commands`.
async fn relay_control(
    client: TcpStream,
    upstream: TcpStream,
    session: Option<Session>,
    commands: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let (client_read, mut client_write) = client.into_split();
    let (upstream_read, mut upstream_write) = upstream.into_split();

    let server_to_client = async move {
        match session {
            None => {
                let mut upstream_read = upstream_read;
                let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
            }
            Some(session) => {
                let mut reader = BufReader::new(upstream_read);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let reply = match reroute_passive(&line, &session).await {
                        Some(rewritten) => rewritten.into_bytes(),
                        None => line.clone(),
                    };
                    if client_write.write_all(&reply).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = client_write.shutdown().await;
    };
    let client_to_server = async move {
        let mut reader = BufReader::new(client_read);
        let mut user: Option<String> = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => {
                    let _ = upstream_write.shutdown().await;
                    return;
                }
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
            let verb = verb.to_ascii_uppercase();
            let mut logged_in = false;
            let forward: &[u8] = match verb.as_str() {
                "USER" => {
                    user = Some(arg.to_string());
                    &line
                }
                "PASS" if user.as_deref() == Some(USER) && arg == PASSWORD => {
                    logged_in = true;
                    &line
                }
                // libunftp (waiting for PASS) answers any non-login command with "530 Please authenticate".
                "PASS" => b"PWD\r\n",
                _ => &line,
            };
            if upstream_write.write_all(forward).await.is_err() {
                return;
            }
            if logged_in {
                break;
            }
        }
        // `reader` still holds any bytes buffered after PASS, which are read first.
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
            commands.lock().unwrap().push(text);
            if upstream_write.write_all(&line).await.is_err() {
                break;
            }
        }
        let _ = upstream_write.shutdown().await;
    };
    tokio::join!(server_to_client, client_to_server);
}

/// For a 227 or 229 reply: starts a data relay to the port it names and returns the reply
/// rewritten to name the relay's port instead.
async fn reroute_passive(line: &[u8], session: &Session) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let (extended, port) = if let Some(rest) = text.strip_prefix("229 ") {
        // "229 Entering Extended Passive Mode (|||PORT|)"
        let port = rest.split_once("(|||")?.1.split_once("|)")?.0.parse::<u16>().ok()?;
        (true, port)
    } else if let Some(rest) = text.strip_prefix("227 ") {
        // "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)"
        let inside = rest.split_once('(')?.1.split_once(')')?.0;
        let numbers: Vec<u16> = inside.split(',').map(|n| n.trim().parse().ok()).collect::<Option<_>>()?;
        let [_, _, _, _, high, low] = numbers[..] else { return None };
        (false, high * 256 + low)
    } else {
        return None;
    };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.ok()?;
    let relay_port = listener.local_addr().ok()?.port();
    tokio::spawn(relay_data(listener, port, session.faults.clone(), session.cut.clone()));
    Some(if extended {
        format!("229 Entering Extended Passive Mode (|||{relay_port}|)\r\n")
    } else {
        format!("227 Entering Passive Mode (127,0,0,1,{},{})\r\n", relay_port / 256, relay_port % 256)
    })
}

/// Relays one data connection to libunftp's passive port `upstream_port`, counting what the
/// client sends (only uploads send anything). Fires the cut when the count reaches the limit.
async fn relay_data(listener: TcpListener, upstream_port: u16, faults: Arc<FaultState>, cut: Arc<watch::Sender<bool>>) {
    let Ok(Ok((client, _))) = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await else { return };
    drop(listener);
    let Ok(upstream) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port)).await else { return };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let to_client = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let limit = faults.faults.cut_upload_after;
    let mut passed = 0u64;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(limit) = limit {
            if passed + n as u64 >= limit && faults.claim_cut() {
                let _ = upstream_write.write_all(&buf[..(limit - passed) as usize]).await;
                // Control connection(s) first, so that the 226 libunftp sends once its data
                // connection ends never reaches the client; then this data connection.
                cut.send_replace(true);
                if faults.faults.down_after_cut {
                    faults.down.send_replace(true);
                }
                cut.closed().await;
                to_client.abort();
                return;
            }
        }
        passed += n as u64;
        if upstream_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = upstream_write.shutdown().await;
    let _ = to_client.await;
}
