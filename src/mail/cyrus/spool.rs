//! The master Cyrus spool as pairsync sees it: where Cyrus says each mailbox and each user's
//! files are (its own `mbpath -j` and `ctl_mboxlist -d`, never a guess from the name), the
//! replica path each master path maps to, and an endpoint that serves the master's files by
//! replica path, with the files captured under lock served as they were captured.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::core::filter::Filter;
use crate::core::model::Entry;
use crate::endpoint::local::LocalEndpoint;
use crate::endpoint::{Endpoint, EndpointError, ErrorKind, Result as EndpointResult, Scan};
use crate::mail::cyrus::capture::Captured;
use crate::mail::cyrus::conf::CyrusConf;

/// Where Cyrus keeps one mailbox and its owner's files (`mbpath -j`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbPath {
    /// The internal name (`user.alice.Sent`).
    pub name: String,
    pub data: PathBuf,
    pub meta: PathBuf,
    pub archive: PathBuf,
    /// The owner's databases by kind (`sub`, `seen`, `conversations`, `counters`, `dav`,
    /// `xapianactive`); empty for a mailbox with no owner.
    pub user_files: BTreeMap<String, PathBuf>,
    /// The owner's Sieve folder.
    pub sieve: Option<PathBuf>,
}

/// A mailbox of the mailbox list (`ctl_mboxlist -d`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub uniqueid: String,
    pub mbtype: String,
    pub partition: String,
}

impl Listed {
    /// A tombstone (a renamed or deleted name kept in mailboxes.db), not a mailbox.
    pub fn is_tombstone(&self) -> bool {
        self.mbtype.contains('d')
    }
}

/// A user's INBOX by its Cyrus name (`alice` -> `user.alice`, `john.doe` -> `user.john^doe`,
/// `alice@example.com` -> `example.com!user.alice`): also the name of its quota root.
pub fn inbox_name(user: &str) -> String {
    match user.split_once('@') {
        Some((local, domain)) => format!("{domain}!user.{}", local.replace('.', "^")),
        None => format!("user.{}", user.replace('.', "^")),
    }
}

/// How Cyrus's tools are run: their folder and the imapd.conf they are given.
#[derive(Debug, Clone)]
pub struct Tools {
    pub dir: PathBuf,
    pub conf: PathBuf,
    /// imapd.conf's `unixhierarchysep`: the tools then take names with '/' (`user/john.doe`).
    pub unixhierarchysep: bool,
}

/// A mailbox's internal name (the sync log's, mailboxes.db's) as Cyrus's tools take it from
/// an admin: `user.john^doe.Sent` -> `user/john.doe/Sent` with `unixhierarchysep`, and a
/// domain last (`example.com!user.alice` -> `user.alice@example.com`).
pub fn admin_name(internal: &str, unixhierarchysep: bool) -> String {
    let (domain, local) = match internal.split_once('!') {
        Some((domain, local)) => (Some(domain), local),
        None => (None, internal),
    };
    let local = if unixhierarchysep {
        local.split('.').map(|part| part.replace('^', ".")).collect::<Vec<_>>().join("/")
    } else {
        local.to_string()
    };
    match domain {
        Some(domain) => format!("{local}@{domain}"),
        None => local,
    }
}

impl Tools {
    fn run(&self, tool: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
        let program = self.dir.join(tool);
        Command::new(&program)
            .arg("-C")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", program.display())))
    }

    /// Runs a tool, for a restore; its output and exit status as they are.
    pub fn output(&self, tool: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
        self.run(tool, args)
    }

