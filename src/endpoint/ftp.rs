//! An FTP or FTPS (explicit TLS) directory, through suppaftp's blocking client.
//!
//! - Binary transfer type, always (suppaftp starts in ASCII, which corrupts files); FEAT read
//!   once per connection; UTF8 switched on when offered; EPSV where offered, else PASV with the
//!   NAT workaround; connect and read timeouts.
//! - Listing: MLSD, one request per folder; LIST where the server has no MLSD, its times then
//!   being minute-precision. Parsing is ours (`ftp_listing`): a name that could escape the root
//!   is rejected, and a folder with a line that did not parse is left out of the run, so nothing
//!   is ever deleted on the strength of a line that was not understood.
//! - Writes: upload to a temp name in the target folder, set its mtime (MFMT or SITE UTIME
//!   where offered), then RNFR/RNTO (DELE + RNTO where the server refuses to overwrite). What
//!   the server reports afterwards is what is recorded, so servers that cannot set mtimes or
//!   live in another time zone never cause a second transfer: an MLST, or the MFMT reply once
//!   an MLST has confirmed one on this server (one round trip less per file).
//! - New folders filled with small new files are staged: created under a temp name, filled
//!   with plain uploads (STOR, MFMT), listed once to record what the server reports, and
//!   renamed into place whole. Per file that saves the check, the rename and the recording
//!   listing — four round trips — and a folder never appears half-filled.
//! - Faults: a dropped connection is re-established, with bounded retries and backoff; a
//!   server answering 421 (too many connections) is retried later; a file that keeps failing
//!   is a problem for that path. Up to `connections` connections at once.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use suppaftp::types::FileType;
use suppaftp::{FtpError, ImplFtpStream, Mode, Status, TlsStream};

use super::ftp_listing::{self, Listing};
use super::spec::FtpUrl;
use super::{
    changed_since_scan, temp_owner, Endpoint, EndpointError, ErrorKind, IssueKind, Scan, ScanIssue, TempOwner,
};
use crate::core::filter::Filter;
use crate::core::model::{join, sibling, split, Entry, Kind, Mtime, Snapshot};
use crate::endpoint::credentials::Credentials;

/// Where an FTP side is: `ftp[s]://[user@]host[:port]/dir`.
#[derive(Debug, Clone)]
pub struct FtpOptions {
    /// Connections at most (parallel transfers).
    pub connections: usize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Tries of one operation when the connection drops.
    pub retries: u32,
    /// Temp file tag (the pair's), as for local endpoints.
    pub tag: String,
    /// Verify an FTPS server's certificate (always, unless the user explicitly said not to).
    pub tls_verify: bool,
}

impl Default for FtpOptions {
    fn default() -> Self {
        FtpOptions {
            connections: 4,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            retries: 3,
            tag: "00000000".into(),
            tls_verify: true,
        }
    }
}

/// What a connection learned from FEAT.
#[derive(Debug, Clone, Copy, Default)]
struct Features {
    mlsd: bool,
    mfmt: bool,
    site_utime: bool,
}

struct Conn<T: TlsStream> {
    ftp: ImplFtpStream<T>,
    features: Features,
}

type Connect<T> = dyn Fn() -> Result<ImplFtpStream<T>, FtpError> + Send + Sync;

/// How long a command waits for a connection when a cap the server showed, not `--connections`,
/// holds it back (see [`FtpEndpoint::take`]): a minute, or `PAIRSYNC_FTP_CAPPED_WAIT_MS`.
fn capped_wait() -> Duration {
    let ms = std::env::var("PAIRSYNC_FTP_CAPPED_WAIT_MS").ok().and_then(|v| v.parse().ok());
    Duration::from_millis(ms.unwrap_or(60_000))
}

/// Connections to one server, at most `limit` at once.
struct Pool<T: TlsStream> {
    idle: Mutex<Connections<T>>,
    freed: Condvar,
    /// Connections at most, as asked (`--connections`).
    limit: usize,
}

/// The pool's connections: those idle, how many are open (or being dialed), and how many the
/// server takes.
struct Connections<T: TlsStream> {
    idle: VecDeque<Conn<T>>,
    open: usize,
    dialing: usize,
    /// The limit, or fewer once the server answered a new connection with 421 while others
    /// were open (a cap per client): a connection is then waited for instead of dialed again.
    cap: usize,
}

pub struct FtpEndpoint<T: TlsStream> {
    url: FtpUrl,
    shown: String,
    credentials: Credentials,
    options: FtpOptions,
    connect: Box<Connect<T>>,
    pool: Pool<T>,
    counter: AtomicU64,
    /// What MLST has shown of this server's MFMT replies this run ([`MfmtReplies`]).
    mfmt_replies: AtomicU8,
}

/// Whether an MFMT reply can stand in for the MLST that records an upload. A reply is taken at
/// its word only once MLST has confirmed one (the server's listings may not say what its MFMT
/// replies do: a time zone, a file system keeping even seconds only), and never again this run
/// once MLST has contradicted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum MfmtReplies {
    Unchecked = 0,
    Confirmed = 1,
    Refuted = 2,
}

