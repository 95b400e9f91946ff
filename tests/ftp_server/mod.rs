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
#![allow(dead_code)]

use std::io::{BufRead, BufReader as StdBufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libunftp::ServerBuilder;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use unftp_sbe_fs::Filesystem;

const USER: &str = "tester";
const PASSWORD: &str = "s3cret-pw";
const GREETING: &str = "pairsync test FTP server";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running in-process FTP server; shut down when dropped.
pub struct FtpServer {
    pub port: u16,
    pub root: PathBuf,
    pub user: &'static str,
    pub password: &'static str,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FtpServer {
    /// Starts a server on 127.0.0.1 (free port) serving `root` (created if missing) for user
    /// "tester" / password "s3cret-pw". Returns once the server answers with its 220 greeting.
    pub fn start(root: &Path) -> FtpServer {
        std::fs::create_dir_all(root).unwrap_or_else(|e| panic!("create FTP root {}: {e}", root.display()));
        let root = root.canonicalize().unwrap_or_else(|e| panic!("canonicalize FTP root {}: {e}", root.display()));

        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<u16>>();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let serve_root = root.clone();
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
                rt.block_on(serve(serve_root, ready_tx, shutdown_rx));
                // Drops every session task (and their sockets); bounded in case a blocking fs call hangs.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn FTP server thread");

        let port = match ready_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => panic!("FTP test server failed to start: {e}"),
            Err(e) => panic!("FTP test server did not report its port: {e}"),
        };
        let server =
            FtpServer { port, root, user: USER, password: PASSWORD, shutdown: Some(shutdown_tx), thread: Some(thread) };
        server.wait_until_ready();
        server
    }

    /// `ftp://tester@127.0.0.1:PORT/<dir>` (a leading `/` in `dir` is ignored).
    pub fn url(&self, dir: &str) -> String {
        format!("ftp://{}@127.0.0.1:{}/{}", self.user, self.port, dir.trim_start_matches('/'))
    }

    /// Writes `<home>/.netrc` (mode 0600, replacing any existing one) with this server's credentials.
    pub fn write_netrc(&self, home: &Path) {
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
        writeln!(file, "machine 127.0.0.1 login {} password {}", self.user, self.password)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
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
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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
                // Connect and accept in this loop so each relay is paired with exactly one session.
                let Ok(upstream) = TcpStream::connect(internal_addr).await else { continue };
                let Ok((session, _)) = internal.accept().await else { continue };
                let server = make_server();
                tokio::spawn(async move {
                    let _ = server.service(session).await;
                });
                tokio::spawn(relay(client, upstream));
            }
        }
    }
}

/// Relays one control connection, enforcing USER/PASS before anything reaches a logged-in session.
async fn relay(client: TcpStream, upstream: TcpStream) {
    let (client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();

    let server_to_client = async move {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
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
        // `reader` still holds any bytes buffered after PASS; copying from it forwards those first.
        let _ = tokio::io::copy(&mut reader, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
    };
    tokio::join!(server_to_client, client_to_server);
}