    /// `mbpath -j` of these mailboxes (or users, with `users`): the ones that exist, by name.
    /// A name Cyrus does not know is simply not in the answer; a tool that cannot run at all
    /// (a broken config, no mailboxes.db) is an error.
    pub fn mbpath(&self, names: &[String], users: bool) -> std::io::Result<BTreeMap<String, MbPath>> {
        let mut found = BTreeMap::new();
        // Long lists in chunks: the command line has a limit.
        for chunk in names.chunks(500) {
            // -7: names are as the sync log and mailboxes.db hold them (modified UTF-7).
            let mut args: Vec<&str> = vec!["-j", "-q", "-7"];
            if users {
                args.push("-u");
            }
            let admin: Vec<String> =
                chunk.iter().map(|n| if users { n.clone() } else { admin_name(n, self.unixhierarchysep) }).collect();
            args.extend(admin.iter().map(String::as_str));
            let out = self.run("mbpath", &args)?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let mut parsed = 0;
            for value in serde_json::Deserializer::from_str(&stdout).into_iter::<serde_json::Value>() {
                let value = value.map_err(|e| std::io::Error::other(format!("mbpath -j: unreadable answer: {e}")))?;
                let path = |key: &str| value.get(key).and_then(|v| v.as_str()).map(PathBuf::from);
                let name = value.pointer("/mbname/intname").and_then(|v| v.as_str()).unwrap_or_default().to_string();
                let (Some(data), false) = (path("data"), name.is_empty()) else {
                    return Err(std::io::Error::other("mbpath -j: an answer without data path or name"));
                };
                let mut user_files = BTreeMap::new();
                let mut sieve = None;
                if let Some(files) = value.get("user").and_then(|v| v.as_object()) {
                    for (kind, file) in files {
                        let Some(file) = file.as_str() else { continue };
                        if kind == "sieve" {
                            sieve = Some(PathBuf::from(file));
                        } else {
                            user_files.insert(kind.clone(), PathBuf::from(file));
                        }
                    }
                }
                let userid = value.pointer("/mbname/userid").and_then(|v| v.as_str()).unwrap_or_default();
                let key = if users { userid.to_string() } else { name.clone() };
                parsed += 1;
                found.insert(
                    key,
                    MbPath {
                        name,
                        meta: path("meta").unwrap_or_else(|| data.clone()),
                        archive: path("archive").unwrap_or_else(|| data.clone()),
                        data,
                        user_files,
                        sieve,
                    },
                );
            }
            if parsed == 0 && !out.status.success() && chunk.len() == 1 && !users {
                // One unknown mailbox: Cyrus says so with a failing status; not an error.
                continue;
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            let unexplained = stderr.lines().any(|l| !l.trim().is_empty() && !l.contains("Invalid mailbox name"));
            if parsed == 0 && !out.status.success() && unexplained {
                return Err(std::io::Error::other(format!("mbpath failed ({}): {}", out.status, stderr.trim())));
            }
        }
        Ok(found)
    }

    /// The mailbox list, as `ctl_mboxlist -d` dumps it (its bytes, and the mailboxes read
    /// from them).
    pub fn mboxlist(&self) -> std::io::Result<(Vec<u8>, Vec<Listed>)> {
        let out = self.run("ctl_mboxlist", &["-d"])?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "ctl_mboxlist -d failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let listed = parse_mboxlist(&out.stdout)?;
        Ok((out.stdout, listed))
    }
}

/// The mailboxes of a `ctl_mboxlist -d` dump.
pub fn parse_mboxlist(bytes: &[u8]) -> std::io::Result<Vec<Listed>> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| std::io::Error::other(format!("the mailbox list dump is not JSON: {e}")))?;
    let object = value.as_object().ok_or_else(|| std::io::Error::other("the mailbox list dump is not an object"))?;
    let text = |v: &serde_json::Value, key: &str| v.get(key).and_then(|x| x.as_str()).unwrap_or_default().to_string();
    Ok(object
        .iter()
        .map(|(name, v)| Listed {
            name: name.clone(),
            uniqueid: text(v, "uniqueid"),
            mbtype: text(v, "mbtype"),
            partition: text(v, "partition"),
        })
        .collect())
}

/// The replica's top folders, each standing for a folder of the master.
#[derive(Debug, Clone)]
pub struct Roots {
    /// (replica prefix, master folder), longest master folder first so the most specific wins.
    roots: Vec<(String, PathBuf)>,
}

impl Roots {
    pub fn new(conf: &CyrusConf) -> Roots {
        let mut roots = Vec::new();
        for (name, folder) in &conf.partitions {
            roots.push((format!("data/{name}"), folder.clone()));
        }
        for (name, folder) in &conf.archive_partitions {
            roots.push((format!("archive/{name}"), folder.clone()));
        }
        roots.push(("conf".to_string(), conf.configdirectory.clone()));
        roots.push(("sieve".to_string(), conf.sievedir.clone()));
        roots.sort_by_key(|(_, folder)| std::cmp::Reverse(folder.as_os_str().len()));
        Roots { roots }
    }

    /// The replica path of a master path below one of the roots (`data` roots are looked
    /// for first for a message folder: an archive partition may be the data partition).
    pub fn replica_path(&self, master: &Path, prefer: &str) -> Option<String> {
        let candidates = self
            .roots
            .iter()
            .filter(|(prefix, _)| prefix.starts_with(prefer))
            .chain(self.roots.iter().filter(|(prefix, _)| !prefix.starts_with(prefer)));
        for (prefix, folder) in candidates {
            if let Ok(rel) = master.strip_prefix(folder) {
                let rel = rel.to_str()?;
                if rel.split('/').any(|c| c == ".." || c == ".") {
                    return None;
                }
                return Some(if rel.is_empty() { prefix.clone() } else { format!("{prefix}/{rel}") });
            }
        }
        None
    }

