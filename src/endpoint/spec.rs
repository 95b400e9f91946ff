//! The endpoint spec: a side of a pair as the user gave it (`--source`, `--destination`, or a
//! side of a config item), parsed once into a local folder or an FTP/FTPS folder.
//!
//! This module owns that parse and the side's URL (`EndpointSpec::url`), which is both what
//! messages show and the input of the pair id. There is one parser because there were three
//! (the FTP endpoint's, the engine's and the CLI's), each with its own idea of ports, IPv6,
//! percent-encoding and `..`: a side the CLI stored in the config could then name another folder,
//! or another pair id, when the engine read it back. One parser gives one answer everywhere.
//!
//! What it accepts:
//! - `ftp://[USER[:PASSWORD]@]HOST[:PORT][/DIR]`, and `ftps://` alike (explicit TLS). Parsed
//!   with the `url` crate, then held to stricter rules than a browser's: no `.` or `..` in the
//!   folder (the `url` crate would silently resolve them, so they are looked for in the text as
//!   given), no query or fragment, no control characters, no `\`.
//! - `file:///PATH` (or `file://localhost/PATH`): a local folder. Accepted because it is what a
//!   file manager copies and some tools print; it is the same side, and the same pair id, as
//!   `/PATH`. Held to the FTP rules (no `.`/`..`, no query) as it too goes through the `url` crate.
//! - Anything else with a `:` before its first `/`: a scheme we do not sync (`sftp://`,
//!   `http://`, ...) or an scp/rsync-style remote side (`host:dir`), refused by name rather than
//!   taken as a local folder whose name happens to hold a `:`. Such a folder is `./host:dir`.
//! - Everything else: a local folder, made absolute without touching the file system.
//!
//! A password in a URL is handed back apart, as a [`Secret`], and no error names it.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use url::{ParseError, Url};

use crate::endpoint::credentials::{self, Auth, Secret};
use crate::endpoint::ftp::{self, FtpOptions};
use crate::endpoint::local::LocalEndpoint;
use crate::endpoint::{Endpoint, EndpointError, ErrorKind};

/// A side of a pair as given, parsed once: a local folder or an FTP/FTPS folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSpec {
    /// Absolute; `..` kept, as resolving it without the file system could name another folder.
    Local(PathBuf),
    Ftp(FtpUrl),
}

/// Where an FTP side is: `ftp[s]://[user@]host[:port]/dir`, without its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpUrl {
    /// `ftps://`: explicit TLS (AUTH TLS on the usual port).
    pub tls: bool,
    /// Percent-decoded; `None` when the URL has none (or an empty one).
    pub user: Option<String>,
    /// As written when the `url` crate only changed its case (so that the pair id of an existing
    /// URL stays what it was); otherwise as the `url` crate normalizes it (IDNA, IPv4, IPv6
    /// compressed). An IPv6 address keeps its brackets, so `host:port` is still an address.
    pub host: String,
    pub port: u16,
    /// Percent-decoded, absolute, without a trailing '/' or empty names; the server's root is "".
    pub dir: String,
}