impl MfmtReplies {
    fn load(cell: &AtomicU8) -> MfmtReplies {
        match cell.load(Ordering::Relaxed) {
            1 => MfmtReplies::Confirmed,
            2 => MfmtReplies::Refuted,
            _ => MfmtReplies::Unchecked,
        }
    }

    /// After an MLST listed `listed` where an MFMT reply (and the bytes sent) said `known`.
    fn checked(self, known: &Entry, listed: &Entry) -> MfmtReplies {
        match self {
            MfmtReplies::Unchecked if !listed.same_metadata(known) => MfmtReplies::Refuted,
            // A match counts only on an odd second, so that a file system keeping even seconds
            // only (FAT) shows.
            MfmtReplies::Unchecked if known.mtime.div_euclid(1_000_000_000) % 2 != 0 => MfmtReplies::Confirmed,
            other => other,
        }
    }

    /// Records what a check showed; a refutation wins over a confirmation made meanwhile.
    fn store(self, cell: &AtomicU8) {
        match self {
            MfmtReplies::Refuted => cell.store(self as u8, Ordering::Relaxed),
            MfmtReplies::Confirmed => {
                let _ = cell.compare_exchange(
                    MfmtReplies::Unchecked as u8,
                    self as u8,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            MfmtReplies::Unchecked => {}
        }
    }
}

/// An FTP error as an endpoint error: a connection-level failure is unreachable (exit 6), a
/// refused login or permission (530) refused, 550 "no such file" not found.
fn io_error(e: FtpError) -> EndpointError {
    match e {
        FtpError::ConnectionError(e) => EndpointError::with_kind(ErrorKind::Unreachable, e),
        FtpError::UnexpectedResponse(r) => {
            let text = String::from_utf8_lossy(&r.body).trim().to_string();
            let code = r.status.code();
            let kind = match code {
                550 => ErrorKind::NotFound,
                530 => ErrorKind::Refused,
                _ => ErrorKind::Other,
            };
            EndpointError::new(kind, format!("server answered {code} {text}"))
        }
        other => EndpointError::new(ErrorKind::Other, other.to_string()),
    }
}

fn is_connection_error(e: &FtpError) -> bool {
    match e {
        FtpError::ConnectionError(_) | FtpError::BadResponse => true,
        FtpError::UnexpectedResponse(r) => r.status.code() == 421,
        _ => false,
    }
}

fn mtime_of_mfmt(mtime: Mtime) -> String {
    let secs = mtime.div_euclid(1_000_000_000);
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.format("%Y%m%d%H%M%S").to_string()).unwrap_or_default()
}

/// Opens the endpoint: a plain or TLS connection factory, then one connection to learn the
/// server is there and the login works.
pub fn open(url: FtpUrl, credentials: Credentials, options: FtpOptions) -> super::Result<Box<dyn Endpoint>> {
    // Every address the name resolves to, tried in turn ("localhost" may be ::1 first while
    // the server listens on 127.0.0.1 only).
    let addrs: Vec<SocketAddr> = (url.bare_host(), url.port)
        .to_socket_addrs()
        .map_err(|e| EndpointError::new(ErrorKind::Unreachable, format!("cannot resolve {}: {e}", url.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(EndpointError::new(ErrorKind::Unreachable, format!("no address for {}", url.host)));
    }
    let (connect_timeout, read_timeout) = (options.connect_timeout, options.read_timeout);
    let tcp = move || -> Result<TcpStream, FtpError> {
        let mut last = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, connect_timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(read_timeout)).map_err(FtpError::ConnectionError)?;
                    stream.set_write_timeout(Some(read_timeout)).map_err(FtpError::ConnectionError)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(FtpError::ConnectionError(last.expect("at least one address")))
    };
    if url.tls {
        let connector = tls_connector(options.tls_verify)?;
        let host = url.bare_host().to_string();
        let connect = move || -> Result<suppaftp::RustlsFtpStream, FtpError> {
            let ftp = suppaftp::RustlsFtpStream::connect_with_stream(tcp()?)?;
            ftp.into_secure(suppaftp::RustlsConnector::from(connector.clone()), &host)
        };
        Ok(Box::new(FtpEndpoint::new(url, credentials, options, Box::new(connect))?))
    } else {
        let connect = move || suppaftp::FtpStream::connect_with_stream(tcp()?);
        Ok(Box::new(FtpEndpoint::new(url, credentials, options, Box::new(connect))?))
    }
}

/// TLS with the system's trusted certificates: the server's certificate is verified, unless
/// `verify` is false (an explicit `--insecure-tls` / `tls_verify = false`).
fn tls_connector(verify: bool) -> io::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?;
    if !verify {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        return Ok(Arc::new(config));
    }
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(io::Error::other("no trusted CA certificates found on this system for FTPS"));
    }
    Ok(Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
}

/// Accepts any server certificate (still checking the handshake's signatures): for a server
/// the user explicitly chose not to verify.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl<T: TlsStream + Send + 'static> FtpEndpoint<T> {
    fn new(
        url: FtpUrl,
        credentials: Credentials,
        options: FtpOptions,
        connect: Box<Connect<T>>,
    ) -> super::Result<Self> {
        let shown = url.display(&credentials.user);
        let endpoint = FtpEndpoint {
            pool: Pool {
                idle: Mutex::new(Connections {
                    idle: VecDeque::new(),
                    open: 0,
                    dialing: 0,
                    cap: options.connections.max(1),
                }),
                freed: Condvar::new(),
                limit: options.connections.max(1),
            },
            url,
            shown,
            credentials,
            options,
            connect,
            counter: AtomicU64::new(0),
            mfmt_replies: AtomicU8::new(MfmtReplies::Unchecked as u8),
        };
        // Log in once now: an unreachable server or a refused login stops the run (exit 6).
        // A refused login keeps its own kind (refused), anything else is unreachable: both exit 6.
        let conn = endpoint.new_conn().map_err(|e| {
            let e = io_error(e);
            let kind = if e.kind() == ErrorKind::Refused { ErrorKind::Refused } else { ErrorKind::Unreachable };
            EndpointError::with_kind(kind, e.into())
        })?;
        endpoint.give_back(conn);
        Ok(endpoint)
    }

