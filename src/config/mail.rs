//! The `[mail]` table: the master store, its layout, the sync log, and the replicas
//! (`[[mail.replica]]`, each an endpoint like an item's destination); and the one conversion
//! of it into a [`MailJob`].

use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item as TomlItem, Table};

use super::{check_side, syntax, Bad, Config, ConfigError, EndpointKind, Reader, SideConfig, SIDE_KEYS};
use crate::config::job::side_spec;
use crate::core::error::{Error, Result};
use crate::core::names::named;
use crate::endpoint::credentials::{Auth, Secret};
use crate::endpoint::spec::EndpointSpec;
use crate::mail::cyrus::replicate::CyrusJob;
use crate::mail::cyrus::spool::Tools;
use crate::mail::maildir::DEFAULT_IGNORE;
use crate::mail::names::Layout;
use crate::mail::replicate::MailJob;
use crate::mail::Expunge;

/// Which kind of store the master is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLayout {
    /// Maildir++ (Dovecot, Postfix, Courier).
    Maildir,
    /// A Cyrus IMAP spool, found through its imapd.conf (`cyrus_config`).
    Cyrus,
}

named!(StoreLayout { Maildir => "maildir", Cyrus => "cyrus" });

const MAIL_KEYS: [&str; 14] = [
    "store",
    "cyrus_config",
    "cyrus_tools",
    "layout",
    "user_dir",
    "sieve_dir",
    "sync_log",
    "shutdown_file",
    "default_replica",
    "expunge",
    "ignore",
    "watch",
    "log",
    "replica",
];

/// The `[mail]` table as read.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The Maildir store (empty for a Cyrus spool, which imapd.conf locates).
    pub store: PathBuf,
    /// `cyrus_config`: the master Cyrus's imapd.conf.
    pub cyrus_config: PathBuf,
    /// `cyrus_tools`: the folder of Cyrus's `mbpath`, `ctl_mboxlist`, `reconstruct`.
    pub cyrus_tools: PathBuf,
    pub layout: StoreLayout,
    pub user_dir: String,
    pub sieve_dir: Option<String>,
    pub sync_log: Option<PathBuf>,
    pub shutdown_file: Option<PathBuf>,
    pub default_replica: Option<String>,
    pub expunge: Expunge,
    pub ignore: Vec<String>,
    pub watch: bool,
    pub log: Option<PathBuf>,
    pub replicas: Vec<ReplicaConfig>,
}

/// A `[[mail.replica]]`.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub name: String,
    pub side: SideConfig,
    /// Written for ':' in message names (a FAT drive, a Windows FTP server).
    pub colon: Option<char>,
    pub connections: Option<u16>,
}

impl MailConfig {
    /// The sync log: `sync_log`, else `<state dir>/mail/log`.
    pub fn sync_log(&self, state_dir: &Path) -> PathBuf {
        self.sync_log.clone().unwrap_or_else(|| state_dir.join("mail").join("log"))
    }

    /// The mail log (`-l`): `log`, else `<state dir>/logs/mail.log`.
    pub fn log(&self, state_dir: &Path) -> PathBuf {
        self.log.clone().unwrap_or_else(|| state_dir.join("logs").join("mail.log"))
    }

    /// The job for replica `chosen` (`-S`: a replica's name, or a URL or path), else the
    /// default replica, else the only one.
    pub fn job(&self, chosen: Option<&str>, state_dir: &Path) -> Result<MailJob> {
        if self.layout == StoreLayout::Cyrus {
            return Err(Error::Usage("[mail] layout = \"cyrus\": not a Maildir store".into()));
        }
        let layout = Layout::new(&self.user_dir, self.sieve_dir.as_deref())
            .map_err(|e| Error::Usage(format!("[mail] user_dir or sieve_dir: {e}")))?;
        let chosen = self.replica(chosen)?;
        Ok(MailJob {
            store: self.store.clone(),
            layout,
            replica_name: chosen.name,
            replica: chosen.spec,
            auth: chosen.auth,
            colon: chosen.colon,
            expunge: self.expunge,
            ignore: self.ignore.clone(),
            state_dir: state_dir.to_path_buf(),
            connections: usize::from(chosen.connections.unwrap_or(4)),
        })
    }

