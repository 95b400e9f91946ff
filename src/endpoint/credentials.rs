//! Credentials of an FTP side: a password given outright (an item's `password`, or one taken
//! from a URL), the environment variable named by `password_env`, or the netrc file ($NETRC,
//! else ~/.netrc), in that order. No config type reaches this far: the caller says where to look.
//!
//! A password is held in a [`Secret`], whose Debug and Display print `***`: it can reach no
//! message, log line or listing by accident. Errors name where a password was looked for,
//! never what it is.

use std::fmt;
use std::path::{Path, PathBuf};

/// A password. Only [`Secret::expose`] gives the text, for the login itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where an FTP side's password comes from, before ~/.netrc, and how much to trust its server.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub password: Option<Secret>,
    /// The name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// Do not verify the FTPS server's certificate (explicitly asked for).
    pub insecure_tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("password_env names {0}, which is not set")]
    MissingEnv(String),
    #[error("{0}: cannot be read or parsed (line numbers aside, its content is never shown)")]
    BadNetrc(PathBuf),
}

/// The netrc file: $NETRC, else ~/.netrc.
pub fn netrc_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("NETRC")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".netrc")))
}

/// The user and password to log in to `host` with. Without any password: `user` (or
/// `anonymous`) with the conventional anonymous password.
pub fn resolve(
    user: Option<&str>,
    host: &str,
    auth: &Auth,
    env: &dyn Fn(&str) -> Option<String>,
    netrc: Option<&Path>,
) -> Result<Credentials, CredentialError> {
    let user = user.map(str::to_string);
    if let Some(password) = &auth.password {
        return Ok(Credentials { user: user.unwrap_or_else(|| "anonymous".into()), password: password.clone() });
    }
    if let Some(var) = &auth.password_env {
        let password = env(var).ok_or_else(|| CredentialError::MissingEnv(var.clone()))?;
        return Ok(Credentials { user: user.unwrap_or_else(|| "anonymous".into()), password: Secret::new(password) });
    }
    if let Some(path) = netrc.filter(|p| p.exists()) {
        let parsed = netrc::Netrc::from_file(path).map_err(|_| CredentialError::BadNetrc(path.to_path_buf()))?;
        let entry = parsed.hosts.get(host).or_else(|| parsed.hosts.get("default"));
        if let Some(entry) = entry.filter(|e| user.as_deref().is_none_or(|u| u == e.login)) {
            return Ok(Credentials { user: entry.login.clone(), password: Secret::new(&entry.password) });
        }
    }
    Ok(Credentials { user: user.unwrap_or_else(|| "anonymous".into()), password: Secret::new("anonymous@") })
}

#[cfg(test)]
mod tests {
    use super::*;
    const HOST: &str = "files.example.com";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_config_password_comes_first_then_the_environment() {
        let mut auth =
            Auth { password: Some(Secret::new("in-file")), password_env: Some("PW".into()), insecure_tls: false };
        let env = |k: &str| (k == "PW").then(|| "from-env".to_string());
        assert_eq!(resolve(Some("bob"), HOST, &auth, &env, None).unwrap().password.expose(), "in-file");
        auth.password = None;
        assert_eq!(resolve(Some("bob"), HOST, &auth, &env, None).unwrap().password.expose(), "from-env");
        assert_eq!(resolve(Some("bob"), HOST, &auth, &no_env, None), Err(CredentialError::MissingEnv("PW".into())));
    }

    #[test]
    fn netrc_is_matched_by_host_without_port_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netrc");
        std::fs::write(
            &path,
            "machine files.example.com login bob password s3cret\ndefault login anon password guest\n",
        )
        .unwrap();
        let none = Auth::default();
        let got = resolve(None, HOST, &none, &no_env, Some(&path)).unwrap();
        assert_eq!((got.user.as_str(), got.password.expose()), ("bob", "s3cret"));
        // A user named in the item that the netrc entry is not for gets nothing from it.
        let got = resolve(Some("carol"), HOST, &none, &no_env, Some(&path)).unwrap();
        assert_eq!((got.user.as_str(), got.password.expose()), ("carol", "anonymous@"));
        let got = resolve(None, "elsewhere", &none, &no_env, Some(&path)).unwrap();
        assert_eq!((got.user.as_str(), got.password.expose()), ("anon", "guest"));
    }

    #[test]
    fn a_secret_never_prints() {
        let creds = Credentials { user: "bob".into(), password: Secret::new("hunter2") };
        assert!(!format!("{creds:?} {}", creds.password).contains("hunter2"));
    }

    #[test]
    fn netrc_path_prefers_the_environment() {
        let env = |k: &str| match k {
            "NETRC" => Some("/etc/my-netrc".to_string()),
            "HOME" => Some("/home/a".to_string()),
            _ => None,
        };
        assert_eq!(netrc_path(&env), Some(PathBuf::from("/etc/my-netrc")));
        let env = |k: &str| (k == "HOME").then(|| "/home/a".to_string());
        assert_eq!(netrc_path(&env), Some(PathBuf::from("/home/a/.netrc")));
    }
}