    fn new_conn(&self) -> Result<Conn<T>, FtpError> {
        let mut ftp = (self.connect)()?;
        ftp.login(self.credentials.user.as_str(), self.credentials.password.expose())?;
        ftp.transfer_type(FileType::Binary)?;
        let feat = ftp.feat().unwrap_or_default();
        let has = |name: &str| feat.keys().any(|k| k.eq_ignore_ascii_case(name));
        if has("UTF8") {
            let _ = ftp.opts("UTF8", Some("ON"));
        }
        if has("EPSV") {
            ftp.set_mode(Mode::ExtendedPassive);
        } else {
            ftp.set_mode(Mode::Passive);
            ftp.set_passive_nat_workaround(true);
        }
        let site_utime = feat.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("SITE") && v.as_deref().is_some_and(|v| v.to_ascii_uppercase().contains("UTIME"))
        });
        let features = Features { mlsd: has("MLST") || has("MLSD"), mfmt: has("MFMT"), site_utime };
        Ok(Conn { ftp, features })
    }

    /// A connection: an idle one, a new one while under the cap, or the next one freed. A server
    /// that answers a new connection with 421 while others are open takes no more than those:
    /// that is its cap, and this waits for one of them, for a while (see [`capped_wait`]).
    fn take(&self) -> Result<Conn<T>, FtpError> {
        let mut guard = self.pool.idle.lock().unwrap();
        // False once this call waited out a learnt cap: a refusal then is an error, as before
        // the cap was learnt (retried by `with_conn` with backoff).
        let mut patient = true;
        loop {
            if let Some(conn) = guard.idle.pop_front() {
                return Ok(conn);
            }
            if guard.open < guard.cap {
                guard.open += 1;
                guard.dialing += 1;
                drop(guard);
                let dialed = self.new_conn();
                guard = self.pool.idle.lock().unwrap();
                guard.dialing -= 1;
                let error = match dialed {
                    Ok(conn) => return Ok(conn),
                    Err(e) => e,
                };
                guard.open -= 1;
                self.pool.freed.notify_one();
                // Only connections made count as the server's cap, not dials still under way.
                let established = guard.open - guard.dialing;
                let too_many = matches!(&error, FtpError::UnexpectedResponse(r) if r.status.code() == 421);
                if !(too_many && established > 0 && patient) {
                    return Err(error);
                }
                guard.cap = established;
                continue;
            }
            if guard.cap == self.pool.limit {
                guard = self.pool.freed.wait(guard).unwrap();
                continue;
            }
            // Held back by a cap learnt, not asked, which may be lower than the server's (it
            // counted another client's connections, closed since); and a copy between two FTP
            // sides holds its source's connection while it waits here for its target's (always
            // in that order, so no two copies wait on each other: see the executor). After this
            // long the cap is forgotten and a new connection dialed, as before it was learnt,
            // rather than waiting for ever.
            let (next, waited) = self.pool.freed.wait_timeout(guard, capped_wait()).unwrap();
            guard = next;
            if waited.timed_out() && guard.idle.is_empty() {
                guard.cap = self.pool.limit;
                patient = false;
            }
        }
    }

    fn give_back(&self, conn: Conn<T>) {
        let mut guard = self.pool.idle.lock().unwrap();
        if guard.open == 0 {
            guard.open = 1; // the first connection, made by new()
        }
        guard.idle.push_back(conn);
        self.pool.freed.notify_one();
    }

    /// After `e` on `conn`: a connection that dropped is closed (room is made for a new one),
    /// any other goes back to the pool.
    fn release(&self, conn: Conn<T>, e: FtpError) -> EndpointError {
        if is_connection_error(&e) {
            drop(conn);
            self.forget_one();
        } else {
            self.give_back(conn);
        }
        io_error(e)
    }

    /// A connection was dropped: make room for a new one.
    fn forget_one(&self) {
        let mut guard = self.pool.idle.lock().unwrap();
        guard.open = guard.open.saturating_sub(1);
        self.pool.freed.notify_one();
    }

    /// Runs `op` on a connection, replacing the connection and retrying (with backoff) when it
    /// dropped or the server had too many connections.
    fn with_conn<R>(&self, mut op: impl FnMut(&mut Conn<T>) -> Result<R, FtpError>) -> super::Result<R> {
        let mut attempt = 0;
        loop {
            let mut conn = match self.take() {
                Ok(conn) => conn,
                Err(e) if is_connection_error(&e) && attempt < self.options.retries => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(250 << attempt));
                    continue;
                }
                Err(e) => return Err(io_error(e)),
            };
            match op(&mut conn) {
                Ok(value) => {
                    self.give_back(conn);
                    return Ok(value);
                }
                Err(e) if is_connection_error(&e) => {
                    drop(conn);
                    self.forget_one();
                    if attempt >= self.options.retries {
                        return Err(io_error(e));
                    }
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(250 << attempt));
                }
                Err(e) => {
                    self.give_back(conn);
                    return Err(io_error(e));
                }
            }
        }
    }

    fn full(&self, rel: &str) -> String {
        if rel.is_empty() {
            if self.url.dir.is_empty() {
                "/".into()
            } else {
                self.url.dir.clone()
            }
        } else {
            format!("{}/{rel}", self.url.dir)
        }
    }

    fn list(conn: &mut Conn<T>, path: &str) -> Result<Listing, FtpError> {
        if conn.features.mlsd {
            Ok(ftp_listing::parse_mlsd(&conn.ftp.mlsd(Some(path))?))
        } else {
            // `LIST -a`: without it vsftpd and others hide dot-files, which would then look
            // missing forever. A server that takes "-a" for a name gets a plain LIST.
            let lines = match conn.ftp.list(Some(&format!("-a {path}"))) {
                Ok(lines) => lines,
                Err(FtpError::UnexpectedResponse(_)) => conn.ftp.list(Some(path))?,
                Err(e) => return Err(e),
            };
            Ok(ftp_listing::parse_list(&lines, chrono::Utc::now()))
        }
    }

    /// The entry at `rel` as the server reports it now: MLST (one command, the same facts as
    /// MLSD) where offered, else the listing of its folder — never SIZE and MDTM, whose precision
    /// differs from LIST's, so that what is recorded always compares with what a scan sees.
    fn stat_rel(&self, rel: &str) -> super::Result<Option<Entry>> {
        let (parent, name) = split(rel);
        let (folder, full) = (self.full(parent), self.full(rel));
        self.with_conn(|conn| {
            if conn.features.mlsd {
                return match conn.ftp.mlst(Some(&full)) {
                    Ok(line) => {
                        // "fact=v;fact=v; /full/path": parse the facts under a neutral name.
                        let facts = line.split_once("; ").map_or(line.as_str(), |(facts, _)| facts);
                        // MLST of a folder may call it the current one: here it is a folder.
                        let facts = facts.replace("type=cdir", "type=dir").replace("Type=cdir", "Type=dir");
                        let listing = ftp_listing::parse_mlsd(&[format!("{facts}; x")]);
                        Ok(listing.entries.into_iter().next().map(|l| l.entry))
                    }
                    Err(FtpError::UnexpectedResponse(r)) if r.status.code() == 550 => Ok(None),
                    Err(e) => Err(e),
                };
            }
            match Self::list(conn, &folder) {
                Ok(listing) => Ok(listing.entries.into_iter().find(|l| l.name == name).map(|l| l.entry)),
                Err(FtpError::UnexpectedResponse(r)) if r.status.code() == 550 => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn expect(&self, rel: &str, expect: Option<&Entry>) -> super::Result<()> {
        super::still_as_planned(self.stat_rel(rel)?, expect)
    }

    /// Uploads `data` to `full` (appending to it with `append`) on one connection; returns the
    /// bytes sent. The data is streamed once, so this is not retried: a failed upload is a
    /// problem for its path, retried (a large one continued) by the next run.
    fn upload(&self, full: &str, data: &mut dyn Read, append: bool) -> super::Result<u64> {
        let mut conn = self.take().map_err(io_error)?;
        let uploaded = (|| -> Result<u64, FtpError> {
            let mut stream =
                if append { conn.ftp.append_with_stream(full)? } else { conn.ftp.put_with_stream(full)? };
            let mut buf = [0u8; 64 * 1024];
            let mut sent = 0;
            loop {
                let n = data.read(&mut buf).map_err(FtpError::ConnectionError)?;
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).map_err(FtpError::ConnectionError)?;
                sent += n as u64;
            }
            stream.finish()?;
            Ok(sent)
        })();
        match uploaded {
            Ok(sent) => {
                self.give_back(conn);
                Ok(sent)
            }
            Err(e) => Err(self.release(conn, e)),
        }
    }

    /// Sets the mtime of `full` with MFMT or SITE UTIME where the server has one. A refusal is
    /// not an error: the state records whatever the server reports afterwards. Returns the
    /// mtime when the server's MFMT reply says it set exactly the one asked for (whole seconds).
    fn set_mtime(&self, full: &str, mtime: Mtime) -> super::Result<Option<Mtime>> {
        let stamp = mtime_of_mfmt(mtime);
        let asked = mtime.div_euclid(1_000_000_000) * 1_000_000_000;
        self.with_conn(|conn| {
            if conn.features.mfmt {
                let reply = conn.ftp.custom_command(format!("MFMT {stamp} {full}"), &[Status::File]);
                let set = reply.ok().and_then(|r| ftp_listing::mfmt_reply_time(&r.body));
                return Ok(set.filter(|&set| set == asked));
            } else if conn.features.site_utime {
                let _ = conn.ftp.site(format!("UTIME {full} {stamp} {stamp} {stamp} UTC"));
            }
            Ok(None)
        })
    }

    /// The entry to record for the file just written at `rel`. `known` is what the upload says
    /// is there (the bytes sent, the mtime the MFMT reply confirmed): recorded as it is once
    /// MLST has confirmed such replies on this server, which saves a round trip per file. Until
    /// then, what MLST reports is recorded, and checks `known`.
    fn recorded(&self, rel: &str, known: Option<Entry>) -> super::Result<Entry> {
        let replies = MfmtReplies::load(&self.mfmt_replies);
        if let Some(known) = known.filter(|_| replies == MfmtReplies::Confirmed) {
            return Ok(known);
        }
        let listed = self.stat_rel(rel)?.ok_or_else(|| changed_since_scan("the uploaded file vanished"))?;
        if let Some(known) = known {
            replies.checked(&known, &listed).store(&self.mfmt_replies);
        }
        Ok(listed)
    }

    /// Refuses a path whose name this endpoint's listings would reject (a local name may hold a
    /// backslash or a line break): written, it would vanish from every scan, and a two-way run
    /// would take that for a deletion.
    fn carries(rel: &str) -> super::Result<()> {
        match rel.split('/').find_map(|name| ftp_listing::name_problem(name).map(|p| (name, p))) {
            None => Ok(()),
            Some((name, problem)) => Err(EndpointError::new(
                ErrorKind::Other,
                format!("{name:?} {problem}: no FTP listing can carry that name; not written"),
            )),
        }
    }

    fn temp_name(&self, rel: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        sibling(rel, &format!(".pairsync-{}-{}-{n}.tmp", self.options.tag, std::process::id()))
    }
}

impl<T: TlsStream + Send + 'static> FtpEndpoint<T> {
    /// Lists from each `(folder, deep)` of `start`: a deep folder with everything below it, a
    /// shallow one with only its own entries. With `whole`, `start` is the root and failing to
    /// list it is an error; otherwise a start folder that cannot be listed is skipped when it
    /// is not there, and an issue when it is.
    fn walk(&self, filter: &Filter, start: Vec<(String, bool)>, whole: bool) -> super::Result<Scan> {
        let mut found: Vec<(String, Entry)> = Vec::new();
        let mut issues = Vec::new();
        let mut leftovers = Vec::new();
        // Folders holding something left out: they cannot be emptied, so they are never deleted.
        let mut holders = std::collections::HashSet::new();
        let starts: std::collections::HashSet<String> = start.iter().map(|(d, _)| d.clone()).collect();
        let mut on_the_way = std::collections::BTreeSet::new();
        let mut folders = start;
        folders.reverse();
        while let Some((dir, deep)) = folders.pop() {
            let path = self.full(&dir);
            let listing = match self.with_conn(|conn| Self::list(conn, &path)) {
                Ok(listing) => listing,
                // The root (only ever a start) must be listed, whole or as one folder.
                Err(e) if dir.is_empty() => return Err(e),
                // A start folder that is not (or no longer) a folder: its parent's listing says
                // what is there. One that is a folder but cannot be listed is an issue below.
                // (A look that fails says nothing: an issue below, never an empty folder.)
                Err(_)
                    if !whole
                        && starts.contains(&dir)
                        && matches!(self.stat_rel(&dir), Ok(None) | Ok(Some(Entry { kind: Kind::File, .. }))) =>
                {
                    continue
                }
                Err(e) => {
                    issues.push(ScanIssue {
                        path: dir,
                        message: format!("cannot list: {e}"),
                        kind: IssueKind::Unreadable,
                    });
                    continue;
                }
            };
            if !dir.is_empty() && starts.contains(&dir) {
                // Listed, so there: it and the folders on the way are folders.
                on_the_way.extend(crate::core::model::ancestors(&dir).map(str::to_string));
                on_the_way.insert(dir.clone());
            }
            if !listing.rejected.is_empty() || !listing.symlinks.is_empty() {
                holders.insert(dir.clone());
            }
            for rejected in &listing.rejected {
                issues.push(ScanIssue {
                    path: join(&dir, &rejected.name_lossy),
                    message: format!("name from the server rejected: {}; skipped", rejected.reason),
                    kind: IssueKind::Skipped,
                });
            }
            if let Some(line) = listing.unparsed.first() {
                // Never delete on the strength of a line that did not parse: leave the folder out.
                issues.push(ScanIssue {
                    path: dir.clone(),
                    message: format!(
                        "{} listing line(s) did not parse (first: {:?}); folder left out",
                        listing.unparsed.len(),
                        line.chars().take(120).collect::<String>()
                    ),
                    kind: IssueKind::Unreadable,
                });
                if !dir.is_empty() {
                    continue;
                }
            }
            for name in &listing.symlinks {
                issues.push(ScanIssue {
                    path: join(&dir, name),
                    message: "symbolic link, not followed; left alone".into(),
                    kind: IssueKind::Excluded,
                });
            }
            for listed in listing.entries {
                let rel = join(&dir, &listed.name);
                match listed.entry.kind {
                    Kind::Dir => {
                        if let Some(owner) = temp_owner(&listed.name, &self.options.tag) {
                            // A staged folder a killed run left (or another pair's, being filled).
                            if owner == TempOwner::Own {
                                leftovers.push(rel);
                            }
                            holders.insert(dir.clone());
                        } else if !filter.ignores(&rel, Kind::Dir) {
                            found.push((rel.clone(), listed.entry));
                            if deep {
                                folders.push((rel, true));
                            }
                        } else {
                            holders.insert(dir.clone());
                        }
                    }
                    Kind::File => {
                        if let Some(owner) = temp_owner(&listed.name, &self.options.tag) {
                            if owner == TempOwner::Own {
                                leftovers.push(rel);
                            }
                            holders.insert(dir.clone());
                        } else if !filter.ignores(&rel, Kind::File) {
                            found.push((rel, listed.entry));
                        } else {
                            holders.insert(dir.clone());
                        }
                    }
                }
            }
        }
        for dir in on_the_way {
            if !found.iter().any(|(path, _)| *path == dir) && !filter.hides(&dir, Kind::Dir) {
                found.push((dir, Entry::dir()));
            }
        }
        super::mark_unsynced(&mut found, &holders);
        Ok(Scan { snapshot: Snapshot::from_unique(found), issues, leftovers })
    }
}

impl<T: TlsStream + Send + 'static> Endpoint for FtpEndpoint<T> {
    fn url(&self) -> String {
        self.shown.clone()
    }

    fn parallelism(&self) -> usize {
        self.pool.limit
    }

    fn holds_connections(&self) -> bool {
        true
    }

    fn check_root(&self) -> super::Result<()> {
        let root = self.full("");
        self.with_conn(|conn| conn.ftp.cwd(&root).map(|_| ()))
    }

    fn scan(&self, filter: &Filter) -> super::Result<Scan> {
        self.walk(filter, vec![(String::new(), true)], true)
    }

    /// One listing per folder named: the entries directly in each of `shallow`, everything
    /// below each of `deep`; a named folder that is not there is skipped (its parent's listing
    /// says so). The folders on the way to a listed one are reported as folders.
    fn scan_part(&self, filter: &Filter, shallow: &[String], deep: &[String]) -> super::Result<Scan> {
        let mut start: Vec<(String, bool)> = shallow.iter().map(|d| (d.clone(), false)).collect();
        start.extend(deep.iter().map(|d| (d.clone(), true)));
        self.walk(filter, start, false)
    }

    fn stat(&self, path: &str) -> super::Result<Option<Entry>> {
        self.stat_rel(path)
    }

    fn write(
        &self,
        path: &str,
        data: &mut dyn Read,
        like: &Entry,
        replaces: Option<&Entry>,
        resume_from: u64,
    ) -> super::Result<Entry> {
        Self::carries(path)?;
        let resumable = like.size >= super::RESUMABLE;
        let temp = if resumable { super::resumable_temp(&self.options.tag, path, like) } else { self.temp_name(path) };
        let (temp_full, target_full) = (self.full(&temp), self.full(path));
        let sent = match self.upload(&temp_full, data, resume_from > 0) {
            Ok(sent) => sent,
            Err(error) => {
                // A large upload's partial temp is kept for the next run to continue.
                if !resumable {
                    let _ = self.with_conn(|c| c.ftp.rm(&temp_full));
                }
                return Err(error);
            }
        };
        let finished = (|| -> super::Result<Option<Mtime>> {
            let set = self.set_mtime(&temp_full, like.mtime)?;
            // Compare, then mutate: the target must still be what the plan saw.
            self.expect(path, replaces)?;
            self.with_conn(|conn| match conn.ftp.rename(&temp_full, &target_full) {
                Err(FtpError::UnexpectedResponse(_)) if replaces.is_some() => {
                    // Some servers refuse to rename over an existing file.
                    conn.ftp.rm(&target_full)?;
                    conn.ftp.rename(&temp_full, &target_full)
                }
                other => other,
            })?;
            Ok(set)
        })();
        let set = match finished {
            Ok(set) => set,
            Err(e) => {
                let _ = self.with_conn(|c| c.ftp.rm(&temp_full));
                return Err(e);
            }
        };
        // The whole file went up (a continued one: the rest of it) and MFMT set the mtime asked.
        let known = set.filter(|_| resume_from + sent == like.size).map(|mtime| Entry::file(like.size, mtime));
        self.recorded(path, known)
    }

    fn stages_folders(&self) -> bool {
        true
    }

    fn mkdir_staged(&self, path: &str) -> super::Result<String> {
        Self::carries(path)?;
        let staged = self.temp_name(path);
        let full = self.full(&staged);
        self.with_conn(|conn| conn.ftp.mkdir(&full))?;
        Ok(staged)
    }

    fn write_staged(&self, path: &str, data: &mut dyn Read, like: &Entry) -> super::Result<()> {
        Self::carries(path)?;
        let full = self.full(path);
        self.upload(&full, data, false)?;
        // The folder's listing records what is in it (commit_staged).
        self.set_mtime(&full, like.mtime).map(|_| ())
    }

    /// One listing of the staged folder records every file in it as the server reports it;
    /// then one check that `path` is still free and one rename (or, after a failed write, a
    /// rename per written file).
    fn commit_staged(
        &self,
        staged: &str,
        path: &str,
        written: &[(&str, u64)],
        failed: bool,
    ) -> super::Result<HashMap<String, Entry>> {
        let staged_full = self.full(staged);
        let listing = self.with_conn(|conn| Self::list(conn, &staged_full))?;
        let written: HashMap<&str, u64> = written.iter().copied().collect();
        let listed = listing.entries.len();
        let files: HashMap<String, Entry> = listing
            .entries
            .into_iter()
            .filter(|l| l.entry.kind == Kind::File && written.get(l.name.as_str()) == Some(&l.entry.size))
            .map(|l| (l.name, l.entry))
            .collect();
        let clean = listed == files.len()
            && listing.unparsed.is_empty()
            && listing.rejected.is_empty()
            && listing.symlinks.is_empty();
        self.expect(path, None)?;
        let target = self.full(path);
        if clean && !failed {
            self.with_conn(|conn| conn.ftp.rename(&staged_full, &target))?;
            return Ok(files);
        }
        // Move what was written, file by file; the rest stays in the temp folder, removed now
        // or by the next run.
        self.with_conn(|conn| conn.ftp.mkdir(&target))?;
        let mut moved = HashMap::new();
        for (name, entry) in files {
            let (from, to) = (format!("{staged_full}/{name}"), format!("{target}/{name}"));
            if self.with_conn(|conn| conn.ftp.rename(&from, &to)).is_ok() {
                moved.insert(name, entry);
            }
        }
        let _ = self.remove_leftover(staged);
        Ok(moved)
    }

    fn partial(&self, path: &str, like: &Entry) -> u64 {
        if like.size < super::RESUMABLE {
            return 0;
        }
        match self.stat_rel(&super::resumable_temp(&self.options.tag, path, like)) {
            Ok(Some(entry)) if entry.kind == Kind::File && entry.size > 0 && entry.size < like.size => entry.size,
            _ => 0,
        }
    }

    /// REST, then RETR: a large download continues where an interrupted one stopped.
    fn open_from(&self, path: &str, expect: &Entry, offset: u64) -> super::Result<Box<dyn Read + Send + '_>> {
        let full = self.full(path);
        let mut conn = self.take().map_err(io_error)?;
        let opened = (|| {
            if offset > 0 {
                conn.ftp.resume_transfer(offset as usize)?;
            }
            conn.ftp.retr_as_stream(&full)
        })();
        match opened {
            Ok(stream) => Ok(Box::new(FtpReader {
                endpoint: self,
                conn: Some(conn),
                stream: Some(stream),
                read: offset,
                expect: *expect,
            })),
            Err(e) => Err(self.release(conn, e)),
        }
    }

    fn mkdir(&self, path: &str) -> super::Result<()> {
        Self::carries(path)?;
        let full = self.full(path);
        match self.with_conn(|conn| conn.ftp.mkdir(&full)) {
            Ok(()) => Ok(()),
            Err(e) => match self.stat_rel(path)? {
                Some(entry) if entry.is_dir() => Ok(()),
                _ => Err(e),
            },
        }
    }

    fn remove(&self, path: &str, expect: &Entry) -> super::Result<()> {
        self.expect(path, Some(expect))?;
        let full = self.full(path);
        if expect.is_dir() {
            self.with_conn(|conn| conn.ftp.rmdir(&full))
        } else {
            self.with_conn(|conn| conn.ftp.rm(&full))
        }
    }

    fn rename(&self, from: &str, to: &str, expect: &Entry) -> super::Result<Entry> {
        Self::carries(to)?;
        self.expect(from, Some(expect))?;
        self.expect(to, None)?;
        let (from_full, to_full) = (self.full(from), self.full(to));
        self.with_conn(|conn| conn.ftp.rename(&from_full, &to_full))?;
        self.stat_rel(to)?.ok_or_else(|| changed_since_scan("renamed file vanished"))
    }

    fn read_check_file(&self, path: &str, limit: usize) -> super::Result<Option<Vec<u8>>> {
        let full = if path.starts_with('/') { path.to_string() } else { self.full(path) };
        let result = self.with_conn(|conn| {
            let mut stream = conn.ftp.retr_as_stream(&full)?;
            let mut bytes = Vec::new();
            (&mut stream).take(limit as u64).read_to_end(&mut bytes).map_err(FtpError::ConnectionError)?;
            if bytes.len() < limit {
                stream.finish()?;
            } else {
                conn.ftp.abort(stream)?;
            }
            Ok(bytes)
        });
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove_leftover(&self, path: &str) -> super::Result<()> {
        let full = self.full(path);
        let Err(error) = self.with_conn(|conn| conn.ftp.rm(&full)) else { return Ok(()) };
        // Not a file: a staged folder, which holds only files.
        let Ok(listing) = self.with_conn(|conn| Self::list(conn, &full)) else { return Err(error) };
        for listed in listing.entries.iter().filter(|l| l.entry.kind == Kind::File) {
            let file = format!("{full}/{}", listed.name);
            self.with_conn(|conn| conn.ftp.rm(&file))?;
        }
        self.with_conn(|conn| conn.ftp.rmdir(&full))
    }
}