    /// The master folder and the path in it of a replica path.
    pub fn master_of<'p>(&self, replica: &'p str) -> Option<(&str, &Path, &'p str)> {
        self.roots.iter().find_map(|(prefix, folder)| {
            let rel = replica.strip_prefix(prefix.as_str())?;
            let rel = if rel.is_empty() { rel } else { rel.strip_prefix('/')? };
            Some((prefix.as_str(), folder.as_path(), rel))
        })
    }

    pub fn all(&self) -> &[(String, PathBuf)] {
        &self.roots
    }
}

/// A file as a capture saw it: its entry and (device, inode).
pub type Seen = (Entry, (u64, u64));

/// The master as an endpoint, by replica path: each root a local endpoint of its own, and
/// the files captured under lock served from memory (their entries as captured). Read only,
/// for replication; a restore writes through [`SpoolEndpoint::local`].
pub struct SpoolEndpoint {
    roots: Roots,
    locals: HashMap<String, LocalEndpoint>,
    captured: Mutex<HashMap<String, Captured>>,
    /// Every file captured (read or stat'ed): its entry and (device, inode).
    seen: Mutex<HashMap<String, Seen>>,
    /// Replica paths whose master file is elsewhere (a metadata file on the meta partition).
    moved: Mutex<HashMap<String, PathBuf>>,
}

impl SpoolEndpoint {
    pub fn new(roots: Roots, tag: &str) -> SpoolEndpoint {
        let locals = roots
            .all()
            .iter()
            .map(|(prefix, folder)| (prefix.clone(), LocalEndpoint::new(folder.clone(), tag)))
            .collect();
        SpoolEndpoint {
            roots,
            locals,
            captured: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            moved: Mutex::new(HashMap::new()),
        }
    }

    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// What was captured of `path` (its entry and file), read or only stat'ed, until
    /// [`SpoolEndpoint::release`].
    pub fn seen(&self, path: &str) -> Option<Seen> {
        self.seen.lock().expect("not poisoned").get(path).copied()
    }

    /// Serves `path` from these bytes until [`SpoolEndpoint::release`].
    pub fn hold(&self, path: &str, captured: Captured) {
        self.seen.lock().expect("not poisoned").insert(path.to_string(), (captured.entry, captured.id));
        // A file only stat'ed is read from disk if it is copied after all (checked against
        // the entry stat'ed, so never a newer one).
        if !captured.unread {
            self.captured.lock().expect("not poisoned").insert(path.to_string(), captured);
        }
    }

    /// The master file of `path` is at `file` (outside its root's usual place).
    pub fn redirect(&self, path: &str, file: PathBuf) {
        self.moved.lock().expect("not poisoned").insert(path.to_string(), file);
    }

    pub fn release(&self) {
        self.captured.lock().expect("not poisoned").clear();
        self.seen.lock().expect("not poisoned").clear();
        self.moved.lock().expect("not poisoned").clear();
    }

    /// The local endpoint of a replica path's root, and the path in it.
    pub fn local<'p>(&self, path: &'p str) -> EndpointResult<(&LocalEndpoint, &'p str)> {
        let (prefix, _, rel) = self
            .roots
            .master_of(path)
            .ok_or_else(|| EndpointError::new(ErrorKind::NotFound, format!("{path}: not a path of the spool")))?;
        Ok((&self.locals[prefix], rel))
    }

    fn read_only(&self, path: &str) -> EndpointError {
        EndpointError::new(ErrorKind::Refused, format!("{path}: the master spool is only read"))
    }
}

impl Endpoint for SpoolEndpoint {
    fn url(&self) -> String {
        "cyrus spool".into()
    }

    fn check_root(&self) -> EndpointResult<()> {
        Ok(())
    }

    fn scan(&self, _filter: &Filter) -> EndpointResult<Scan> {
        Err(EndpointError::new(ErrorKind::Other, "a spool is not scanned whole"))
    }

    fn stat(&self, path: &str) -> EndpointResult<Option<Entry>> {
        if let Some(captured) = self.captured.lock().expect("not poisoned").get(path) {
            return Ok(Some(captured.entry));
        }
        if let Some(file) = self.moved.lock().expect("not poisoned").get(path) {
            return match std::fs::symlink_metadata(file) {
                Ok(meta) => Ok(crate::endpoint::local::entry_of(&meta)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        let (local, rel) = self.local(path)?;
        local.stat(rel)
    }

    fn open_from(&self, path: &str, expect: &Entry, offset: u64) -> EndpointResult<Box<dyn Read + Send + '_>> {
        if let Some(captured) = self.captured.lock().expect("not poisoned").get(path) {
            let mut cursor = Cursor::new(captured.bytes.clone());
            cursor.set_position(offset);
            return Ok(Box::new(cursor));
        }
        if let Some(file) = self.moved.lock().expect("not poisoned").get(path).cloned() {
            let mut f = std::fs::File::open(&file)?;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))?;
            return Ok(Box::new(f));
        }
        let (local, rel) = self.local(path)?;
        local.open_from(rel, expect, offset)
    }