    /// The job of a Cyrus spool: its imapd.conf read (errors name the file and line).
    pub fn cyrus_job(&self, chosen: Option<&str>, state_dir: &Path) -> Result<CyrusJob> {
        let conf = crate::mail::cyrus::conf::read(&self.cyrus_config).map_err(|e| Error::Usage(e.to_string()))?;
        let chosen = self.replica(chosen)?;
        Ok(CyrusJob {
            tools: Tools {
                dir: self.cyrus_tools.clone(),
                conf: conf.path.clone(),
                unixhierarchysep: conf.unixhierarchysep,
            },
            conf,
            replica_name: chosen.name,
            replica: chosen.spec,
            auth: chosen.auth,
            expunge: self.expunge,
            state_dir: state_dir.to_path_buf(),
            connections: usize::from(chosen.connections.unwrap_or(4)),
        })
    }

    /// Replica `chosen` (`-S`: a replica's name, or a URL or path), else the default
    /// replica, else the only one.
    fn replica(&self, chosen: Option<&str>) -> Result<Chosen> {
        let wanted = chosen.or(self.default_replica.as_deref());
        let replica = match wanted {
            Some(name) => self.replicas.iter().find(|r| r.name == name),
            None if self.replicas.len() == 1 => self.replicas.first(),
            None => {
                return Err(Error::Usage(if self.replicas.is_empty() {
                    "[mail] has no [[mail.replica]]; add one or give -S URL|PATH".into()
                } else {
                    "[mail] has several replicas and no default_replica; give -S NAME".into()
                }))
            }
        };
        let (name, spec, auth, colon, connections) = match (replica, wanted) {
            (Some(r), _) => {
                let spec =
                    side_spec(&r.side).map_err(|e| Error::Usage(format!("[[mail.replica]] {:?}: {e}", r.name)))?;
                let auth = Auth {
                    password: r.side.password.as_ref().map(Secret::new),
                    password_env: r.side.password_env.clone(),
                    insecure_tls: !r.side.tls_verify,
                };
                (r.name.clone(), spec, auth, r.colon, r.connections)
            }
            (None, Some(given)) if chosen.is_some() => {
                let names: Vec<&str> = self.replicas.iter().map(|r| r.name.as_str()).collect();
                // A bare word is a replica's name mistyped, not a folder here: a folder is given
                // as a path (`./usb`, `/media/usb`), a server as a URL.
                if !given.contains('/') {
                    return Err(Error::Usage(format!(
                        "-S {given}: no replica of that name (known: {}); a folder is given as a path (./{given}), \
                         a server as a URL",
                        names.join(", ")
                    )));
                }
                let (spec, password) = EndpointSpec::parse(given).map_err(|e| {
                    Error::Usage(format!("-S {given}: no replica of that name (known: {}), and {e}", names.join(", ")))
                })?;
                (given.to_string(), spec, Auth { password, ..Auth::default() }, None, None)
            }
            (None, Some(name)) => {
                return Err(Error::Usage(format!("[mail] default_replica {name:?} names no [[mail.replica]]")))
            }
            (None, None) => unreachable!("handled above"),
        };
        Ok(Chosen { name, spec, auth, colon, connections })
    }
}

/// The replica a run goes to.
struct Chosen {
    name: String,
    spec: EndpointSpec,
    auth: Auth,
    colon: Option<char>,
    connections: Option<u16>,
}