/// Why a side could not be parsed. No message holds a password: a URL is shown only through
/// [`without_password`], and a port is named only when it cannot be part of one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("empty: give a local folder or an ftp:// or ftps:// URL")]
    Empty,
    /// A scheme or a remote-shell form we do not sync; `given` is shown without its password.
    #[error("unsupported: {given}: {hint}")]
    Unsupported { given: String, hint: &'static str },
    /// The `url` crate would drop it (tab, CR, LF) or it has no place in a URL.
    #[error("a control character in the URL; percent-encode it if a name has one")]
    ControlChar,
    /// The `url` crate would trim it: the folder would silently be another one.
    #[error("a space at the end of the URL; percent-encode it (%20) if the folder's name has one")]
    EdgeSpace,
    /// The `url` crate reads `\` as `/` in an FTP URL; a name on a server never has one.
    #[error("a '\\' in the URL: separate folders with '/' (a '\\' in a user name or password is %5C)")]
    Backslash,
    #[error("no server in the URL")]
    NoHost,
    /// The port as written, when it cannot be part of a password.
    #[error("{}", bad_port(.0))]
    BadPort(Option<String>),
    /// The `url` crate's reason (which never quotes the input).
    #[error("not a valid URL: {0}")]
    BadUrl(String),
    #[error("a '?' or '#' in the URL: percent-encode it (%3F, %23) if a name has one")]
    QueryOrFragment,
    #[error("'.' and '..' are not allowed in the folder")]
    DotComponent,
    /// A NUL, CR or LF, once percent-decoded: it would end an FTP command early.
    #[error("a NUL, CR or LF in the {what}")]
    BadChar { what: &'static str },
    #[error("the {what} is not UTF-8 once percent-decoded")]
    NotUtf8 { what: &'static str },
    #[error("a file:// URL must name a folder on this machine: file:///PATH")]
    NotLocalFile,
    #[error("{path}: cannot make it absolute: {reason}")]
    NotAbsolute { path: String, reason: String },
}

fn bad_port(port: &Option<String>) -> String {
    match port {
        Some(port) => format!("bad port {port:?}"),
        None => "bad port (a '/', '?' or '#' in a password must be percent-encoded: %2F, %3F, %23)".into(),
    }
}

/// What `Unsupported` says of a scheme.
const SUPPORTED: &str = "pairsync syncs local folders, ftp:// and ftps://";
/// What `Unsupported` says of `host:dir` (which scp, rsync and git read as a remote side).
const REMOTE_SHELL: &str = "a remote side as scp writes it; pairsync syncs local folders, ftp:// and ftps:// \
                            (ftp://HOST/DIR), and a local folder with ':' in its name is ./NAME";

impl EndpointSpec {
    /// Parses `given`; a password in an FTP URL is returned apart (as a [`Secret`]), never kept
    /// in the spec. No file system access: a local path is made absolute, not canonical.
    pub fn parse(given: &str) -> Result<(EndpointSpec, Option<Secret>), SpecError> {
        if given.is_empty() {
            return Err(SpecError::Empty);
        }
        match shape(given) {
            Shape::Local => Ok((EndpointSpec::Local(absolute(given)?), None)),
            Shape::RemoteShell => Err(SpecError::Unsupported { given: without_password(given), hint: REMOTE_SHELL }),
            Shape::Url { scheme, rest } => match scheme.to_ascii_lowercase().as_str() {
                "ftp" => ftp(false, given, rest).map(|(url, password)| (EndpointSpec::Ftp(url), password)),
                "ftps" => ftp(true, given, rest).map(|(url, password)| (EndpointSpec::Ftp(url), password)),
                "file" => Ok((EndpointSpec::Local(file(given, rest)?), None)),
                _ => Err(SpecError::Unsupported { given: without_password(given), hint: SUPPORTED }),
            },
        }
    }

    /// The side as a URL for messages and the pair id: a local path as given (display), an FTP
    /// side as `ftp[s]://USER@HOST:PORT/DIR/` with USER "anonymous" when none.
    pub fn url(&self) -> String {
        match self {
            EndpointSpec::Local(path) => path.display().to_string(),
            EndpointSpec::Ftp(url) => url.display(url.user.as_deref().unwrap_or("anonymous")),
        }
    }

    /// The spec with a local path canonical (symlinks resolved) when it exists, else as it is:
    /// for the engine, so that two spellings of one folder are one pair. Touches the file system,
    /// which is why `parse` does not.
    pub fn canonical(self) -> EndpointSpec {
        match self {
            // A folder not there yet (a first run creates it) is named by its canonical parent,
            // so that its pair id is the one it will have once it exists.
            EndpointSpec::Local(path) => EndpointSpec::Local(path.canonicalize().unwrap_or_else(|_| {
                match (path.parent().and_then(|p| p.canonicalize().ok()), path.file_name()) {
                    (Some(parent), Some(name)) => parent.join(name),
                    _ => path,
                }
            })),
            ftp => ftp,
        }
    }
}

/// Why a pair of sides cannot be synced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    #[error("source and destination are the same folder: {0}")]
    Same(String),
    #[error("{inner} is inside {outer}: one root inside the other would sync into itself")]
    Nested { inner: String, outer: String },
}

/// Refuses a pair that would sync a folder with itself: the same side twice, or one local root
/// inside the other. Give canonical specs ([`EndpointSpec::canonical`]) where the folders exist.
pub fn check_pair(source: &EndpointSpec, destination: &EndpointSpec) -> Result<(), PairError> {
    if source.url() == destination.url() {
        return Err(PairError::Same(source.url()));
    }
    if let (EndpointSpec::Local(a), EndpointSpec::Local(b)) = (source, destination) {
        for (inner, outer) in [(a, b), (b, a)] {
            if inner.starts_with(outer) {
                return Err(PairError::Nested {
                    inner: inner.display().to_string(),
                    outer: outer.display().to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Opens the side. For FTP: credentials (`auth`, then ~/.netrc), then a login; a server that
/// cannot be reached is `Unreachable`, a refused login `Refused`. `tag` names this pair's temp
/// files; `connections` caps an FTP side's parallel transfers.
pub fn open(
    spec: &EndpointSpec,
    auth: &Auth,
    tag: &str,
    connections: usize,
) -> Result<Box<dyn Endpoint>, EndpointError> {
    let url = match spec {
        EndpointSpec::Local(path) => return Ok(Box::new(LocalEndpoint::new(path.clone(), tag))),
        EndpointSpec::Ftp(url) => url,
    };
    let env = |name: &str| std::env::var(name).ok();
    let netrc = credentials::netrc_path(&env);
    let credentials = credentials::resolve(url.user.as_deref(), url.bare_host(), auth, &env, netrc.as_deref())
        .map_err(|e| EndpointError::new(ErrorKind::Refused, e.to_string()))?;
    let options =
        FtpOptions { tag: tag.to_string(), connections, tls_verify: !auth.insecure_tls, ..FtpOptions::default() };
    ftp::open(url.clone(), credentials, options)
}

impl fmt::Display for EndpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

impl FtpUrl {
    /// The host to connect to and to name in TLS and ~/.netrc: an IPv6 address without its
    /// brackets.
    /// An FTP side from a config item's fields, taken literally (no percent-decoding: a config
    /// file holds names as they are): `server` is `HOST[:PORT]`, `directory` the folder on it.
    /// Held to the rules of a URL given on the command line, so that an item stores only what
    /// `sync` would take.
    pub fn from_fields(tls: bool, user: Option<&str>, server: &str, directory: &str) -> Result<FtpUrl, SpecError> {
        if server.contains(['@', '/', '?', '#']) {
            return Err(SpecError::BadUrl(format!("the server {server:?} is HOST or HOST:PORT only")));
        }
        let (mut url, _) = ftp(tls, &format!("ftp://{server}"), server)?;
        if directory.chars().any(char::is_control) {
            return Err(SpecError::ControlChar);
        }
        let mut dir = String::new();
        for name in directory.split('/').filter(|name| !name.is_empty()) {
            if name == "." || name == ".." {
                return Err(SpecError::DotComponent);
            }
            dir.push('/');
            dir.push_str(name);
        }
        url.user = user.filter(|u| !u.is_empty()).map(str::to_string);
        url.dir = dir;
        Ok(url)
    }

    pub fn bare_host(&self) -> &str {
        self.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&self.host)
    }

    /// The URL with `user` (the one that logs in) and without password, for messages and the
    /// pair id: `ftp[s]://USER@HOST:PORT/DIR/`, the root being `ftp[s]://USER@HOST:PORT/`. Names
    /// are shown decoded, as they are on the server; this string must not change for a URL that
    /// parsed before, or its pair would lose its state.
    pub fn display(&self, user: &str) -> String {
        let scheme = if self.tls { "ftps" } else { "ftp" };
        format!("{scheme}://{user}@{}:{}{}/", self.host, self.port, self.dir)
    }
}

/// `given` with anything that may be a password (from the first ':' of the user part up to the
/// last '@') shown as `***`: for showing a side in a message. It may hide more than the password
/// (a path with '@' in it), never less.
pub fn without_password(given: &str) -> String {
    let Some(at) = given.rfind('@') else { return given.to_string() };
    let start = given.find("://").map_or(0, |i| i + 3).min(at);
    match given[start..at].find(':') {
        Some(colon) => format!("{}***{}", &given[..start + colon + 1], &given[at..]),
        None => given.to_string(),
    }
}

/// What kind of text a side is, before parsing it.
enum Shape<'a> {
    Local,
    /// `scheme://rest`.
    Url {
        scheme: &'a str,
        rest: &'a str,
    },
    /// `host:dir`, `user@host:/dir`, or a known scheme without `//`.
    RemoteShell,
}

/// A `:` before the first `/`, with text before it, makes a URL (`scheme://`) or a remote-shell
/// side; a `:` further on is part of a local name (`./a:b`, `/x/a:b`).
fn shape(given: &str) -> Shape<'_> {
    let head = &given[..given.find('/').unwrap_or(given.len())];
    let Some(colon) = head.find(':').filter(|&c| c > 0) else { return Shape::Local };
    let (scheme, after) = (&given[..colon], &given[colon + 1..]);
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    match after.strip_prefix("//") {
        Some(rest) if is_scheme => Shape::Url { scheme, rest },
        _ => Shape::RemoteShell,
    }
}

/// A local folder, absolute, without `.` components, repeated or trailing slashes (so that
/// `x` and `x/` are one pair id); `..` stays, as only the file system can resolve it.
fn absolute(given: &str) -> Result<PathBuf, SpecError> {
    let path = std::path::absolute(given)
        .map_err(|e| SpecError::NotAbsolute { path: given.to_string(), reason: e.to_string() })?;
    Ok(tidy(&path))
}

fn tidy(path: &Path) -> PathBuf {
    path.components().filter(|c| *c != Component::CurDir).collect()
}

/// Refuses what the `url` crate would silently drop or reinterpret in the text as given.
fn check_raw(given: &str) -> Result<(), SpecError> {
    if given.chars().any(|c| c.is_ascii_control()) {
        return Err(SpecError::ControlChar);
    }
    if given.ends_with(' ') {
        return Err(SpecError::EdgeSpace);
    }
    if given.contains('\\') {
        return Err(SpecError::Backslash);
    }
    Ok(())
}

/// True when a name of the path as written is `.` or `..`, percent-encoded or not: the `url`
/// crate resolves them (`/a/../../etc` is `/etc` to it), so they must be caught before.
fn has_dot_name(raw_path: &str) -> bool {
    raw_path.split('/').map(percent_decode).any(|name| name == b"." || name == b"..")
}

/// Percent-decodes; a `%` not followed by two hex digits stays as it is (as the `url` crate
/// leaves it).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b))) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A percent-decoded part of an FTP URL, which goes into an FTP command as it is: a NUL, CR or
/// LF would end that command and start another.
fn decoded(text: &str, what: &'static str) -> Result<String, SpecError> {
    let text = String::from_utf8(percent_decode(text)).map_err(|_| SpecError::NotUtf8 { what })?;
    if text.contains(['\0', '\r', '\n']) {
        return Err(SpecError::BadChar { what });
    }
    Ok(text)
}

/// An `ftp://` or `ftps://` URL, `rest` being what follows `scheme://`.
fn ftp(tls: bool, given: &str, rest: &str) -> Result<(FtpUrl, Option<Secret>), SpecError> {
    check_raw(given)?;
    let (authority, after) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, hostport)| hostport);
    // The url crate skips any number of slashes before the server of an ftp URL: to it,
    // `ftp:///x` is the server `x`.
    if hostport.is_empty() {
        return Err(SpecError::NoHost);
    }
    // Parsed as `ftp` either way: the url crate knows ftp (default port 21, host rules) but not
    // ftps, which it would hold to the looser rules of an unknown scheme.
    let url = Url::parse(&format!("ftp://{rest}")).map_err(|e| match e {
        ParseError::EmptyHost => SpecError::NoHost,
        ParseError::InvalidPort => SpecError::BadPort(port_as_written(authority, hostport, after)),
        e => SpecError::BadUrl(e.to_string()),
    })?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(SpecError::QueryOrFragment);
    }
    if has_dot_name(after) {
        return Err(SpecError::DotComponent);
    }
    let user = Some(decoded(url.username(), "user name")?).filter(|user| !user.is_empty());
    let password = url.password().map(|p| decoded(p, "password")).transpose()?.map(Secret::new);
    let host = host_as_written(url.host_str().ok_or(SpecError::NoHost)?, hostport);
    let port = url.port_or_known_default().unwrap_or(21);
    if port == 0 {
        return Err(SpecError::BadPort(port_as_written(authority, hostport, after)));
    }
    Ok((FtpUrl { tls, user, host: host.to_string(), port, dir: folder(url.path())? }, password))
}

/// The host as written in `hostport` when the url crate only changed its case (it lowercases
/// names and IPv6 addresses), so that the pair id of a URL that parsed before stays the same;
/// else as the url crate has it.
fn host_as_written<'a>(parsed: &'a str, hostport: &'a str) -> &'a str {
    match hostport.split_at_checked(parsed.len()) {
        Some((written, tail)) if written.eq_ignore_ascii_case(parsed) && (tail.is_empty() || tail.starts_with(':')) => {
            written
        }
        _ => parsed,
    }
}

/// The folder of an FTP URL: decoded, then split, so that a `%2F` separates names like a `/`
/// (no name on a server holds one) and cannot smuggle a `..` past the check of the raw text.
fn folder(path: &str) -> Result<String, SpecError> {
    let path = decoded(path, "folder")?;
    let mut dir = String::new();
    for name in path.split('/').filter(|name| !name.is_empty()) {
        if name == "." || name == ".." {
            return Err(SpecError::DotComponent);
        }
        dir.push('/');
        dir.push_str(name);
    }
    Ok(dir)
}

/// The port as written, to name in an error; `None` when it may be part of a password: a '/',
/// '?' or '#' in a password ends the server part early, so that `user:pass/word@host` reads as
/// the server `user`, port `pass`. That is so when an '@' comes after the server part.
fn port_as_written(authority: &str, hostport: &str, after: &str) -> Option<String> {
    if !authority.contains('@') && after.contains('@') {
        return None;
    }
    let port = match hostport.strip_prefix('[') {
        Some(v6) => v6.split_once(']').and_then(|(_, tail)| tail.strip_prefix(':')),
        None => hostport.rsplit_once(':').map(|(_, port)| port),
    };
    Some(port.unwrap_or_default().to_string())
}

/// A `file://` URL as a local folder, `rest` being what follows `file://`.
fn file(given: &str, rest: &str) -> Result<PathBuf, SpecError> {
    check_raw(given)?;
    let url = Url::parse(&format!("file://{rest}")).map_err(|e| SpecError::BadUrl(e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(SpecError::QueryOrFragment);
    }
    let raw_path = &rest[rest.find('/').unwrap_or(rest.len())..];
    if has_dot_name(raw_path) {
        return Err(SpecError::DotComponent);
    }
    let path = url.to_file_path().map_err(|()| SpecError::NotLocalFile)?;
    // Like an FTP folder; a local path given as such cannot hold a NUL at all.
    if path.as_os_str().as_encoded_bytes().iter().any(|b| b"\0\r\n".contains(b)) {
        return Err(SpecError::BadChar { what: "folder" });
    }
    Ok(tidy(&path))
}

#[cfg(test)]
mod tests {

    #[test]
    fn config_fields_follow_the_url_rules() {
        let url = FtpUrl::from_fields(false, Some("bob"), "[::1]:2121", "/backups/a b/").unwrap();
        assert_eq!(url.display("bob"), "ftp://bob@[::1]:2121/backups/a b/");
        assert_eq!(url.bare_host(), "::1");
        let url = FtpUrl::from_fields(true, None, "h", "").unwrap();
        assert_eq!((url.port, url.dir.as_str(), url.user), (21, "", None));
        for (server, dir) in [("h:notaport", "/x"), ("h", "/a/../../etc"), ("", "/x"), ("u@h", "/x"), ("h", "/a\nb")] {
            assert!(FtpUrl::from_fields(false, None, server, dir).is_err(), "{server} {dir:?}");
        }
    }
    use super::*;

    /// One test per row, so that a failure names the case: `given => (tls, user, host, port,
    /// dir), password, url()`.
    macro_rules! ftp {
        ($($case:ident: $given:expr => ($tls:expr, $user:expr, $host:expr, $port:expr, $dir:expr), $password:expr, $url:expr;)*) => {
            $(
                #[test]
                fn $case() {
                    let (spec, password) = EndpointSpec::parse($given).unwrap();
                    let user: Option<&str> = $user;
                    let want = FtpUrl { tls: $tls, user: user.map(str::to_string), host: $host.into(), port: $port, dir: $dir.into() };
                    assert_eq!(spec, EndpointSpec::Ftp(want));
                    assert_eq!(password.as_ref().map(Secret::expose), $password);
                    assert_eq!(spec.url(), $url);
                    assert_eq!(spec.to_string(), $url);
                }
            )*
        };
    }

    mod ftp {
        use super::*;

        ftp! {
            user_password_port_folder: "ftp://bob:pw@files.example.com:2121/backups/alice"
                => (false, Some("bob"), "files.example.com", 2121, "/backups/alice"), Some("pw"),
                "ftp://bob@files.example.com:2121/backups/alice/";
            trailing_slash_is_the_same_folder: "ftp://bob:pw@files.example.com:2121/backups/alice/"
                => (false, Some("bob"), "files.example.com", 2121, "/backups/alice"), Some("pw"),
                "ftp://bob@files.example.com:2121/backups/alice/";
            no_user_is_anonymous: "ftp://h/x" => (false, None, "h", 21, "/x"), None, "ftp://anonymous@h:21/x/";
            root_without_slash: "ftp://h" => (false, None, "h", 21, ""), None, "ftp://anonymous@h:21/";
            root_with_slash: "ftp://u@h/" => (false, Some("u"), "h", 21, ""), None, "ftp://u@h:21/";
            root_with_slashes: "ftp://u@h///" => (false, Some("u"), "h", 21, ""), None, "ftp://u@h:21/";
            ftps_default_port_is_21_like_ftp: "ftps://h" => (true, None, "h", 21, ""), None, "ftps://anonymous@h:21/";
            ftps_explicit_port: "ftps://u:p@h:990/a/b" => (true, Some("u"), "h", 990, "/a/b"), Some("p"), "ftps://u@h:990/a/b/";
            explicit_21_is_kept_as_21: "ftp://h:21/x" => (false, None, "h", 21, "/x"), None, "ftp://anonymous@h:21/x/";
            ftps_explicit_21: "ftps://h:21/x" => (true, None, "h", 21, "/x"), None, "ftps://anonymous@h:21/x/";
            empty_port_is_the_default: "ftp://h:/x" => (false, None, "h", 21, "/x"), None, "ftp://anonymous@h:21/x/";
            scheme_case_insensitive: "FTPS://h/x" => (true, None, "h", 21, "/x"), None, "ftps://anonymous@h:21/x/";
            ipv6_with_port: "ftp://[::1]:2121/x" => (false, None, "[::1]", 2121, "/x"), None, "ftp://anonymous@[::1]:2121/x/";
            ipv6_without_port: "ftp://[::1]/x" => (false, None, "[::1]", 21, "/x"), None, "ftp://anonymous@[::1]:21/x/";
            ipv6_ftps: "ftps://u@[2001:db8::7]:2121" => (true, Some("u"), "[2001:db8::7]", 2121, ""), None,
                "ftps://u@[2001:db8::7]:2121/";
            ipv6_case_kept_as_written: "ftp://[::ABCD]/x" => (false, None, "[::ABCD]", 21, "/x"), None,
                "ftp://anonymous@[::ABCD]:21/x/";
            ipv4: "ftp://192.168.1.5:2121/x" => (false, None, "192.168.1.5", 2121, "/x"), None,
                "ftp://anonymous@192.168.1.5:2121/x/";
            // The pair id of an existing URL must not change: the url crate lowercases hosts.
            host_case_kept_as_written: "ftp://Files.Example.COM/x" => (false, None, "Files.Example.COM", 21, "/x"), None,
                "ftp://anonymous@Files.Example.COM:21/x/";
            ftps_host_case_kept_as_written: "ftps://NAS:2121/x" => (true, None, "NAS", 2121, "/x"), None,
                "ftps://anonymous@NAS:2121/x/";
            international_host_as_punycode: "ftp://bücher.example/x" => (false, None, "xn--bcher-kva.example", 21, "/x"), None,
                "ftp://anonymous@xn--bcher-kva.example:21/x/";
            ftps_international_host_as_punycode: "ftps://bücher.example/x" => (true, None, "xn--bcher-kva.example", 21, "/x"),
                None, "ftps://anonymous@xn--bcher-kva.example:21/x/";
            percent_encoded_user: "ftp://alice%40example.com@h/x" => (false, Some("alice@example.com"), "h", 21, "/x"), None,
                "ftp://alice@example.com@h:21/x/";
            // As the config items build it today: a user name with '@', not encoded.
            unencoded_at_in_user: "ftp://alice@example.com@h/x" => (false, Some("alice@example.com"), "h", 21, "/x"), None,
                "ftp://alice@example.com@h:21/x/";
            percent_encoded_password: "ftp://u:p%40ss%2Fw%3Ard%25@h/x" => (false, Some("u"), "h", 21, "/x"), Some("p@ss/w:rd%"),
                "ftp://u@h:21/x/";
            password_with_colon: "ftp://u:a:b@h/x" => (false, Some("u"), "h", 21, "/x"), Some("a:b"), "ftp://u@h:21/x/";
            password_without_user: "ftp://:pw@h/x" => (false, None, "h", 21, "/x"), Some("pw"), "ftp://anonymous@h:21/x/";
            empty_password_is_none: "ftp://u:@h/x" => (false, Some("u"), "h", 21, "/x"), None, "ftp://u@h:21/x/";
            empty_user_is_none: "ftp://@h/x" => (false, None, "h", 21, "/x"), None, "ftp://anonymous@h:21/x/";
            percent_encoded_folder: "ftp://h/My%20Files/caf%C3%A9" => (false, None, "h", 21, "/My Files/café"), None,
                "ftp://anonymous@h:21/My Files/café/";
            space_and_unicode_as_written: "ftp://h/My Files/café" => (false, None, "h", 21, "/My Files/café"), None,
                "ftp://anonymous@h:21/My Files/café/";
            encoded_slash_separates: "ftp://h/a%2Fb" => (false, None, "h", 21, "/a/b"), None, "ftp://anonymous@h:21/a/b/";
            repeated_slashes_collapse: "ftp://h//a///b/" => (false, None, "h", 21, "/a/b"), None, "ftp://anonymous@h:21/a/b/";
            three_dots_is_a_name: "ftp://h/.../x" => (false, None, "h", 21, "/.../x"), None, "ftp://anonymous@h:21/.../x/";
            dot_inside_a_name: "ftp://h/.a/b..c" => (false, None, "h", 21, "/.a/b..c"), None, "ftp://anonymous@h:21/.a/b..c/";
            lone_percent_kept: "ftp://h/100%/x%zz" => (false, None, "h", 21, "/100%/x%zz"), None,
                "ftp://anonymous@h:21/100%/x%zz/";
            at_in_folder: "ftp://h:2121/backups/alice@example.com" => (false, None, "h", 2121, "/backups/alice@example.com"),
                None, "ftp://anonymous@h:2121/backups/alice@example.com/";
            colon_in_folder: "ftp://h/a:b" => (false, None, "h", 21, "/a:b"), None, "ftp://anonymous@h:21/a:b/";
        }
    }

    /// `given => path`, relative paths being relative to the current folder.
    macro_rules! local {
        ($($case:ident: $given:expr => $path:expr;)*) => {
            $(
                #[test]
                fn $case() {
                    let (spec, password) = EndpointSpec::parse($given).unwrap();
                    let want = std::env::current_dir().unwrap().join($path);
                    assert_eq!(spec, EndpointSpec::Local(want.clone()));
                    assert!(password.is_none());
                    assert_eq!(spec.url(), want.display().to_string());
                }
            )*
        };
    }

    mod local {
        use std::os::unix::ffi::OsStrExt;

        use super::*;

        local! {
            absolute: "/srv/data" => "/srv/data";
            relative: "a/b" => "a/b";
            trailing_slash_dropped: "/srv/data/" => "/srv/data";
            dot_dropped: "./a/./b" => "a/b";
            dot_dot_kept: "/srv/a/../b" => "/srv/a/../b";
            colon_after_a_slash: "./a:b" => "a:b";
            colon_in_a_later_name: "/x/a:b" => "/x/a:b";
            scheme_like_text_after_a_slash: "./ftp://h/x" => "ftp:/h/x";
            leading_colon: ":a" => ":a";
            at_sign: "alice@example" => "alice@example";
            file_url: "file:///srv/data" => "/srv/data";
            file_url_localhost: "file://localhost/srv/data/" => "/srv/data";
            file_url_decoded: "file:///srv/My%20Files" => "/srv/My Files";
            file_url_case_insensitive_scheme: "FILE:///srv" => "/srv";
            file_url_not_utf8_is_a_local_name: "file:///srv/%FF" => std::ffi::OsStr::from_bytes(b"/srv/\xFF");
        }
    }

    /// `given => error`.
    macro_rules! invalid {
        ($($case:ident: $given:expr => $error:expr;)*) => {
            $(
                #[test]
                fn $case() {
                    assert_eq!(EndpointSpec::parse($given).map(|(spec, _)| spec), Err($error));
                }
            )*
        };
    }

    mod invalid {
        use super::*;
        use SpecError::*;

        fn unsupported(given: &str) -> SpecError {
            Unsupported { given: given.into(), hint: SUPPORTED }
        }

        fn remote_shell(given: &str) -> SpecError {
            Unsupported { given: given.into(), hint: REMOTE_SHELL }
        }

        invalid! {
            empty: "" => Empty;
            sftp: "sftp://bob@h/x" => unsupported("sftp://bob@h/x");
            sftp_password_hidden: "sftp://bob:pw@h/x" => unsupported("sftp://bob:***@h/x");
            http: "http://h/x" => unsupported("http://h/x");
            s3: "s3://bucket/x" => unsupported("s3://bucket/x");
            scp_user_host_dir: "bob@h:/backups" => remote_shell("bob@h:/backups");
            scp_host_relative_dir: "h:backups" => remote_shell("h:backups");
            scp_host_only: "h:" => remote_shell("h:");
            scp_password_hidden: "bob:pw@h:/x" => remote_shell("bob:***@h:/x");
            ftp_without_slashes: "ftp:/h/x" => remote_shell("ftp:/h/x");
            no_host: "ftp:///x" => NoHost;
            no_host_at_all: "ftp://" => NoHost;
            no_host_after_user: "ftp://u@/x" => NoHost;
            no_host_after_password: "ftps://u:pw@:21/x" => NoHost;
            port_not_a_number: "ftp://h:notaport/x" => BadPort(Some("notaport".into()));
            ftps_port_not_a_number: "ftps://h:notaport/x" => BadPort(Some("notaport".into()));
            port_too_large: "ftp://h:65536/x" => BadPort(Some("65536".into()));
            port_zero: "ftp://h:0/x" => BadPort(Some("0".into()));
            ipv6_port_not_a_number: "ftp://[::1]:x21/x" => BadPort(Some("x21".into()));
            // A '/' in a password ends the server part: "pa" would be the port.
            port_that_may_be_a_password: "ftp://bob:pa/ss@h/x" => BadPort(None);
            port_zero_that_may_be_a_password: "ftp://bob:0/ss@h/x" => BadPort(None);
            bad_ipv6: "ftp://[::1/x" => BadUrl("invalid IPv6 address".into());
            space_in_host: "ftp://a b/x" => BadUrl("invalid international domain name".into());
            dot_dot: "ftp://h/a/../../etc" => DotComponent;
            dot_dot_at_the_end: "ftp://h/a/.." => DotComponent;
            dot: "ftp://h/a/./b" => DotComponent;
            dot_alone: "ftp://h/." => DotComponent;
            dot_dot_encoded: "ftp://h/a/%2e%2E/b" => DotComponent;
            dot_dot_half_encoded: "ftp://h/a/.%2e/b" => DotComponent;
            dot_encoded: "ftps://h/%2e/b" => DotComponent;
            dot_dot_behind_an_encoded_slash: "ftp://h/a%2F..%2Fb" => DotComponent;
            query: "ftp://h/x?type=a" => QueryOrFragment;
            empty_query: "ftp://h/x?" => QueryOrFragment;
            fragment: "ftps://h/x#top" => QueryOrFragment;
            query_on_the_server: "ftp://h?x" => QueryOrFragment;
            nul_in_folder: "ftp://h/a%00b" => BadChar { what: "folder" };
            cr_lf_in_folder: "ftp://h/a%0D%0ADELE%20x" => BadChar { what: "folder" };
            lf_in_user: "ftp://u%0A@h/x" => BadChar { what: "user name" };
            cr_in_password: "ftp://u:p%0D@h/x" => BadChar { what: "password" };
            folder_not_utf8: "ftp://h/%FF" => NotUtf8 { what: "folder" };
            // The url crate would drop these and name another folder.
            tab: "ftp://h/a\tb" => ControlChar;
            raw_newline: "ftp://h/a\nb" => ControlChar;
            trailing_space: "ftp://h/x " => EdgeSpace;
            backslash: "ftp://h\\x" => Backslash;
            backslash_in_folder: "ftp://h/a\\..\\b" => Backslash;
            file_on_another_host: "file://other/srv" => NotLocalFile;
            file_dot_dot: "file:///srv/a/../b" => DotComponent;
            file_query: "file:///srv?x" => QueryOrFragment;
            file_nul: "file:///srv/a%00" => BadChar { what: "folder" };
        }
    }

    #[test]
    fn messages_name_what_was_given_and_what_is_supported() {
        let message = |given| EndpointSpec::parse(given).unwrap_err().to_string();
        assert_eq!(message("sftp://h/x"), "unsupported: sftp://h/x: pairsync syncs local folders, ftp:// and ftps://");
        assert!(message("bob@h:/x").contains("ftp://HOST/DIR"), "{}", message("bob@h:/x"));
        assert_eq!(message("ftp://h:notaport/x"), "bad port \"notaport\"");
        assert_eq!(message("ftp://h/a/../b"), "'.' and '..' are not allowed in the folder");
        assert_eq!(message("ftp:///x"), "no server in the URL");
    }

    #[test]
    fn no_error_or_debug_output_holds_the_password() {
        for given in [
            "sftp://bob:s3cr3t@h/x",
            "bob:s3cr3t@h:/x",
            "ftp://bob:s3cr3t@h:notaport/x",
            "ftp://bob:s3cr3t/x@h/d",
            "ftp://bob:s3cr3t?x@h/d",
            "ftp://bob:s3cr3t#x@h/d",
            "ftp://bob:s3cr3t@h/a/../b",
            "ftp://bob:s3cr3t@h/x?q",
            "ftp://bob:s3cr3t%0A@h/x",
            "ftp://bob:s3cr3t%FF@h/x",
            "ftp://bob:s3cr3t\\@h/x",
            "ftp://bob:s3cr3t@/x",
            "ftp://bob:s3cr3t@[::1/x",
            "ftp://bob:s3cr3t@h/x ",
            "ftp://bob:s3cr3t@h/\tx",
            "file://bob:s3cr3t@h/x",
        ] {
            let error = EndpointSpec::parse(given).unwrap_err();
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(!shown.contains("s3cr3t"), "{given}: {shown}");
            }
        }
        let parsed = EndpointSpec::parse("ftp://bob:s3cr3t@h/x").unwrap();
        for shown in [parsed.0.url(), format!("{parsed:?}")] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        assert_eq!(parsed.1.unwrap().expose(), "s3cr3t");
    }

    #[test]
    fn without_password_hides_from_the_first_colon_of_the_user_part_to_the_last_at() {
        for (given, shown) in [
            ("sftp://bob:pw@h/x", "sftp://bob:***@h/x"),
            ("sftp://bob:p@w@h/x", "sftp://bob:***@h/x"),
            ("sftp://bob@h:22/x", "sftp://bob@h:22/x"),
            ("sftp://h:22/x@y", "sftp://h:***@y"),
            ("bob:pw@h:/x", "bob:***@h:/x"),
            ("bob@h:/x", "bob@h:/x"),
            ("/local/path", "/local/path"),
        ] {
            assert_eq!(without_password(given), shown, "{given}");
        }
    }

    #[test]
    fn canonical_resolves_an_existing_folder_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("a")).unwrap();
        std::os::unix::fs::symlink(real.join("a"), real.join("link")).unwrap();
        let local = |path: &Path| EndpointSpec::parse(path.to_str().unwrap()).unwrap().0;
        assert_eq!(local(&real.join("link")).canonical(), EndpointSpec::Local(real.join("a")));
        assert_eq!(local(&real.join("a/../a")).canonical(), EndpointSpec::Local(real.join("a")));
        let missing = real.join("missing/../x");
        assert_eq!(local(&missing).canonical(), EndpointSpec::Local(missing));
        let ftp = EndpointSpec::parse("ftp://h/x").unwrap().0;
        assert_eq!(ftp.clone().canonical(), ftp);
    }
}