    fn write(&self, path: &str, _: &mut dyn Read, _: &Entry, _: Option<&Entry>, _: u64) -> EndpointResult<Entry> {
        Err(self.read_only(path))
    }

    fn mkdir(&self, path: &str) -> EndpointResult<()> {
        Err(self.read_only(path))
    }

    fn remove(&self, path: &str, _: &Entry) -> EndpointResult<()> {
        Err(self.read_only(path))
    }

    fn rename(&self, from: &str, _: &str, _: &Entry) -> EndpointResult<Entry> {
        Err(self.read_only(from))
    }

    fn read_check_file(&self, _: &str, _: usize) -> EndpointResult<Option<Vec<u8>>> {
        Ok(None)
    }

    fn remove_leftover(&self, path: &str) -> EndpointResult<()> {
        Err(self.read_only(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> CyrusConf {
        let text = "configdirectory: /var/lib/cyrus\npartition-default: /var/spool/cyrus/mail\n\
                    partition-big: /srv/big\narchivepartition-default: /srv/archive\nsievedir: /var/spool/sieve\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imapd.conf");
        std::fs::write(&path, text).unwrap();
        let mut conf = crate::mail::cyrus::conf::read(&path).unwrap();
        conf.path = PathBuf::from("/etc/imapd.conf");
        conf
    }

    #[test]
    fn master_paths_map_to_the_replica_and_back() {
        let roots = Roots::new(&conf());
        let cases = [
            ("/var/spool/cyrus/mail/uuid/h/r/hr1", "data", Some("data/default/uuid/h/r/hr1")),
            ("/srv/big/b/user/bob", "data", Some("data/big/b/user/bob")),
            ("/srv/archive/uuid/h/r/hr1", "archive", Some("archive/default/uuid/h/r/hr1")),
            ("/var/lib/cyrus/user/a/alice.sub", "conf", Some("conf/user/a/alice.sub")),
            ("/var/spool/sieve/uuid/h/r/hr1", "sieve", Some("sieve/uuid/h/r/hr1")),
            ("/etc/passwd", "data", None),
            ("/var/spool/cyrus/mail/../../../etc", "data", None),
        ];
        for (master, prefer, want) in cases {
            let got = roots.replica_path(Path::new(master), prefer);
            assert_eq!(got.as_deref(), want, "{master}");
            if let Some(replica) = got {
                let (_, folder, rel) = roots.master_of(&replica).unwrap();
                assert_eq!(folder.join(rel), PathBuf::from(master));
            }
        }
    }

    #[test]
    fn internal_names_become_admin_names() {
        for (internal, unix, want) in [
            ("user.alice.Sent", false, "user.alice.Sent"),
            ("user.alice.Sent", true, "user/alice/Sent"),
            ("user.john^doe.Work.2024", true, "user/john.doe/Work/2024"),
            ("user.john^doe", false, "user.john^doe"),
            ("example.com!user.alice.Sent", true, "user/alice/Sent@example.com"),
            ("example.com!user.alice", false, "user.alice@example.com"),
            ("DELETED.user.alice.Trash.6B0D2264", true, "DELETED/user/alice/Trash/6B0D2264"),
        ] {
            assert_eq!(admin_name(internal, unix), want, "{internal} {unix}");
        }
        assert_eq!(inbox_name("john.doe"), "user.john^doe");
        assert_eq!(inbox_name("alice@example.com"), "example.com!user.alice");
    }

    #[test]
    fn the_mailbox_list_dump_is_read() {
        let dump = br#"{
"user.alice": {"name": "user.alice", "mbtype": "e", "partition": "default", "uniqueid": "n6cd", "name_history": []},
"user.alice.Old": {"name": "user.alice.Old", "mbtype": "ed", "partition": "default", "uniqueid": "x1"},
"user.alice.#sieve": {"mbtype": "f", "partition": "default", "uniqueid": "s1"}
}"#;
        let listed = parse_mboxlist(dump).unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().any(|l| l.name == "user.alice.Old" && l.is_tombstone()));
        assert!(listed.iter().any(|l| l.name == "user.alice" && !l.is_tombstone() && l.uniqueid == "n6cd"));
        assert!(parse_mboxlist(b"not json").is_err());
    }
}
