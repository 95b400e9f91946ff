//! imapd.conf, read as Cyrus reads it, for what a replicator needs to know: where the
//! partitions, the config directory and the Sieve folder are, how the spool is laid out, and
//! which sync log and shutdown file belong to a channel. A Cyrus admin sets nothing twice.
//!
//! The syntax is Cyrus's `lib/libconfig.c`: one `key: value` a line, leading blanks allowed,
//! `#` starts a comment line, keys are matched without case, the last of a repeated key wins,
//! and `@include: FILE` reads another file in place. Values are trimmed. Booleans take
//! `1 t true y yes on` and `0 f false n no off`. Parsing ([`parse`]) is pure; only [`read`]
//! touches files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A line of imapd.conf that Cyrus would refuse, or a value pairsync cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// The options of imapd.conf a replicator uses, with Cyrus 3.6's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CyrusConf {
    /// The file read (for messages).
    pub path: PathBuf,
    pub configdirectory: PathBuf,
    /// `partition-NAME`: the data partitions (message files, and metadata not moved).
    pub partitions: BTreeMap<String, PathBuf>,
    /// `metapartition-NAME`: where the files named by `metapartition_files` are kept.
    pub meta_partitions: BTreeMap<String, PathBuf>,
    /// `archivepartition-NAME`: archived messages and their cache.
    pub archive_partitions: BTreeMap<String, PathBuf>,
    /// `metapartition_files`: which metadata files live on the meta partition.
    pub metapartition_files: Vec<String>,
    pub sievedir: PathBuf,
    pub mailbox_legacy_dirs: bool,
    pub hashimapspool: bool,
    pub fulldirhash: bool,
    pub unixhierarchysep: bool,
    pub virtdomains: bool,
    pub deletedprefix: String,
    /// `sync_log_channels`; the empty string is the unnamed channel (`sync/log`). Empty list:
    /// the option is not set, and only `sync/log` is written.
    pub sync_log_channels: Vec<String>,
    pub sync_log: bool,
    pub sync_shutdown_file: Option<PathBuf>,
    /// `<channel>_sync_shutdown_file`.
    pub channel_shutdown_files: BTreeMap<String, PathBuf>,
}

/// The raw `key -> (value, line)` of a file and what it includes, keys lower-cased.
pub type Raw = BTreeMap<String, (String, usize)>;

/// One meaningful line of imapd.conf, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `key: value` (the key lower-cased), with its line number.
    Set(String, String, usize),
    /// `@include: FILE`, relative to the including file's folder.
    Include(PathBuf, usize),
}

/// Parses the text of one imapd.conf into its lines; includes are not followed.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Line>, ConfError> {
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| ConfError { path: path.to_path_buf(), line: Some(number), message };
        let Some((key, value)) = line.split_once(':') else {
            return Err(bad(format!("no ':' after the option name in {:?}", line.trim_end())));
        };
        let key = key.trim_end().to_ascii_lowercase();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || "-_@".contains(c)) {
            return Err(bad(format!("invalid option name {key:?}")));
        }
        let value = value.trim().to_string();
        if key == "@include" {
            let included = if Path::new(&value).is_absolute() {
                PathBuf::from(&value)
            } else {
                path.parent().unwrap_or(Path::new("/")).join(&value)
            };
            lines.push(Line::Include(included, number));
        } else {
            lines.push(Line::Set(key, value, number));
        }
    }
    Ok(lines)
}

/// Reads `path` and what it includes (at most 8 deep), then [`CyrusConf::from_raw`].
pub fn read(path: &Path) -> Result<CyrusConf, ConfError> {
    let mut raw = Raw::new();
    read_into(path, &mut raw, 0)?;
    CyrusConf::from_raw(path, &raw)
}

/// Reads a file's lines into `raw` in order, an include where it stands: as Cyrus does, the
/// last setting of an option wins, whichever file it is in.
fn read_into(path: &Path, raw: &mut Raw, depth: usize) -> Result<(), ConfError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfError {
        path: path.to_path_buf(),
        line: None,
        message: format!("cannot read it: {e}"),
    })?;
    for line in parse(path, &text)? {
        match line {
            Line::Set(key, value, number) => {
                raw.insert(key, (value, number));
            }
            Line::Include(_, number) if depth >= 8 => {
                return Err(ConfError {
                    path: path.to_path_buf(),
                    line: Some(number),
                    message: "@include nested more than 8 deep".into(),
                });
            }
            Line::Include(included, _) => read_into(&included, raw, depth + 1)?,
        }
    }
    Ok(())
}