/// A download: reads the data connection, then finishes the transfer and hands the control
/// connection back. Fails if the file turned out another size than the plan saw.
struct FtpReader<'a, T: TlsStream + Send + 'static> {
    endpoint: &'a FtpEndpoint<T>,
    conn: Option<Conn<T>>,
    stream: Option<suppaftp::TransferStream<T>>,
    read: u64,
    expect: Entry,
}

impl<T: TlsStream + Send + 'static> Read for FtpReader<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(stream) = self.stream.as_mut() else { return Ok(0) };
        let n = stream.read(buf)?;
        self.read += n as u64;
        if n == 0 {
            let stream = self.stream.take().expect("present");
            stream.finish().map_err(io_error)?;
            if let Some(conn) = self.conn.take() {
                self.endpoint.give_back(conn);
            }
            if self.read != self.expect.size {
                return Err(super::changed_while_copying().into());
            }
        }
        Ok(n)
    }
}

impl<T: TlsStream + Send + 'static> Drop for FtpReader<'_, T> {
    fn drop(&mut self) {
        // An abandoned download, or one whose end the server did not confirm: its connection is
        // in an unknown state, so it is closed (and counted so, or the pool would wait for it).
        if let Some(conn) = self.conn.take() {
            drop(self.stream.take());
            drop(conn);
            self.endpoint.forget_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mfmt_stamps_are_utc_seconds() {
        assert_eq!(mtime_of_mfmt(1_700_000_000_999_000_000), "20231114221320");
    }

    const SECOND: Mtime = 1_000_000_000;
    /// 2023-11-14 22:13:21 UTC, an odd second.
    const ODD: Mtime = 1_700_000_001 * SECOND;

    /// One test per row: the state before, what the MFMT reply and the bytes sent said, what
    /// MLST then listed, the state after.
    macro_rules! checks {
        ($($case:ident: $before:ident, $known:expr, $listed:expr => $after:ident,)*) => {
            $(
                #[test]
                fn $case() {
                    let (known, listed): (Entry, Entry) = ($known, $listed);
                    assert_eq!(MfmtReplies::$before.checked(&known, &listed), MfmtReplies::$after);
                }
            )*
        };
    }

    mod mfmt_replies {
        use super::*;

        checks! {
            confirmed_on_an_odd_second: Unchecked, Entry::file(5, ODD), Entry::file(5, ODD) => Confirmed,
            confirmed_before_the_epoch: Unchecked, Entry::file(5, -SECOND), Entry::file(5, -SECOND) => Confirmed,
            listing_with_permissions_still_confirms:
                Unchecked, Entry::file(5, ODD), Entry { mode: Some(0o644), ..Entry::file(5, ODD) } => Confirmed,
            an_even_second_proves_nothing: Unchecked, Entry::file(5, ODD + SECOND), Entry::file(5, ODD + SECOND)
                => Unchecked,
            two_second_file_system: Unchecked, Entry::file(5, ODD), Entry::file(5, ODD - SECOND) => Refuted,
            listing_an_hour_off: Unchecked, Entry::file(5, ODD), Entry::file(5, ODD + 3600 * SECOND) => Refuted,
            reply_lying_about_the_time: Unchecked, Entry::file(5, ODD), Entry::file(5, 1_764_000_000 * SECOND)
                => Refuted,
            another_size_listed: Unchecked, Entry::file(5, ODD), Entry::file(4, ODD) => Refuted,
            listed_as_a_folder: Unchecked, Entry::file(0, ODD), Entry::dir() => Refuted,
            refuted_for_the_rest_of_the_run: Refuted, Entry::file(5, ODD), Entry::file(5, ODD) => Refuted,
            confirmed_stays: Confirmed, Entry::file(5, ODD + SECOND), Entry::file(5, ODD + SECOND) => Confirmed,
        }

        #[test]
        fn a_refutation_wins_over_a_confirmation() {
            let cell = AtomicU8::new(MfmtReplies::Unchecked as u8);
            MfmtReplies::Confirmed.store(&cell);
            assert_eq!(MfmtReplies::load(&cell), MfmtReplies::Confirmed);
            MfmtReplies::Refuted.store(&cell);
            MfmtReplies::Confirmed.store(&cell);
            MfmtReplies::Unchecked.store(&cell);
            assert_eq!(MfmtReplies::load(&cell), MfmtReplies::Refuted);
        }
    }
}