impl Config {
    /// The `[mail]` table, validated; `None` when the file has none.
    pub fn mail(&self) -> Result<Option<MailConfig>, ConfigError> {
        let text = self.doc.to_string();
        let doc = ImDocument::parse(text.as_str()).map_err(|e| syntax(&self.path, &text, &e))?;
        let reader = Reader { text: &text };
        let invalid = |bad: Bad| ConfigError::Invalid { path: self.path.clone(), line: bad.line, message: bad.message };
        match doc.get("mail") {
            None => Ok(None),
            Some(TomlItem::Table(table)) => reader.mail(table).map(Some).map_err(invalid),
            Some(_) => Err(invalid(Bad {
                line: reader.key_line(&*doc, "mail"),
                message: "mail must be a [mail] table".into(),
            })),
        }
    }
}

impl Reader<'_> {
    fn mail(&self, table: &Table) -> Result<MailConfig, Bad> {
        self.known_keys(table, "mail.", &MAIL_KEYS)?;
        let header = self.line(table.span());
        let layout = self.choice(table, "mail.", "layout")?.unwrap_or(StoreLayout::Maildir);
        let absolute = |key: &str, value: &str| -> Result<(), Bad> {
            if Path::new(value).is_absolute() {
                return Ok(());
            }
            Err(Bad {
                line: self.key_line(table, key),
                message: format!("mail.{key} {value:?} must be an absolute path"),
            })
        };
        let store = match (self.string(table, "mail.", "store")?, layout) {
            (Some(store), _) => store,
            (None, StoreLayout::Cyrus) => String::new(),
            (None, StoreLayout::Maildir) => {
                return Err(Bad { line: header, message: "[mail] has no store (the mail store's folder)".into() })
            }
        };
        if layout == StoreLayout::Maildir {
            absolute("store", &store)?;
        }
        let cyrus_config = self.string(table, "mail.", "cyrus_config")?.unwrap_or_else(|| "/etc/imapd.conf".into());
        absolute("cyrus_config", &cyrus_config)?;
        let cyrus_tools = self.string(table, "mail.", "cyrus_tools")?.unwrap_or_else(|| "/usr/lib/cyrus/bin".into());
        absolute("cyrus_tools", &cyrus_tools)?;
        let ignore = match table.get("ignore") {
            None => vec![DEFAULT_IGNORE.to_string()],
            Some(value) => {
                let list =
                    value.as_array().ok_or_else(|| self.wrong_type(table, "mail.", "ignore", "an array of strings"))?;
                let mut patterns = Vec::new();
                for entry in list.iter() {
                    let line = self.line(entry.span()).or_else(|| self.key_line(table, "ignore"));
                    let pattern = entry
                        .as_str()
                        .ok_or_else(|| Bad { line, message: "mail.ignore must hold strings only".into() })?;
                    regex::Regex::new(pattern)
                        .map_err(|e| Bad { line, message: format!("mail.ignore: invalid regex {pattern:?}: {e}") })?;
                    patterns.push(pattern.to_string());
                }
                patterns
            }
        };
        let replicas = match table.get("replica") {
            None => Vec::new(),
            Some(TomlItem::ArrayOfTables(list)) => {
                let mut replicas: Vec<ReplicaConfig> = Vec::new();
                for (number, replica) in list.iter().enumerate() {
                    let replica = self.replica(replica, number + 1)?;
                    if replicas.iter().any(|r| r.name == replica.name) {
                        return Err(Bad {
                            line: self.key_line(list.get(number).expect("listed"), "name"),
                            message: format!("mail.replica {:?}: the name is already used", replica.name),
                        });
                    }
                    replicas.push(replica);
                }
                replicas
            }
            Some(_) => return Err(self.wrong_type(table, "mail.", "replica", "[[mail.replica]] tables")),
        };
        let path =
            |key: &str| -> Result<Option<PathBuf>, Bad> { Ok(self.string(table, "mail.", key)?.map(PathBuf::from)) };
        Ok(MailConfig {
            store: PathBuf::from(store),
            cyrus_config: PathBuf::from(cyrus_config),
            cyrus_tools: PathBuf::from(cyrus_tools),
            layout,
            user_dir: self.string(table, "mail.", "user_dir")?.unwrap_or_else(|| "{user}/Maildir".into()),
            sieve_dir: self.string(table, "mail.", "sieve_dir")?,
            sync_log: path("sync_log")?,
            shutdown_file: path("shutdown_file")?,
            default_replica: self.string(table, "mail.", "default_replica")?,
            expunge: self.choice(table, "mail.", "expunge")?.unwrap_or_default(),
            ignore,
            watch: self.boolean(table, "mail.", "watch")?.unwrap_or(false),
            log: path("log")?,
            replicas,
        })
    }

    fn replica(&self, table: &Table, number: usize) -> Result<ReplicaConfig, Bad> {
        let header = self.line(table.span());
        let keys: Vec<&str> = SIDE_KEYS
            .iter()
            .copied()
            .filter(|k| !["ignore", "check"].contains(k))
            .chain(["name", "colon", "connections"])
            .collect();
        self.known_keys(table, "mail.replica.", &keys)?;
        let name = self
            .string(table, "mail.replica.", "name")?
            .ok_or_else(|| Bad { line: header, message: format!("mail.replica #{number} has no name") })?;
        let context = format!("mail.replica {name:?}");
        let side = self.side_fields(table, "replica", header).map_err(|bad| bad.within(&context))?;
        check_side(&side, "replica").map_err(|problem| Bad {
            line: problem.key.and_then(|key| self.key_line(table, key)).or(header),
            message: format!("{context}: {}", problem.message),
        })?;
        let colon = match self.string(table, "mail.replica.", "colon")? {
            None => None,
            Some(text) => {
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c != ':' && c != '/' && !c.is_control() && !c.is_alphanumeric() => Some(c),
                    _ => {
                        return Err(Bad {
                            line: self.key_line(table, "colon"),
                            message: format!("{context}: colon {text:?} must be one punctuation character other than ':' and '/', e.g. \"!\""),
                        })
                    }
                }
            }
        };
        let connections = match self.integer(table, "mail.replica.", "connections")? {
            None => None,
            Some(n) => Some(u16::try_from(n).ok().filter(|n| (1..=64).contains(n)).ok_or_else(|| Bad {
                line: self.key_line(table, "connections"),
                message: format!("{context}: connections {n} is not from 1 to 64"),
            })?),
        };
        if side.kind == EndpointKind::Directory && !Path::new(&side.directory).is_absolute() {
            return Err(Bad {
                line: self.key_line(table, "directory"),
                message: format!("{context}: directory {:?} must be an absolute path", side.directory),
            });
        }
        Ok(ReplicaConfig { name, side, colon, connections })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<Option<MailConfig>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("F");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)?.mail()
    }

    fn error(text: &str) -> String {
        config(text).unwrap_err().to_string().replace(&*std::env::temp_dir().to_string_lossy(), "")
    }

    const REPLICA: &str = "[[mail.replica]]\nname = \"backup\"\ntype = \"directory\"\ndirectory = \"/backup/vmail\"\n";

    #[test]
    fn the_mail_table_as_the_issue_writes_it() {
        let text = format!(
            "[mail]\nstore = \"/var/vmail\"   # the master\nlayout = \"maildir\"\nuser_dir = \"{{user}}/Maildir\"\n\
             sieve_dir = \"{{user}}/sieve\"\nshutdown_file = \"/run/stop\"\ndefault_replica = \"backup\"\n\
             expunge = \"keep\"\nwatch = true\n{REPLICA}[[mail.replica]]\nname = \"usb\"\ndirectory = \"/media/usb\"\ncolon = \"!\"\n"
        );
        let mail = config(&text).unwrap().unwrap();
        assert_eq!(mail.store, PathBuf::from("/var/vmail"));
        assert_eq!((mail.layout, mail.expunge, mail.watch), (StoreLayout::Maildir, Expunge::Keep, true));
        assert_eq!(mail.ignore, [DEFAULT_IGNORE]);
        assert_eq!(
            mail.replicas.iter().map(|r| (r.name.as_str(), r.colon)).collect::<Vec<_>>(),
            [("backup", None), ("usb", Some('!'))]
        );
        let state = Path::new("/state");
        assert_eq!(mail.sync_log(state), PathBuf::from("/state/mail/log"));
        assert_eq!(mail.log(state), PathBuf::from("/state/logs/mail.log"));
        let job = mail.job(None, state).unwrap();
        assert_eq!((job.replica_name.as_str(), job.replica.url()), ("backup", "/backup/vmail".to_string()));
        let job = mail.job(Some("usb"), state).unwrap();
        assert_eq!(job.colon, Some('!'));
        let job = mail.job(Some("ftp://bob@h/x"), state).unwrap();
        assert_eq!(job.replica.url(), "ftp://bob@h:21/x/");
        let err = mail.job(Some("sftp://h/x"), state).unwrap_err().to_string();
        assert!(err.contains("no replica of that name (known: backup, usb)"), "{err}");
        assert!(config(
            "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/a\"\n[item.destination]\ndirectory = \"/b\"\n"
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn bad_mail_tables_name_the_line_and_the_key() {
        for (text, want) in [
            ("[mail]\nlayout = \"maildir\"\n".to_string(), "F:1: [mail] has no store"),
            ("[mail]\nstore = \"vmail\"\n".to_string(), "F:2: mail.store \"vmail\" must be an absolute path"),
            (
                "[mail]\nstore = \"/v\"\nexpunge = \"never\"\n".to_string(),
                "F:3: mail.expunge \"never\" is not one of mirror, keep",
            ),
            ("[mail]\nstore = \"/v\"\nstor = 1\n".to_string(), "F:3: unknown key mail.stor"),
            ("[mail]\nstore = \"/v\"\nignore = [\"((\"]\n".to_string(), "F:3: mail.ignore: invalid regex"),
            (
                format!("[mail]\nstore = \"/v\"\n{REPLICA}{REPLICA}"),
                "mail.replica \"backup\": the name is already used",
            ),
            (
                format!("[mail]\nstore = \"/v\"\n{REPLICA}colon = \":\"\n"),
                "colon \":\" must be one punctuation character",
            ),
            (
                "[mail]\nstore = \"/v\"\n[[mail.replica]]\nname = \"r\"\ndirectory = \"rel\"\n".to_string(),
                "directory \"rel\" must be an absolute path",
            ),
            (
                "[mail]\nstore = \"/v\"\n[[mail.replica]]\nname = \"r\"\ntype = \"ftp\"\ndirectory = \"/d\"\n"
                    .to_string(),
                "is an FTP side but has no server",
            ),
            ("mail = 3\n".to_string(), "F:1: mail must be a [mail] table"),
        ] {
            let got = error(&text);
            assert!(got.contains(want), "{text:?}\n got: {got}\nwant: {want}");
        }
        let two =
            config(&format!("[mail]\nstore = \"/v\"\n{REPLICA}[[mail.replica]]\nname = \"b\"\ndirectory = \"/b\"\n"))
                .unwrap()
                .unwrap();
        assert!(two
            .job(None, Path::new("/s"))
            .unwrap_err()
            .to_string()
            .contains("several replicas and no default_replica"));
        let none = config("[mail]\nstore = \"/v\"\n").unwrap().unwrap();
        assert!(none.job(None, Path::new("/s")).unwrap_err().to_string().contains("has no [[mail.replica]]"));
        let cyrus = config(&format!("[mail]\nlayout = \"cyrus\"\ncyrus_config = \"/nowhere/imapd.conf\"\n{REPLICA}"))
            .unwrap()
            .unwrap();
        let err = cyrus.cyrus_job(None, Path::new("/s")).unwrap_err().to_string();
        assert!(err.contains("/nowhere/imapd.conf: cannot read it"), "{err}");
        assert!(error("[mail]\nlayout = \"cyrus\"\ncyrus_config = \"imapd.conf\"\n")
            .contains("F:3: mail.cyrus_config \"imapd.conf\" must be an absolute path"));
    }
}