/// A Cyrus boolean.
fn boolean(path: &Path, raw: &Raw, key: &str, default: bool) -> Result<bool, ConfError> {
    let Some((value, line)) = raw.get(key) else { return Ok(default) };
    match value.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "y" | "yes" | "on" => Ok(true),
        "0" | "f" | "false" | "n" | "no" | "off" => Ok(false),
        other => Err(ConfError {
            path: path.to_path_buf(),
            line: Some(*line),
            message: format!("{key}: {other:?} is not a boolean (yes/no, on/off, true/false, 1/0)"),
        }),
    }
}

/// An absolute path option.
fn absolute(path: &Path, raw: &Raw, key: &str) -> Result<Option<PathBuf>, ConfError> {
    let Some((value, line)) = raw.get(key) else { return Ok(None) };
    if value.is_empty() {
        return Ok(None);
    }
    if !value.starts_with('/') {
        return Err(ConfError {
            path: path.to_path_buf(),
            line: Some(*line),
            message: format!("{key}: {value:?} must be an absolute path"),
        });
    }
    Ok(Some(PathBuf::from(value)))
}

impl CyrusConf {
    /// The options from the raw keys, with Cyrus 3.6's defaults.
    pub fn from_raw(path: &Path, raw: &Raw) -> Result<CyrusConf, ConfError> {
        let missing = |key: &str| ConfError {
            path: path.to_path_buf(),
            line: None,
            message: format!("no {key}: (Cyrus cannot run without it)"),
        };
        let configdirectory = absolute(path, raw, "configdirectory")?.ok_or_else(|| missing("configdirectory"))?;
        let mut partitions = BTreeMap::new();
        let mut meta_partitions = BTreeMap::new();
        let mut archive_partitions = BTreeMap::new();
        let mut channel_shutdown_files = BTreeMap::new();
        for key in raw.keys() {
            let (map, name) = if let Some(name) = key.strip_prefix("partition-") {
                (&mut partitions, name)
            } else if let Some(name) = key.strip_prefix("metapartition-") {
                (&mut meta_partitions, name)
            } else if let Some(name) = key.strip_prefix("archivepartition-") {
                (&mut archive_partitions, name)
            } else if let Some(channel) = key.strip_suffix("_sync_shutdown_file") {
                if let Some(file) = absolute(path, raw, key)? {
                    channel_shutdown_files.insert(channel.to_string(), file);
                }
                continue;
            } else {
                continue;
            };
            if let Some(folder) = absolute(path, raw, key)? {
                map.insert(name.to_string(), folder);
            }
        }
        if partitions.is_empty() {
            return Err(missing("partition-default (or any partition-NAME)"));
        }
        let words = |key: &str| -> Vec<String> {
            raw.get(key).map(|(v, _)| v.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
        };
        let sync_log_channels =
            words("sync_log_channels").into_iter().map(|c| if c == "\"\"" { String::new() } else { c }).collect();
        let virtdomains = match raw.get("virtdomains").map(|(v, l)| (v.to_ascii_lowercase(), *l)) {
            None => false,
            Some((v, _)) if ["userid", "on", "yes", "true", "1"].contains(&v.as_str()) => true,
            Some((v, _)) if ["off", "no", "false", "0"].contains(&v.as_str()) => false,
            Some((v, line)) => {
                return Err(ConfError {
                    path: path.to_path_buf(),
                    line: Some(line),
                    message: format!("virtdomains: {v:?} is not off, userid or on"),
                })
            }
        };
        Ok(CyrusConf {
            path: path.to_path_buf(),
            configdirectory,
            partitions,
            meta_partitions,
            archive_partitions,
            metapartition_files: words("metapartition_files"),
            sievedir: absolute(path, raw, "sievedir")?.unwrap_or_else(|| PathBuf::from("/usr/sieve")),
            mailbox_legacy_dirs: boolean(path, raw, "mailbox_legacy_dirs", false)?,
            hashimapspool: boolean(path, raw, "hashimapspool", false)?,
            fulldirhash: boolean(path, raw, "fulldirhash", false)?,
            unixhierarchysep: boolean(path, raw, "unixhierarchysep", true)?,
            virtdomains,
            deletedprefix: raw.get("deletedprefix").map(|(v, _)| v.clone()).unwrap_or_else(|| "DELETED".into()),
            sync_log_channels,
            sync_log: boolean(path, raw, "sync_log", false)?,
            sync_shutdown_file: absolute(path, raw, "sync_shutdown_file")?,
            channel_shutdown_files,
        })
    }

    /// The sync log a replicator of `channel` reads, as sync_client does: `sync/log`, or
    /// `sync/CHANNEL/log`. Refused when Cyrus would never write it: a log nobody writes is a
    /// replica that silently falls behind.
    pub fn sync_log_path(&self, channel: Option<&str>) -> Result<PathBuf, ConfError> {
        let refuse = |message: String| ConfError { path: self.path.clone(), line: None, message };
        if !self.sync_log {
            return Err(refuse("sync_log is off, so Cyrus writes no sync log: set sync_log: 1".into()));
        }
        let listed = |c: &str| {
            self.sync_log_channels.is_empty() && c.is_empty() || self.sync_log_channels.iter().any(|l| l == c)
        };
        match channel {
            None if listed("") => Ok(self.configdirectory.join("sync").join("log")),
            None => Err(refuse(format!(
                "sync_log_channels: {} writes no unnamed log (sync/log): give -n {}, or add \"\" to the channels",
                self.channels_shown(),
                self.sync_log_channels.first().map(String::as_str).unwrap_or("CHANNEL")
            ))),
            Some(c) if c.is_empty() || c.contains('/') || c == "." || c == ".." => {
                Err(refuse(format!("-n {c:?}: not a channel name")))
            }
            Some(c) if listed(c) => Ok(self.configdirectory.join("sync").join(c).join("log")),
            Some(c) => Err(refuse(format!(
                "-n {c}: not among sync_log_channels ({}); Cyrus writes no log for it. Add it, e.g. \
                 sync_log_channels: {c} \"\" to keep the unnamed log too",
                self.channels_shown()
            ))),
        }
    }

    /// Every log Cyrus writes (one per channel), where a line is appended as cyr_synclog does.
    pub fn sync_log_paths(&self) -> Vec<PathBuf> {
        let sync = self.configdirectory.join("sync");
        if self.sync_log_channels.is_empty() {
            return vec![sync.join("log")];
        }
        self.sync_log_channels
            .iter()
            .map(|c| if c.is_empty() { sync.join("log") } else { sync.join(c).join("log") })
            .collect()
    }

    fn channels_shown(&self) -> String {
        if self.sync_log_channels.is_empty() {
            return "not set".into();
        }
        self.sync_log_channels
            .iter()
            .map(|c| if c.is_empty() { "\"\"" } else { c.as_str() })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The shutdown file of `channel`: `<channel>_sync_shutdown_file`, else
    /// `sync_shutdown_file`.
    pub fn shutdown_file(&self, channel: Option<&str>) -> Option<PathBuf> {
        channel.and_then(|c| self.channel_shutdown_files.get(c).cloned()).or_else(|| self.sync_shutdown_file.clone())
    }

    /// The folder of partition `name` holding the metadata file `file` (`header`, `index`,
    /// `cache`, `annotations`...): the meta partition when `metapartition_files` lists it.
    pub fn meta_partition_of(&self, name: &str, file: &str) -> Option<&Path> {
        if self.metapartition_files.iter().any(|f| f == file) {
            if let Some(meta) = self.meta_partitions.get(name) {
                return Some(meta);
            }
        }
        self.partitions.get(name).map(PathBuf::as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Result<CyrusConf, ConfError> {
        let path = Path::new("/etc/imapd.conf");
        let mut raw = Raw::new();
        for line in parse(path, text)? {
            match line {
                Line::Set(key, value, number) => {
                    raw.insert(key, (value, number));
                }
                Line::Include(..) => panic!("no includes here"),
            }
        }
        CyrusConf::from_raw(path, &raw)
    }

    const BASE: &str = "configdirectory: /var/lib/cyrus\npartition-default: /var/spool/cyrus/mail\nsync_log: 1\n";

    #[test]
    fn defaults_are_cyrus_3_6s() {
        let c = conf(BASE).unwrap();
        assert_eq!(c.configdirectory, PathBuf::from("/var/lib/cyrus"));
        assert_eq!(c.partitions["default"], PathBuf::from("/var/spool/cyrus/mail"));
        assert_eq!(c.sievedir, PathBuf::from("/usr/sieve"));
        assert!(!c.hashimapspool && !c.fulldirhash && !c.mailbox_legacy_dirs && !c.virtdomains);
        assert!(c.unixhierarchysep);
        assert_eq!(c.deletedprefix, "DELETED");
        assert_eq!(c.sync_log_path(None).unwrap(), PathBuf::from("/var/lib/cyrus/sync/log"));
        assert_eq!(c.shutdown_file(None), None);
    }

    #[test]
    fn lines_as_libconfig_reads_them() {
        let text = format!(
            "# a comment\n\n  HashIMAPSpool:   true  \nfulldirhash: on\nunixhierarchysep: no\nvirtdomains: userid\n\
             deletedprefix: Trash-deleted\nsievedir: /var/spool/sieve\nmetapartition-default: /ssd/meta\n\
             metapartition_files: header index cache\narchivepartition-default: /slow/archive\n\
             partition-second: /srv/p2\nsync_shutdown_file: /run/cyrus/sync-stop\n\
             pairsync_sync_shutdown_file: /run/cyrus/pairsync-stop\nhashimapspool: yes\n{BASE}"
        );
        let c = conf(&text).unwrap();
        assert!(c.hashimapspool && c.fulldirhash && !c.unixhierarchysep && c.virtdomains);
        assert_eq!(c.deletedprefix, "Trash-deleted");
        assert_eq!(c.sievedir, PathBuf::from("/var/spool/sieve"));
        assert_eq!(c.partitions.len(), 2);
        assert_eq!(c.meta_partition_of("default", "index"), Some(Path::new("/ssd/meta")));
        assert_eq!(c.meta_partition_of("default", "annotations"), Some(Path::new("/var/spool/cyrus/mail")));
        assert_eq!(c.meta_partition_of("second", "index"), Some(Path::new("/srv/p2")));
        assert_eq!(c.archive_partitions["default"], PathBuf::from("/slow/archive"));
        assert_eq!(c.shutdown_file(None), Some(PathBuf::from("/run/cyrus/sync-stop")));
        assert_eq!(c.shutdown_file(Some("pairsync")), Some(PathBuf::from("/run/cyrus/pairsync-stop")));
        assert_eq!(c.shutdown_file(Some("other")), Some(PathBuf::from("/run/cyrus/sync-stop")));
    }

    #[test]
    fn channels_pick_the_log_sync_client_reads() {
        let both = conf(&format!("{BASE}sync_log_channels: pairsync \"\"\n")).unwrap();
        assert_eq!(both.sync_log_channels, vec!["pairsync".to_string(), String::new()]);
        assert_eq!(both.sync_log_path(None).unwrap(), PathBuf::from("/var/lib/cyrus/sync/log"));
        assert_eq!(both.sync_log_path(Some("pairsync")).unwrap(), PathBuf::from("/var/lib/cyrus/sync/pairsync/log"));
        assert_eq!(
            both.sync_log_paths(),
            [PathBuf::from("/var/lib/cyrus/sync/pairsync/log"), PathBuf::from("/var/lib/cyrus/sync/log")]
        );
        let named = conf(&format!("{BASE}sync_log_channels: pairsync\n")).unwrap();
        let e = named.sync_log_path(None).unwrap_err().to_string();
        assert!(e.contains("give -n pairsync"), "{e}");
        let e = named.sync_log_path(Some("other")).unwrap_err().to_string();
        assert!(e.contains("-n other: not among sync_log_channels (pairsync)"), "{e}");
        assert!(named.sync_log_path(Some("../x")).is_err());
        let unset = conf(BASE).unwrap();
        assert!(unset.sync_log_path(Some("pairsync")).is_err());
        let off = conf("configdirectory: /c\npartition-default: /p\n").unwrap();
        assert!(off.sync_log_path(None).unwrap_err().to_string().contains("sync_log is off"));
    }

    #[test]
    fn bad_input_names_the_line() {
        let e = conf(&format!("{BASE}hashimapspool: maybe\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/imapd.conf:4: hashimapspool: \"maybe\" is not a boolean (yes/no, on/off, true/false, 1/0)"
        );
        let e = conf("configdirectory /var/lib/cyrus\n").unwrap_err();
        assert_eq!(e.line, Some(1));
        let e = conf("partition-default: /p\n").unwrap_err();
        assert!(e.to_string().contains("no configdirectory"), "{e}");
        let e = conf("configdirectory: /c\n").unwrap_err();
        assert!(e.to_string().contains("partition-default"), "{e}");
        let e = conf("configdirectory: relative/dir\npartition-default: /p\n").unwrap_err();
        assert!(e.to_string().contains("must be an absolute path"), "{e}");
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn includes_are_read_where_they_stand() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.conf"), "configdirectory: /from/include\nhashimapspool: yes\n").unwrap();
        let main = dir.path().join("imapd.conf");
        std::fs::write(&main, "@include: base.conf\nconfigdirectory: /c\npartition-default: /p\n").unwrap();
        let c = read(&main).unwrap();
        assert_eq!(c.configdirectory, PathBuf::from("/c"));
        assert!(c.hashimapspool);
        // Where it stands: an include after a setting wins over it.
        std::fs::write(&main, "configdirectory: /c\npartition-default: /p\n@include: base.conf\n").unwrap();
        assert_eq!(read(&main).unwrap().configdirectory, PathBuf::from("/from/include"));
        std::fs::write(&main, "@include: missing.conf\n").unwrap();
        assert!(read(&main).unwrap_err().to_string().contains("missing.conf: cannot read it"));
    }
}
