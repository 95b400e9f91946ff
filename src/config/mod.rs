//! The config file: named items (DESIGN.md "Config"), read, validated and edited in place.
//!
//! The file stays a `toml_edit` document from load to save, so `add`, `edit`, `copy` and
//! `delete` change only what they must: the user's comments, key order and layout survive.
//! Every read validates the whole file and reports the first problem as
//! `FILE:LINE: item "NAME": what is wrong`. Line numbers come from re-parsing the rendered
//! document, so after an edit they refer to the text that [`Config::save`] would write.
//! No message ever holds a password.

pub mod edit;
pub mod job;
pub mod mail;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use regex::Regex;
use toml_edit::{Array, ArrayOfTables, DocumentMut, ImDocument, Item as TomlItem, Table, TableLike, TomlError, Value};

use crate::core::check::FileCheck;
use crate::core::names::{named, Named};
use crate::core::plan::{ConflictPolicy, Mode};
use crate::core::safety::MaxDelete;

/// `max_delete` when the item does not say (the same as `sync --max-delete`).
pub const DEFAULT_MAX_DELETE: MaxDelete = MaxDelete::Percent(50);

const ITEM_KEYS: [&str; 17] = [
    "name",
    "description",
    "group",
    "log",
    "mode",
    "recursive",
    "schedule",
    "conflict",
    "max_delete",
    "watch",
    "connections",
    "exclude",
    "include",
    "backup_dir",
    "backup_keep",
    "source",
    "destination",
];
/// What the file may hold at the top level.
const TOP_KEYS: [&str; 3] = ["item", "mail", "state_dir"];
const SIDE_KEYS: [&str; 10] =
    ["type", "server", "username", "password", "password_env", "tls", "tls_verify", "directory", "ignore", "check"];
/// Keys that mean something only for an FTP side.
const FTP_KEYS: [&str; 4] = ["server", "username", "password", "password_env"];

/// What an endpoint is: `type = "directory"` (the default) or `type = "ftp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    Directory,
    Ftp,
}

named!(EndpointKind { Directory => "directory", Ftp => "ftp" });

/// One named synchronization definition (IceWarp's "Synchronization" dialog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub description: Option<String>,
    pub group: Option<String>,
    /// Where the runs of this item are logged; `None`: decided by the caller.
    pub log: Option<PathBuf>,
    pub mode: Mode,
    pub recursive: bool,
    /// The schedule as written; checked by [`Config::validate_with`].
    pub schedule: Option<String>,
    pub conflict: ConflictPolicy,
    /// How many of a side's files a run may delete before the safety stop (`N%` or a count).
    pub max_delete: MaxDelete,
    pub watch: bool,
    /// Connections (parallel transfers) to an FTP side; `None`: 4.
    pub connections: Option<u16>,
    /// Globs left out of the pair, and (when any) the only files synced; as `--exclude` and
    /// `--include`.
    pub exclude: Vec<String>,
    pub include: Vec<String>,
    /// Where old versions are kept, relative to each side's root (`--backup-dir`); `None`: not
    /// kept.
    pub backup_dir: Option<String>,
    /// Run folders kept in `backup_dir` (`--backup-keep`); `None`: all.
    pub backup_keep: Option<u32>,
    pub source: SideConfig,
    pub destination: SideConfig,
}

impl Item {
    /// An item with every optional field at its default.
    pub fn new(name: impl Into<String>, source: SideConfig, destination: SideConfig) -> Item {
        Item {
            name: name.into(),
            description: None,
            group: None,
            log: None,
            mode: Mode::TwoWay,
            recursive: true,
            schedule: None,
            conflict: ConflictPolicy::KeepBoth,
            max_delete: DEFAULT_MAX_DELETE,
            watch: false,
            connections: None,
            exclude: Vec::new(),
            include: Vec::new(),
            backup_dir: None,
            backup_keep: None,
            source,
            destination,
        }
    }

    fn side(&self, side: &str) -> &SideConfig {
        if side == "source" {
            &self.source
        } else {
            &self.destination
        }
    }
}

/// One side of an item: `[item.source]` or `[item.destination]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SideConfig {
    pub kind: EndpointKind,
    /// `host` or `host:port`; required for FTP.
    pub server: Option<String>,
    pub username: Option<String>,
    /// Discouraged: prefer `password_env`, or neither (then ~/.netrc).
    pub password: Option<String>,
    /// The name of the environment variable holding the password.
    pub password_env: Option<String>,
    pub tls: bool,
    /// Verify the FTPS server's certificate (the default). `false` only by explicit choice.
    pub tls_verify: bool,
    pub directory: String,
    /// Regexes matched against the '/'-separated path relative to the root.
    pub ignore: Vec<String>,
    /// A file check spec, `PATH[=REGEX]`.
    pub check: Option<String>,
}

impl SideConfig {
    /// A local directory with no ignore list and no file check.
    pub fn directory(directory: impl Into<String>) -> SideConfig {
        SideConfig {
            kind: EndpointKind::Directory,
            server: None,
            username: None,
            password: None,
            password_env: None,
            tls: false,
            tls_verify: true,
            directory: directory.into(),
            ignore: Vec::new(),
            check: None,
        }
    }
}

// By hand, so that `{:?}` of an item never prints a password.
impl fmt::Debug for SideConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SideConfig")
            .field("kind", &self.kind)
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_env", &self.password_env)
            .field("tls", &self.tls)
            .field("tls_verify", &self.tls_verify)
            .field("directory", &self.directory)
            .field("ignore", &self.ignore)
            .field("check", &self.check)
            .finish()
    }
}

/// Why the config file could not be read, validated, edited or written. Every message names
/// the file; problems inside it also name the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {action}: {error}", path.display())]
    Io { path: PathBuf, action: &'static str, error: io::Error },
    /// The file is not TOML.
    #[error("{}:{line}: invalid TOML: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, message: String },
    /// The file is TOML but not a valid config, or an item given to an edit is not valid
    /// (then there is no line).
    #[error("{}: {message}", at(path, *line))]
    Invalid { path: PathBuf, line: Option<usize>, message: String },
    #[error("{}: no item named {name:?}", path.display())]
    UnknownItem { path: PathBuf, name: String },
    #[error("{}: an item named {name:?} already exists", path.display())]
    DuplicateItem { path: PathBuf, name: String },
}

fn at(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

impl From<ConfigError> for crate::core::error::Error {
    fn from(error: ConfigError) -> Self {
        crate::core::error::Error::Usage(error.to_string())
    }
}

/// Says what is wrong with a schedule (the real parser lives elsewhere).
type ScheduleCheck<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// The config file as loaded, with any edits not yet saved.
#[derive(Clone)]
pub struct Config {
    doc: DocumentMut,
    path: PathBuf,
}

// By hand: the document may hold passwords.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Config {
    /// Reads and validates the file (without schedules: see [`Config::validate_with`]).
    /// A missing file is an empty config, so that `add` can create it.
    /// The top-level `state_dir` of the file at `path`, read without validating the rest: a
    /// `sync` that only needs the state folder must not fail on an item it never runs.
    pub fn state_dir_of(path: &Path) -> Result<Option<PathBuf>, ConfigError> {
        let text = fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            action: "cannot read",
            error,
        })?;
        let doc = text.parse::<DocumentMut>().map_err(|e| syntax(path, &text, &e))?;
        Config { doc, path: path.to_path_buf() }.state_dir()
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(ConfigError::Io { path: path.to_path_buf(), action: "cannot read", error }),
        };
        let doc = text.parse::<DocumentMut>().map_err(|e| syntax(path, &text, &e))?;
        let config = Config { doc, path: path.to_path_buf() };
        config.items()?;
        Ok(config)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The top-level `state_dir`, a relative one taken from the config file's folder: so that a
    /// root shell and a systemd unit using this file share state, logs and locks.
    pub fn state_dir(&self) -> Result<Option<PathBuf>, ConfigError> {
        let Some(value) = self.doc.get("state_dir") else { return Ok(None) };
        let text = self.doc.to_string();
        let reader = Reader { text: &text };
        let spans = ImDocument::parse(text.as_str()).ok();
        let line = spans.as_ref().and_then(|doc| reader.key_line(&**doc, "state_dir"));
        let invalid = |message: String| ConfigError::Invalid { path: self.path.clone(), line, message };
        let dir = value
            .as_str()
            .ok_or_else(|| invalid(format!("state_dir must be a string, not {}", a(value.type_name()))))?;
        if dir.is_empty() {
            return Err(invalid("state_dir is empty".into()));
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        Ok(Some(base.join(dir)))
    }

    /// Every item, validated, in file order.
    pub fn items(&self) -> Result<Vec<Item>, ConfigError> {
        self.read(None)
    }

    /// Validates the file, each schedule included (`check_schedule` says what is wrong with one).
    pub fn validate_with(&self, check_schedule: impl Fn(&str) -> Result<(), String>) -> Result<(), ConfigError> {
        self.read(Some(&check_schedule)).map(|_| ())
    }

    pub fn item(&self, name: &str) -> Result<Item, ConfigError> {
        self.items()?.into_iter().find(|item| item.name == name).ok_or_else(|| self.unknown(name))
    }

    /// Group -> the names of its items, in file order. Items without a group are left out.
    pub fn groups(&self) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in self.items()? {
            if let Some(group) = item.group {
                groups.entry(group).or_default().push(item.name);
            }
        }
        Ok(groups)
    }

    /// Appends `item` at the end of the file.
    pub fn add(&mut self, item: &Item) -> Result<(), ConfigError> {
        self.check(item)?;
        if self.index(&item.name)?.is_some() {
            return Err(self.duplicate(&item.name));
        }
        let mut table = Table::new();
        for (key, value) in item_fields(item).into_iter().chain(side_tables(item)) {
            if let Some(value) = value {
                table.insert(key, value);
            }
        }
        self.edit(|doc| push(doc, table))
    }

    /// Changes the item `name` into `item`: only the keys whose value changed are written, so
    /// the comments and order of the rest are kept. `item.name` may differ (a rename) if free.
    pub fn replace(&mut self, name: &str, item: &Item) -> Result<(), ConfigError> {
        self.check(item)?;
        let index = self.index(name)?.ok_or_else(|| self.unknown(name))?;
        if item.name != name && self.index(&item.name)?.is_some() {
            return Err(self.duplicate(&item.name));
        }
        let old = self.item(name)?;
        self.edit(|doc| {
            let table = tables_mut(doc).and_then(|items| items.get_mut(index)).ok_or("the item disappeared")?;
            update(table, item_fields(&old), item_fields(item));
            for side in ["source", "destination"] {
                let side_item = table.get_mut(side).ok_or("a side disappeared")?;
                let inline = matches!(side_item, TomlItem::Value(Value::InlineTable(_)));
                let side_table = side_item.as_table_like_mut().ok_or("a side is not a table")?;
                // An inline table holds no comments: lay it out again rather than leave the
                // spacing before its `}` in the middle.
                if update(side_table, side_fields(old.side(side)), side_fields(item.side(side))) && inline {
                    side_table.fmt();
                }
            }
            Ok(())
        })
    }

    /// Appends a copy of the item `name` called `new`, written as the original is (its own
    /// comments included, but not the comment above its `[[item]]`, which describes the original).
    pub fn copy(&mut self, name: &str, new: &str) -> Result<(), ConfigError> {
        let index = self.index(name)?.ok_or_else(|| self.unknown(name))?;
        let mut copy = self.item(name)?;
        copy.name = new.to_string();
        self.check(&copy)?;
        if self.index(new)?.is_some() {
            return Err(self.duplicate(new));
        }
        self.edit(|doc| {
            let mut table = tables_mut(doc).and_then(|items| items.get(index)).ok_or("the item disappeared")?.clone();
            table.decor_mut().set_prefix("\n");
            set_key(&mut table, "name", Some(Value::from(new)));
            push(doc, table)
        })
    }

    /// Removes the item `name` and the comment block right above its `[[item]]`; comments
    /// separated from it by a blank line (a file header, say) are kept.
    pub fn delete(&mut self, name: &str) -> Result<(), ConfigError> {
        let index = self.index(name)?.ok_or_else(|| self.unknown(name))?;
        self.edit(|doc| {
            let items = tables_mut(doc).ok_or("no items")?;
            let prefix = items.get(index).and_then(|t| t.decor().prefix()).and_then(|p| p.as_str()).unwrap_or("");
            let kept = detached_comments(prefix);
            items.remove(index);
            if kept.is_empty() {
                return Ok(());
            }
            let empty = items.is_empty();
            if let Some(next) = items.get_mut(index) {
                let old = next.decor().prefix().and_then(|p| p.as_str()).unwrap_or("\n").to_string();
                next.decor_mut().set_prefix(format!("{kept}{old}"));
            } else {
                let trailing = doc.trailing().as_str().unwrap_or("").to_string();
                let gap = if empty { "" } else { "\n" };
                doc.set_trailing(format!("{gap}{kept}{trailing}"));
            }
            Ok(())
        })
    }

    /// Writes the file atomically: a temp file in the same folder (created new, synced), renamed
    /// over the file. The file's permission bits are kept; a new file gets 0600, and a missing
    /// folder is created (0700). A symlinked file is replaced where the link points.
    pub fn save(&self) -> Result<(), ConfigError> {
        let io = |action: &'static str| move |error| ConfigError::Io { path: self.path.clone(), action, error };
        let target = match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(&self.path).map_err(io("cannot follow"))?,
            _ => self.path.clone(),
        };
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let file_name = target.file_name().ok_or_else(|| {
            io("cannot write")(io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"))
        })?;
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("cannot create its folder"))?;
        let mode = match fs::metadata(&target) {
            Ok(meta) => meta.permissions().mode() & 0o7777,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0o600,
            Err(error) => return Err(io("cannot read")(error)),
        };
        let (temp, mut file) = create_temp(dir, file_name).map_err(io("cannot create a temporary file"))?;
        let written = file
            .write_all(self.doc.to_string().as_bytes())
            // Set after creation: the umask may have narrowed the mode given to open.
            .and_then(|()| file.set_permissions(fs::Permissions::from_mode(mode)))
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&temp, &target));
        if let Err(error) = written {
            let _ = fs::remove_file(&temp);
            return Err(io("cannot write")(error));
        }
        // The rename is durable only once the folder itself is synced; best effort.
        if let Ok(folder) = fs::File::open(dir) {
            let _ = folder.sync_all();
        }
        Ok(())
    }

    /// Warnings to show the user: a file holding a `password` that group or others can access.
    pub fn warnings(&self) -> Vec<String> {
        let Ok(meta) = fs::metadata(&self.path) else { return Vec::new() };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 || !self.holds_password() {
            return Vec::new();
        }
        vec![format!(
            "{} holds a password and is readable by others (mode {mode:03o}); chmod 600 it",
            self.path.display()
        )]
    }

    fn holds_password(&self) -> bool {
        let Some(items) = self.doc.get("item").and_then(TomlItem::as_array_of_tables) else { return false };
        items.iter().any(|item| {
            ["source", "destination"].iter().any(|side| {
                item.get(side).and_then(TomlItem::as_table_like).is_some_and(|t| t.contains_key("password"))
            })
        })
    }

    /// Reads every item; with `check_schedule`, checks the schedules too.
    fn read(&self, check_schedule: Option<ScheduleCheck<'_>>) -> Result<Vec<Item>, ConfigError> {
        let text = self.doc.to_string();
        let doc = ImDocument::parse(text.as_str()).map_err(|e| syntax(&self.path, &text, &e))?;
        let reader = Reader { text: &text };
        let invalid = |bad: Bad| ConfigError::Invalid { path: self.path.clone(), line: bad.line, message: bad.message };
        let tables = reader.tables(&doc).map_err(invalid)?;
        let mut items: Vec<Item> = Vec::with_capacity(tables.len());
        let mut name_lines = Vec::with_capacity(tables.len());
        for (number, table) in tables.iter().enumerate() {
            let item = reader.item(table, number + 1).map_err(invalid)?;
            let name_line = reader.key_line(*table, "name");
            if let Some(first) = items.iter().position(|other| other.name == item.name) {
                let message = match name_lines[first] {
                    Some(line) => format!("item {:?}: the name is already used by the item at line {line}", item.name),
                    None => format!("item {:?}: the name is already used", item.name),
                };
                return Err(invalid(Bad { line: name_line, message }));
            }
            if let (Some(check), Some(schedule)) = (check_schedule, &item.schedule) {
                check(schedule).map_err(|why| {
                    let message = format!("item {:?}: schedule {schedule:?}: {why}", item.name);
                    invalid(Bad { line: reader.key_line(*table, "schedule"), message })
                })?;
            }
            name_lines.push(name_line);
            items.push(item);
        }
        Ok(items)
    }

    /// Where the item `name` is among the `[[item]]` tables.
    fn index(&self, name: &str) -> Result<Option<usize>, ConfigError> {
        Ok(self.items()?.iter().position(|item| item.name == name))
    }

    /// Checks an item given to an edit (it has no line yet).
    fn check(&self, item: &Item) -> Result<(), ConfigError> {
        check_item(item).map_err(|problem| ConfigError::Invalid {
            path: self.path.clone(),
            line: None,
            message: format!("item {:?}: {}", item.name, problem.message),
        })
    }

    /// Applies `change` to the document, and undoes it if the result does not validate, so a
    /// config never holds what it could not load again.
    fn edit(&mut self, change: impl FnOnce(&mut DocumentMut) -> Result<(), &'static str>) -> Result<(), ConfigError> {
        let before = self.doc.clone();
        let outcome = change(&mut self.doc)
            .map_err(|why| ConfigError::Invalid { path: self.path.clone(), line: None, message: why.to_string() })
            .and_then(|()| self.items().map(|_| ()));
        if outcome.is_err() {
            self.doc = before;
        }
        outcome
    }

    fn unknown(&self, name: &str) -> ConfigError {
        ConfigError::UnknownItem { path: self.path.clone(), name: name.to_string() }
    }

    fn duplicate(&self, name: &str) -> ConfigError {
        ConfigError::DuplicateItem { path: self.path.clone(), name: name.to_string() }
    }
}

/// The config file to use without `-C`: `$PAIRSYNC_CONFIG`, then
/// `$XDG_CONFIG_HOME/pairsync/pairsync.toml`, then `~/.config/pairsync/pairsync.toml`.
pub fn default_path() -> Option<PathBuf> {
    default_path_from(|name| std::env::var_os(name))
}

fn default_path_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("PAIRSYNC_CONFIG")
        // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
        .or_else(|| var("XDG_CONFIG_HOME").filter(|d| d.is_absolute()).map(|d| d.join("pairsync/pairsync.toml")))
        .or_else(|| var("HOME").map(|h| h.join(".config/pairsync/pairsync.toml")))
}

fn syntax(path: &Path, text: &str, error: &TomlError) -> ConfigError {
    // The message only: the error's Display quotes the offending line, which may hold a password.
    let message = error.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    let line = line_at(text, error.span().map_or(0, |s| s.start));
    ConfigError::Syntax { path: path.to_path_buf(), line, message }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count()
}

// ---------------------------------------------------------------------------------------------
// Reading: from the parsed document (which keeps spans) to items, with a line for every problem.

/// A problem found in the file: its line, when known, and what is wrong.
struct Bad {
    line: Option<usize>,
    message: String,
}

impl Bad {
    fn within(self, context: &str) -> Bad {
        Bad { line: self.line, message: format!("{context}: {}", self.message) }
    }
}

struct Reader<'a> {
    text: &'a str,
}

impl Reader<'_> {
    fn line(&self, span: Option<Range<usize>>) -> Option<usize> {
        span.map(|span| line_at(self.text, span.start))
    }

    /// The line where `key` is written in `table`.
    fn key_line(&self, table: &dyn TableLike, key: &str) -> Option<usize> {
        let (key, value) = table.get_key_value(key)?;
        self.line(key.span()).or_else(|| self.line(value.span()))
    }

    /// The `[[item]]` tables; nothing else may be at the top level.
    fn tables<'d>(&self, root: &'d Table) -> Result<Vec<&'d Table>, Bad> {
        if let Some((key, _)) = root.iter().find(|(key, _)| !TOP_KEYS.contains(key)) {
            let message =
                format!("unknown key {key:?} at the top level (items are [[item]] tables, mail replication is [mail])");
            return Err(Bad { line: self.key_line(root, key), message });
        }
        match root.get("item") {
            None => Ok(Vec::new()),
            Some(TomlItem::ArrayOfTables(items)) => Ok(items.iter().collect()),
            Some(other) => Err(Bad {
                line: self.key_line(root, "item"),
                message: format!("items must be [[item]] tables, not {}", a(other.type_name())),
            }),
        }
    }

    fn item(&self, table: &Table, number: usize) -> Result<Item, Bad> {
        let header = self.line(table.span());
        let name = match self.string(table, "", "name") {
            Ok(Some(name)) => name,
            Ok(None) => return Err(Bad { line: header, message: format!("item #{number} has no name") }),
            Err(bad) => return Err(bad.within(&format!("item #{number}"))),
        };
        let context = format!("item {name:?}");
        self.item_fields(table, name, header).map_err(|bad| bad.within(&context))
    }

    fn item_fields(&self, table: &Table, name: String, header: Option<usize>) -> Result<Item, Bad> {
        self.known_keys(table, "", &ITEM_KEYS)?;
        let side = |side: &str| match table.get(side) {
            None => Err(Bad { line: header, message: format!("no {side} (add an [item.{side}] table)") }),
            Some(value) => match value.as_table_like() {
                Some(t) => self.side(t, side, self.key_line(table, side).or(header)),
                None => Err(self.wrong_type(table, "", side, "a table")),
            },
        };
        // An integer is a percentage (as it always was); a string is "N%" or a count "N".
        let max_delete = match table.get("max_delete").and_then(TomlItem::as_value) {
            None => DEFAULT_MAX_DELETE,
            Some(Value::Integer(n)) => {
                let n = *n.value();
                u8::try_from(n).ok().filter(|n| *n <= 100).map(MaxDelete::Percent).ok_or_else(|| Bad {
                    line: self.key_line(table, "max_delete"),
                    message: if n > 100 {
                        format!("max_delete {n} is not a percentage from 0 to 100 (a count of files is \"{n}\")")
                    } else {
                        format!("max_delete {n} is not a percentage from 0 to 100")
                    },
                })?
            }
            Some(Value::String(text)) => text.value().parse().map_err(|why| Bad {
                line: self.key_line(table, "max_delete"),
                message: format!("max_delete {why}"),
            })?,
            Some(_) => {
                return Err(self.wrong_type(
                    table,
                    "",
                    "max_delete",
                    "an integer (percent) or a string (\"N%\" or \"N\")",
                ))
            }
        };
        let connections = match self.integer(table, "", "connections")? {
            None => None,
            Some(n) => Some(u16::try_from(n).ok().filter(|n| (1..=64).contains(n)).ok_or_else(|| Bad {
                line: self.key_line(table, "connections"),
                message: format!("connections {n} is not from 1 to 64"),
            })?),
        };
        let backup_keep = match self.integer(table, "", "backup_keep")? {
            None => None,
            Some(n) => Some(u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| Bad {
                line: self.key_line(table, "backup_keep"),
                message: format!("backup_keep {n} is not a number of runs from 1 (leave it out to keep all)"),
            })?),
        };
        let item = Item {
            name,
            description: self.string(table, "", "description")?,
            group: self.string(table, "", "group")?,
            log: self.string(table, "", "log")?.map(PathBuf::from),
            mode: self.choice(table, "", "mode")?.unwrap_or(Mode::TwoWay),
            recursive: self.boolean(table, "", "recursive")?.unwrap_or(true),
            schedule: self.string(table, "", "schedule")?,
            conflict: self.choice(table, "", "conflict")?.unwrap_or(ConflictPolicy::KeepBoth),
            max_delete,
            watch: self.boolean(table, "", "watch")?.unwrap_or(false),
            connections,
            exclude: self.strings(table, "", "exclude")?,
            include: self.strings(table, "", "include")?,
            backup_dir: self.string(table, "", "backup_dir")?,
            backup_keep,
            source: side("source")?,
            destination: side("destination")?,
        };
        check_item(&item)
            .map_err(|problem| Bad { line: self.problem_line(table, &problem).or(header), message: problem.message })?;
        Ok(item)
    }

    fn side(&self, table: &dyn TableLike, side: &str, line: Option<usize>) -> Result<SideConfig, Bad> {
        self.known_keys(table, &format!("{side}."), &SIDE_KEYS)?;
        self.side_fields(table, side, line)
    }

    /// The fields of a side (an item's, or a mail replica's), its keys already checked.
    fn side_fields(&self, table: &dyn TableLike, side: &str, line: Option<usize>) -> Result<SideConfig, Bad> {
        let prefix = format!("{side}.");
        let directory = self
            .string(table, &prefix, "directory")?
            .ok_or_else(|| Bad { line, message: format!("{side} has no directory") })?;
        let ignore = self.strings(table, &prefix, "ignore")?;
        Ok(SideConfig {
            kind: self.choice(table, &prefix, "type")?.unwrap_or(EndpointKind::Directory),
            server: self.string(table, &prefix, "server")?,
            username: self.string(table, &prefix, "username")?,
            password: self.string(table, &prefix, "password")?,
            password_env: self.string(table, &prefix, "password_env")?,
            tls: self.boolean(table, &prefix, "tls")?.unwrap_or(false),
            tls_verify: self.boolean(table, &prefix, "tls_verify")?.unwrap_or(true),
            directory,
            ignore,
            check: self.string(table, &prefix, "check")?,
        })
    }

    /// An array of strings (none: empty).
    fn strings(&self, table: &dyn TableLike, prefix: &str, key: &str) -> Result<Vec<String>, Bad> {
        let Some(value) = table.get(key) else { return Ok(Vec::new()) };
        let list = value.as_array().ok_or_else(|| self.wrong_type(table, prefix, key, "an array of strings"))?;
        list.iter()
            .map(|entry| {
                entry.as_str().map(str::to_string).ok_or_else(|| Bad {
                    line: self.line(entry.span()).or_else(|| self.key_line(table, key)),
                    message: format!("{prefix}{key} must hold strings only, not {}", a(entry.type_name())),
                })
            })
            .collect()
    }

    fn known_keys(&self, table: &dyn TableLike, prefix: &str, known: &[&str]) -> Result<(), Bad> {
        match table.iter().find(|(key, _)| !known.contains(key)) {
            None => Ok(()),
            Some((key, _)) => Err(Bad {
                line: self.key_line(table, key),
                message: format!("unknown key {prefix}{key} (known: {})", known.join(", ")),
            }),
        }
    }

    /// The value of `key`, if present and of the type `get` accepts. Never quotes the value:
    /// it may be a password.
    fn typed<'t, T>(
        &self,
        table: &'t dyn TableLike,
        prefix: &str,
        key: &str,
        want: &str,
        get: impl Fn(&'t Value) -> Option<T>,
    ) -> Result<Option<T>, Bad> {
        match table.get(key) {
            None => Ok(None),
            Some(item) => {
                item.as_value().and_then(get).map(Some).ok_or_else(|| self.wrong_type(table, prefix, key, want))
            }
        }
    }

    fn wrong_type(&self, table: &dyn TableLike, prefix: &str, key: &str, want: &str) -> Bad {
        let found = table.get(key).map_or("nothing", TomlItem::type_name);
        Bad { line: self.key_line(table, key), message: format!("{prefix}{key} must be {want}, not {}", a(found)) }
    }

    fn string(&self, table: &dyn TableLike, prefix: &str, key: &str) -> Result<Option<String>, Bad> {
        self.typed(table, prefix, key, "a string", |v| v.as_str().map(str::to_string))
    }

    fn boolean(&self, table: &dyn TableLike, prefix: &str, key: &str) -> Result<Option<bool>, Bad> {
        self.typed(table, prefix, key, "true or false", Value::as_bool)
    }

    fn integer(&self, table: &dyn TableLike, prefix: &str, key: &str) -> Result<Option<i64>, Bad> {
        self.typed(table, prefix, key, "an integer", Value::as_integer)
    }

    fn choice<E: Named>(&self, table: &dyn TableLike, prefix: &str, key: &str) -> Result<Option<E>, Bad> {
        let Some(word) = self.string(table, prefix, key)? else { return Ok(None) };
        E::from_name(&word).map(Some).ok_or_else(|| Bad {
            line: self.key_line(table, key),
            message: format!("{prefix}{key} {word:?} is not one of {}", E::names().join(", ")),
        })
    }

    /// The line of the key (or list entry) a problem is about; `None` if it is not written.
    fn problem_line(&self, item: &Table, problem: &Problem) -> Option<usize> {
        let (table, base): (&dyn TableLike, _) = match problem.side {
            None => (item, None),
            Some(side) => {
                let base = self.key_line(item, side);
                match item.get(side).and_then(TomlItem::as_table_like) {
                    Some(table) => (table, base),
                    None => return base,
                }
            }
        };
        let Some(key) = problem.key else { return base };
        let entry = problem.index.and_then(|i| table.get(key)?.as_array()?.get(i)?.span());
        self.line(entry).or_else(|| self.key_line(table, key)).or(base)
    }
}

/// "an integer", "a string".
fn a(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {noun}")
}

// ---------------------------------------------------------------------------------------------
// Checks that hold for an item whether it was read from the file or given to an edit.

/// What is wrong with an item, and which key it is about (for the line).
struct Problem {
    side: Option<&'static str>,
    key: Option<&'static str>,
    /// The entry of a list (`ignore`).
    index: Option<usize>,
    message: String,
}

fn problem(side: Option<&'static str>, key: &'static str, message: String) -> Problem {
    Problem { side, key: Some(key), index: None, message }
}

fn check_item(item: &Item) -> Result<(), Problem> {
    let name = &item.name;
    let valid = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    if name.is_empty() || !name.bytes().all(valid) {
        return Err(problem(None, "name", format!("name {name:?} may hold only letters, digits, '.', '_' and '-'")));
    }
    // They would be folders, not names, wherever a name becomes part of a path.
    if name == "." || name == ".." {
        return Err(problem(None, "name", format!("name {name:?} is not allowed")));
    }
    for (key, list) in [("exclude", &item.exclude), ("include", &item.include)] {
        let globs = list.iter().map(|g| (key, g.as_str()));
        let empty = || crate::core::filter::Filter::new([("", ""); 0], true).expect("no pattern");
        let checked = if key == "exclude" { empty().with_globs(globs, []) } else { empty().with_globs([], globs) };
        if let Err(e) = checked {
            return Err(problem(None, key, e.to_string()));
        }
    }
    for (key, value) in [("description", &item.description), ("group", &item.group), ("schedule", &item.schedule)] {
        if value.as_deref() == Some("") {
            return Err(problem(None, key, format!("{key} is empty")));
        }
    }
    match item.log.as_deref().map(Path::to_str) {
        Some(Some("")) => return Err(problem(None, "log", "log is empty".into())),
        Some(None) => return Err(problem(None, "log", "log is not valid UTF-8".into())),
        _ => {}
    }
    if let Some(p) = item.max_delete.percent_over_100() {
        return Err(problem(None, "max_delete", format!("max_delete {p}% is not a percentage from 0 to 100")));
    }
    if let Some(n) = item.connections.filter(|n| !(1..=64).contains(n)) {
        return Err(problem(None, "connections", format!("connections {n} is not from 1 to 64")));
    }
    if let Some(dir) = &item.backup_dir {
        crate::core::versions::folder(dir).map_err(|why| problem(None, "backup_dir", format!("backup_dir {why}")))?;
    }
    match item.backup_keep {
        Some(0) => return Err(problem(None, "backup_keep", "backup_keep 0 would keep no run's versions".into())),
        Some(_) if item.backup_dir.is_none() => {
            return Err(problem(None, "backup_keep", "backup_keep applies only with backup_dir".into()))
        }
        _ => {}
    }
    check_side(&item.source, "source")?;
    check_side(&item.destination, "destination")
}

fn check_side(config: &SideConfig, side: &'static str) -> Result<(), Problem> {
    let at = |key: &'static str, message: String| Err(problem(Some(side), key, message));
    if config.directory.is_empty() {
        return at("directory", format!("{side}.directory is empty"));
    }
    match config.kind {
        EndpointKind::Ftp if config.server.as_deref().is_none_or(str::is_empty) => {
            return Err(Problem {
                side: Some(side),
                key: config.server.is_some().then_some("server"),
                index: None,
                message: format!("{side} is an FTP side but has no server"),
            });
        }
        EndpointKind::Ftp => {}
        EndpointKind::Directory => {
            let set = [&config.server, &config.username, &config.password, &config.password_env];
            if let Some((key, _)) = FTP_KEYS.iter().zip(set).find(|(_, value)| value.is_some()) {
                return at(key, format!("{side}.{key} applies only to type = \"ftp\""));
            }
            if config.tls {
                return at("tls", format!("{side}.tls applies only to type = \"ftp\""));
            }
        }
    }
    if !config.tls_verify && !config.tls {
        return at("tls_verify", format!("{side}.tls_verify applies only to tls = true"));
    }
    if config.password.is_some() && config.password_env.is_some() {
        return at(
            "password_env",
            format!("{side} sets both password and password_env; keep one (password_env is safer)"),
        );
    }
    if config.password_env.as_deref() == Some("") {
        return at("password_env", format!("{side}.password_env is empty"));
    }
    for (index, pattern) in config.ignore.iter().enumerate() {
        if let Err(e) = Regex::new(pattern) {
            let why = e.to_string().lines().last().unwrap_or_default().trim().trim_start_matches("error: ").to_string();
            let message = format!("{side}.ignore: invalid regex {pattern:?}: {why}");
            return Err(Problem { side: Some(side), key: Some("ignore"), index: Some(index), message });
        }
    }
    if let Some(spec) = &config.check {
        if let Err(e) = FileCheck::parse(&format!("{side}.check"), spec) {
            return at("check", e.to_string());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writing: each field as the value it is written with, in the order a new item is written.

type Fields = Vec<(&'static str, Option<TomlItem>)>;

fn item_fields(item: &Item) -> Fields {
    let text = |s: &Option<String>| s.as_deref().map(toml_edit::value);
    vec![
        ("name", Some(toml_edit::value(item.name.as_str()))),
        ("description", text(&item.description)),
        ("group", text(&item.group)),
        // check_item refused a log path that is not UTF-8.
        ("log", item.log.as_ref().map(|p| toml_edit::value(p.to_string_lossy().as_ref()))),
        ("mode", Some(toml_edit::value(item.mode.name()))),
        ("recursive", Some(toml_edit::value(item.recursive))),
        ("schedule", text(&item.schedule)),
        ("conflict", Some(toml_edit::value(item.conflict.name()))),
        // A percentage as the integer it always was; a count as a string, so that reading
        // it back cannot take it for a percentage.
        (
            "max_delete",
            Some(match item.max_delete {
                MaxDelete::Percent(p) => toml_edit::value(i64::from(p)),
                MaxDelete::Count(n) => toml_edit::value(n.to_string()),
            }),
        ),
        ("watch", Some(toml_edit::value(item.watch))),
        ("connections", item.connections.map(|n| toml_edit::value(i64::from(n)))),
        ("exclude", (!item.exclude.is_empty()).then(|| toml_edit::value(item.exclude.iter().collect::<Array>()))),
        ("include", (!item.include.is_empty()).then(|| toml_edit::value(item.include.iter().collect::<Array>()))),
        ("backup_dir", text(&item.backup_dir)),
        ("backup_keep", item.backup_keep.map(|n| toml_edit::value(i64::from(n)))),
    ]
}

fn side_fields(side: &SideConfig) -> Fields {
    let text = |s: &Option<String>| s.as_deref().map(toml_edit::value);
    let ftp = side.kind == EndpointKind::Ftp;
    vec![
        ("type", Some(toml_edit::value(side.kind.name()))),
        ("server", text(&side.server)),
        ("username", text(&side.username)),
        ("password", text(&side.password)),
        ("password_env", text(&side.password_env)),
        ("tls", (ftp || side.tls).then(|| toml_edit::value(side.tls))),
        ("tls_verify", (!side.tls_verify).then(|| toml_edit::value(false))),
        ("directory", Some(toml_edit::value(side.directory.as_str()))),
        ("ignore", (!side.ignore.is_empty()).then(|| toml_edit::value(side.ignore.iter().collect::<Array>()))),
        ("check", text(&side.check)),
    ]
}

/// `[item.source]` and `[item.destination]` of a new item.
fn side_tables(item: &Item) -> Fields {
    ["source", "destination"]
        .into_iter()
        .map(|side| {
            let mut table = Table::new();
            for (key, value) in side_fields(item.side(side)).into_iter().filter_map(|(k, v)| Some((k, v?))) {
                table.insert(key, value);
            }
            (side, Some(TomlItem::Table(table)))
        })
        .collect()
}

/// Writes the fields whose value differs between `old` and `new`; the rest is left as written.
/// Returns whether a key was added.
fn update(table: &mut dyn TableLike, old: Fields, new: Fields) -> bool {
    let mut added = false;
    for ((key, old), (_, new)) in old.into_iter().zip(new) {
        let render = |item: &Option<TomlItem>| item.as_ref().map(ToString::to_string);
        if render(&old) != render(&new) {
            added |= set_key(table, key, new.and_then(|item| item.into_value().ok()));
        }
    }
    added
}

/// Sets (or with `None` removes) `key`. A value that replaces another keeps its decor, so a
/// trailing comment stays (in its column), and a list keeps the entries that did not change.
/// Returns whether the key was added.
fn set_key(table: &mut dyn TableLike, key: &str, value: Option<Value>) -> bool {
    match (value, table.get_mut(key)) {
        (None, _) => {
            table.remove(key);
        }
        (Some(value), Some(TomlItem::Value(old))) => {
            let mut value = match (value, &*old) {
                (Value::Array(new), Value::Array(was)) => Value::Array(merge_array(was, &new)),
                (value, _) => value,
            };
            keep_column(old, &mut value);
            *old = value;
        }
        (Some(value), Some(old)) => *old = TomlItem::Value(value),
        (Some(value), None) => {
            table.insert(key, TomlItem::Value(value));
            return true;
        }
    }
    false
}

/// Gives `new` the decor of `old`, moving a trailing comment so it stays in its column.
fn keep_column(old: &Value, new: &mut Value) {
    // The width of the value's last line: a multi-line list ends with its `]`.
    let bare = |value: &Value| {
        let mut value = value.clone();
        value.decor_mut().clear();
        value.to_string().rsplit('\n').next().map_or(0, |line| line.chars().count())
    };
    let mut decor = old.decor().clone();
    if let Some(suffix) = decor.suffix().and_then(|s| s.as_str()).map(str::to_string) {
        let comment = suffix.trim_start_matches([' ', '\t']);
        if comment.starts_with('#') {
            let column = suffix.len() - comment.len() + bare(old);
            decor.set_suffix(format!("{}{comment}", " ".repeat(column.saturating_sub(bare(new)).max(1))));
        }
    }
    *new.decor_mut() = decor;
}

/// `new`'s entries, written as in `was` where they were already there: a multi-line list keeps
/// its layout and its comments; a one-line list is laid out again.
fn merge_array(was: &Array, new: &Array) -> Array {
    let prefix = |value: &Value| value.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_string();
    let multi_line = was.iter().any(|value| prefix(value).contains('\n'));
    // A new entry goes on its own line, indented as the last one.
    let indent = was.iter().last().map(prefix).and_then(|p| p.rfind('\n').map(|i| p[i..].to_string()));
    let mut merged = was.clone();
    merged.clear();
    for value in new.iter() {
        match was.iter().find(|old| old.as_str().is_some() && old.as_str() == value.as_str()) {
            Some(old) => merged.push_formatted(old.clone()),
            None => {
                let mut value = value.clone();
                value.decor_mut().clear();
                if let (true, Some(indent)) = (multi_line, &indent) {
                    value.decor_mut().set_prefix(indent.as_str());
                }
                merged.push_formatted(value);
            }
        }
    }
    if !multi_line {
        merged.fmt();
    }
    merged
}

fn tables_mut(doc: &mut DocumentMut) -> Option<&mut ArrayOfTables> {
    doc.get_mut("item").and_then(TomlItem::as_array_of_tables_mut)
}

/// Appends an `[[item]]` table after everything else in the file.
fn push(doc: &mut DocumentMut, mut table: Table) -> Result<(), &'static str> {
    // Tables render in the order of their positions; a cloned table would keep the original's.
    let mut next = max_position(doc.as_table()) + 1;
    set_positions(&mut table, &mut next);
    if doc.get("item").is_none() {
        doc.insert("item", TomlItem::ArrayOfTables(ArrayOfTables::new()));
    }
    tables_mut(doc).ok_or("items are not [[item]] tables")?.push(table);
    Ok(())
}

fn max_position(table: &Table) -> usize {
    let nested = table.iter().map(|(_, item)| match item {
        TomlItem::Table(t) => max_position(t),
        TomlItem::ArrayOfTables(list) => list.iter().map(max_position).max().unwrap_or(0),
        _ => 0,
    });
    nested.chain(table.position()).max().unwrap_or(0)
}

fn set_positions(table: &mut Table, next: &mut usize) {
    table.set_position(*next);
    *next += 1;
    for (_, item) in table.iter_mut() {
        if let TomlItem::Table(t) = item {
            set_positions(t, next);
        }
    }
}

/// The part of the comments above a header that is not attached to it: everything up to the
/// blank line before the comment block that touches the header (a file header, say).
fn detached_comments(prefix: &str) -> String {
    let lines: Vec<&str> = prefix.split_inclusive('\n').collect();
    // The last piece is the header line's own indentation, with no newline.
    let mut end = lines.len() - usize::from(lines.last().is_some_and(|l| !l.ends_with('\n')));
    while end > 0 && lines[end - 1].trim_start().starts_with('#') {
        end -= 1;
    }
    let detached = &lines[..end];
    if !detached.iter().any(|l| l.trim_start().starts_with('#')) {
        return String::new();
    }
    let last = detached.iter().rposition(|l| !l.trim().is_empty()).map_or(0, |i| i + 1);
    detached[..last].concat()
}

fn create_temp(dir: &Path, file_name: &std::ffi::OsStr) -> io::Result<(PathBuf, fs::File)> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut attempts = 0;
    loop {
        let mut name = OsString::from(".");
        name.push(file_name);
        name.push(format!(".{}-{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let temp = dir.join(name);
        match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SAMPLE: &str = r#"# pairsync items; comments anywhere must survive edits

# Nightly backup to the USB drive
[[item]]
name = "backup"                 # required, unique
description = "Nightly USB backup"
group = "usb"                   # optional label
log = "/var/log/pairsync/backup.log"
mode = "clone"                  # simple | clone | two-way
recursive = true
schedule = "daily at 02:30"
conflict = "keep-both"
max_delete = 50
watch = false
[item.source]
type = "directory"              # directory | ftp
directory = "/home/alice"
ignore = [
    '\.tmp$',   # editor leftovers
    '^cache/',
]
check = ".marker=^disk-1$"      # optional file check spec
[item.destination]
type = "ftp"
server = "backup.example.com:21"
username = "alice"
password_env = "BACKUP_PASSWORD"  # never the password itself
tls = true
directory = "/backups/alice"

# Documents, both ways
[[item]]
name = "docs"
group = "usb"
source = { directory = "/home/alice/docs" }
destination.directory = "/mnt/usb/docs"   # dotted keys work too

[[item]]
name = "photos"
[item.source]
directory = "/home/alice/photos"
[item.destination]
directory = "/srv/photos"
# end of file
"#;

    /// The sides of a minimal valid item, for the validation cases.
    macro_rules! sides {
        () => {
            "[item.source]\ndirectory = \"/s\"\n[item.destination]\ndirectory = \"/d\"\n"
        };
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("pairsync.toml");
        fs::write(&path, text).unwrap();
        path
    }

    fn load(text: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&write(dir.path(), text)).unwrap();
        (dir, config)
    }

    /// What `save` would write.
    fn text(config: &Config) -> String {
        config.doc.to_string()
    }

    /// `text` without the part from `from` up to (not including) `to`.
    fn cut(text: &str, from: &str, to: &str) -> String {
        let start = text.find(from).unwrap_or_else(|| panic!("{from:?} not in the text"));
        let end = start + text[start..].find(to).unwrap_or_else(|| panic!("{to:?} not after {from:?}"));
        format!("{}{}", &text[..start], &text[end..])
    }

    /// An error's message with the config file's path shown as `F`.
    fn shown(config_path: &Path, error: ConfigError) -> String {
        error.to_string().replace(&config_path.display().to_string(), "F")
    }

    /// The error loading a file holding `text`.
    fn error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), text);
        match Config::load(&path) {
            Ok(config) => panic!("loaded: {:?}", config.items()),
            Err(e) => shown(&path, e),
        }
    }

    fn backup() -> Item {
        Item {
            name: "backup".into(),
            description: Some("Nightly USB backup".into()),
            group: Some("usb".into()),
            log: Some("/var/log/pairsync/backup.log".into()),
            mode: Mode::Clone,
            recursive: true,
            schedule: Some("daily at 02:30".into()),
            conflict: ConflictPolicy::KeepBoth,
            max_delete: MaxDelete::Percent(50),
            watch: false,
            connections: None,
            exclude: Vec::new(),
            include: Vec::new(),
            backup_dir: None,
            backup_keep: None,
            source: SideConfig {
                ignore: vec![r"\.tmp$".into(), "^cache/".into()],
                check: Some(".marker=^disk-1$".into()),
                ..SideConfig::directory("/home/alice")
            },
            destination: SideConfig {
                kind: EndpointKind::Ftp,
                server: Some("backup.example.com:21".into()),
                username: Some("alice".into()),
                password_env: Some("BACKUP_PASSWORD".into()),
                tls: true,
                ..SideConfig::directory("/backups/alice")
            },
        }
    }

    #[test]
    fn loads_every_field_and_the_defaults() {
        let (_dir, config) = load(SAMPLE);
        let items = config.items().unwrap();
        let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["backup", "docs", "photos"]);
        assert_eq!(items[0], backup());
        let docs = Item {
            group: Some("usb".into()),
            ..Item::new("docs", SideConfig::directory("/home/alice/docs"), SideConfig::directory("/mnt/usb/docs"))
        };
        assert_eq!(items[1], docs);
        assert_eq!(
            items[2],
            Item::new("photos", SideConfig::directory("/home/alice/photos"), SideConfig::directory("/srv/photos"))
        );
        assert_eq!(config.item("docs").unwrap(), docs);
    }

    #[test]
    fn a_missing_file_is_an_empty_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none/pairsync.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.path(), path);
        assert!(config.items().unwrap().is_empty());
        assert!(config.groups().unwrap().is_empty());
        assert!(config.warnings().is_empty());
    }

    #[test]
    fn an_unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Config::load(dir.path()).unwrap_err();
        assert!(matches!(e, ConfigError::Io { action: "cannot read", .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("{}: cannot read: ", dir.path().display())), "{e}");
    }

    #[test]
    fn saving_an_unchanged_config_writes_the_same_bytes() {
        let (dir, config) = load(SAMPLE);
        config.save().unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("pairsync.toml")).unwrap(), SAMPLE);
    }

    #[test]
    fn groups_list_their_items_in_file_order() {
        let (_dir, config) = load(SAMPLE);
        let groups = config.groups().unwrap();
        assert_eq!(groups, BTreeMap::from([("usb".to_string(), vec!["backup".to_string(), "docs".to_string()])]));
    }

    const NEW_ITEM: &str = r#"
[[item]]
name = "music"
description = "Songs"
mode = "simple"
recursive = false
conflict = "newer"
max_delete = 10
watch = true

[item.source]
type = "directory"
directory = "/home/alice/music"
ignore = ['\.part$', "^tmp/"]

[item.destination]
type = "ftp"
server = "nas:21"
username = "alice"
password_env = "NAS_PASSWORD"
tls = false
directory = "/music"
"#;

    fn music() -> Item {
        Item {
            description: Some("Songs".into()),
            mode: Mode::Simple,
            recursive: false,
            conflict: ConflictPolicy::Newer,
            max_delete: MaxDelete::Percent(10),
            watch: true,
            connections: None,
            exclude: Vec::new(),
            include: Vec::new(),
            ..Item::new(
                "music",
                SideConfig {
                    ignore: vec![r"\.part$".into(), "^tmp/".into()],
                    ..SideConfig::directory("/home/alice/music")
                },
                SideConfig {
                    kind: EndpointKind::Ftp,
                    server: Some("nas:21".into()),
                    username: Some("alice".into()),
                    password_env: Some("NAS_PASSWORD".into()),
                    ..SideConfig::directory("/music")
                },
            )
        }
    }

    #[test]
    fn add_appends_the_item_and_keeps_the_rest() {
        let (dir, mut config) = load(SAMPLE);
        config.add(&music()).unwrap();
        // The comment closing the file stays last.
        let end = SAMPLE.find("# end of file").unwrap();
        assert_eq!(text(&config), format!("{}{}{}", &SAMPLE[..end], NEW_ITEM, &SAMPLE[end..]));
        config.save().unwrap();
        let again = Config::load(&dir.path().join("pairsync.toml")).unwrap();
        assert_eq!(again.item("music").unwrap(), music());
        assert_eq!(again.items().unwrap().len(), 4);
    }

    #[test]
    fn add_creates_the_file_and_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/pairsync/pairsync.toml");
        let mut config = Config::load(&path).unwrap();
        config.add(&music()).unwrap();
        config.save().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), &NEW_ITEM[1..]);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(Config::load(&path).unwrap().items().unwrap(), [music()]);
    }

    #[test]
    fn add_refuses_a_name_in_use() {
        let (_dir, mut config) = load(SAMPLE);
        let e = config.add(&Item { name: "docs".into(), ..music() }).unwrap_err();
        assert!(matches!(e, ConfigError::DuplicateItem { .. }));
        assert_eq!(shown(config.path(), e), r#"F: an item named "docs" already exists"#);
        assert_eq!(text(&config), SAMPLE);
    }

    #[test]
    fn an_edit_with_an_invalid_item_changes_nothing() {
        let (_dir, mut config) = load(SAMPLE);
        let mut bad = music();
        bad.source.ignore.push("(".into());
        let e = config.add(&bad).unwrap_err();
        assert_eq!(shown(config.path(), e), r#"F: item "music": source.ignore: invalid regex "(": unclosed group"#);
        let e = config.replace("backup", &Item { max_delete: MaxDelete::Percent(101), ..backup() }).unwrap_err();
        assert_eq!(shown(config.path(), e), r#"F: item "backup": max_delete 101% is not a percentage from 0 to 100"#);
        let e = config.add(&Item { name: "a/b".into(), ..music() }).unwrap_err();
        assert_eq!(
            shown(config.path(), e),
            r#"F: item "a/b": name "a/b" may hold only letters, digits, '.', '_' and '-'"#
        );
        assert_eq!(text(&config), SAMPLE);
    }

    #[test]
    fn replace_writes_only_the_keys_that_changed() {
        let (_dir, mut config) = load(SAMPLE);
        let mut item = backup();
        item.mode = Mode::TwoWay;
        item.group = None;
        item.description = Some("Every night".into());
        item.watch = true;
        item.source.ignore = vec![r"\.tmp$".into(), "^cache/".into(), r"\.swp$".into()];
        item.destination.password_env = Some("PW".into());
        config.replace("backup", &item).unwrap();
        let expected = SAMPLE
            .replace(r#"description = "Nightly USB backup""#, r#"description = "Every night""#)
            .replace("group = \"usb\"                   # optional label\n", "")
            // The comments stay in their column.
            .replace(r#"mode = "clone"                  # simple"#, r#"mode = "two-way"                # simple"#)
            .replace("watch = false\n", "watch = true\n")
            .replace("    '^cache/',\n]", "    '^cache/',\n    '\\.swp$',\n]")
            .replace(r#"password_env = "BACKUP_PASSWORD"  # never"#, r#"password_env = "PW"               # never"#);
        assert_eq!(text(&config), expected);
        assert_eq!(config.item("backup").unwrap(), item);
    }

    #[test]
    fn replace_adds_and_removes_keys_in_inline_and_dotted_sides() {
        let (_dir, mut config) = load(SAMPLE);
        let mut docs = config.item("docs").unwrap();
        docs.source.check = Some("marker".into());
        docs.destination.ignore = vec![r"\.db$".into()];
        docs.log = Some("/var/log/docs.log".into());
        docs.group = None;
        config.replace("docs", &docs).unwrap();
        let expected = SAMPLE.replace(
            "group = \"usb\"\nsource = { directory = \"/home/alice/docs\" }\ndestination.directory = \"/mnt/usb/docs\"   # dotted keys work too\n",
            "source = { directory = \"/home/alice/docs\", check = \"marker\" }\ndestination.directory = \"/mnt/usb/docs\"   # dotted keys work too\ndestination.ignore = ['\\.db$']\nlog = \"/var/log/docs.log\"\n",
        );
        assert_eq!(text(&config), expected);
        assert_eq!(config.item("docs").unwrap(), docs);
    }

    #[test]
    fn replace_with_the_same_item_changes_nothing() {
        let (_dir, mut config) = load(SAMPLE);
        for item in config.items().unwrap() {
            config.replace(&item.name.clone(), &item).unwrap();
        }
        assert_eq!(text(&config), SAMPLE);
    }

    #[test]
    fn replace_renames_to_a_free_name_only() {
        let (_dir, mut config) = load(SAMPLE);
        config.replace("backup", &Item { name: "nightly".into(), ..backup() }).unwrap();
        assert_eq!(
            text(&config),
            SAMPLE.replace(r#"name = "backup"                 #"#, r#"name = "nightly"                #"#)
        );
        let e = config.replace("docs", &Item { name: "photos".into(), ..config.item("docs").unwrap() }).unwrap_err();
        assert_eq!(shown(config.path(), e), r#"F: an item named "photos" already exists"#);
        let e = config.replace("backup", &backup()).unwrap_err();
        assert!(matches!(e, ConfigError::UnknownItem { .. }));
        assert_eq!(shown(config.path(), e), r#"F: no item named "backup""#);
    }

    #[test]
    fn copy_appends_the_item_as_written_without_the_comment_above_it() {
        let (_dir, mut config) = load(SAMPLE);
        config.copy("backup", "backup-2").unwrap();
        let start = SAMPLE.find("[[item]]").unwrap();
        let block = &SAMPLE[start..SAMPLE.find("\n# Documents").unwrap()];
        let block = block.replace(r#"name = "backup"                 #"#, r#"name = "backup-2"               #"#);
        let end = SAMPLE.find("# end of file").unwrap();
        assert_eq!(text(&config), format!("{}\n{block}{}", &SAMPLE[..end], &SAMPLE[end..]));
        assert_eq!(config.item("backup-2").unwrap(), Item { name: "backup-2".into(), ..backup() });
    }

    #[test]
    fn copy_refuses_a_used_or_invalid_name_and_an_unknown_item() {
        let (_dir, mut config) = load(SAMPLE);
        let e = config.copy("backup", "docs").unwrap_err();
        assert_eq!(shown(config.path(), e), r#"F: an item named "docs" already exists"#);
        let e = config.copy("backup", "new name").unwrap_err();
        assert_eq!(
            shown(config.path(), e),
            r#"F: item "new name": name "new name" may hold only letters, digits, '.', '_' and '-'"#
        );
        let e = config.copy("nope", "new").unwrap_err();
        assert_eq!(shown(config.path(), e), r#"F: no item named "nope""#);
        assert_eq!(text(&config), SAMPLE);
    }

    #[test]
    fn delete_removes_the_item_and_the_comment_above_it() {
        let (_dir, mut config) = load(SAMPLE);
        config.delete("docs").unwrap();
        assert_eq!(text(&config), cut(SAMPLE, "\n# Documents", "\n[[item]]\nname = \"photos\""));
    }

    #[test]
    fn delete_of_the_first_item_keeps_the_file_header() {
        let (_dir, mut config) = load(SAMPLE);
        config.delete("backup").unwrap();
        assert_eq!(text(&config), cut(SAMPLE, "\n# Nightly", "\n# Documents"));
        assert!(text(&config).starts_with("# pairsync items; comments anywhere must survive edits\n\n# Documents"));
    }

    #[test]
    fn delete_of_the_last_item_keeps_the_closing_comment() {
        let (_dir, mut config) = load(SAMPLE);
        config.delete("photos").unwrap();
        assert_eq!(text(&config), cut(SAMPLE, "\n[[item]]\nname = \"photos\"", "# end of file"));
        let e = config.delete("photos").unwrap_err();
        assert_eq!(shown(config.path(), e), r#"F: no item named "photos""#);
    }

    #[test]
    fn delete_of_every_item_keeps_the_comments() {
        let (dir, mut config) = load(SAMPLE);
        for name in ["docs", "backup", "photos"] {
            config.delete(name).unwrap();
        }
        assert_eq!(text(&config), "# pairsync items; comments anywhere must survive edits\n# end of file\n");
        config.save().unwrap();
        assert!(Config::load(&dir.path().join("pairsync.toml")).unwrap().items().unwrap().is_empty());
    }

    #[test]
    fn save_is_atomic_and_keeps_the_permission_bits() {
        let (dir, mut config) = load(SAMPLE);
        let path = dir.path().join("pairsync.toml");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        config.delete("photos").unwrap();
        config.save().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), text(&config));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o640);
        let files: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, ["pairsync.toml"], "no temporary file is left");
    }

    #[test]
    fn save_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("dotfiles")).unwrap();
        let real = write(&dir.path().join("dotfiles"), SAMPLE);
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut config = Config::load(&link).unwrap();
        config.delete("photos").unwrap();
        config.save().unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), text(&config));
    }

    #[test]
    fn a_readable_file_holding_a_password_is_a_warning() {
        let with_password = SAMPLE.replace(r#"password_env = "BACKUP_PASSWORD""#, r#"password = "hunter2""#);
        let (dir, config) = load(&with_password);
        let path = dir.path().join("pairsync.toml");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            config.warnings(),
            [format!("{} holds a password and is readable by others (mode 644); chmod 600 it", path.display())]
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(config.warnings().is_empty());
        let (dir, config) = load(SAMPLE);
        fs::set_permissions(dir.path().join("pairsync.toml"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(config.warnings().is_empty(), "password_env is no password");
    }

    #[test]
    fn debug_hides_passwords() {
        let mut item = backup();
        item.destination.password_env = None;
        item.destination.password = Some("hunter2".into());
        let shown = format!("{item:?} {item:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(r#"password: Some("***")"#), "{shown}");
        let with_password = SAMPLE.replace(r#"password_env = "BACKUP_PASSWORD""#, r#"password = "hunter2""#);
        let (_dir, config) = load(&with_password);
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn errors_never_show_a_password() {
        let ftp = "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\n[item.destination]\ntype = \"ftp\"\nserver = \"h\"\ndirectory = \"/d\"\n";
        for (bad, why) in [
            ("password = \"hunter2\"\npassword_env = \"P\"\n", "both set"),
            ("password = \"hunter2\n", "unterminated string"),
            ("password = hunter2\n", "bare word"),
            ("password = [\"hunter2\"]\n", "wrong type"),
            ("pasword = \"hunter2\"\n", "misspelled key"),
            ("password = \"hunter2\"\npassword = \"hunter2\"\n", "duplicate key"),
            ("password = \"hunter2\\q\"\n", "bad escape"),
        ] {
            let shown = error(&format!("{ftp}{bad}"));
            assert!(!shown.contains("hunter2"), "{why}: {shown}");
            assert!(shown.starts_with("F:"), "{why}: {shown}");
        }
    }

    #[test]
    fn validate_with_checks_schedules_at_their_line() {
        let (dir, config) = load(SAMPLE);
        let path = dir.path().join("pairsync.toml");
        config.validate_with(|s| if s == "daily at 02:30" { Ok(()) } else { Err("?".into()) }).unwrap();
        let e = config.validate_with(|_| Err("no such day".into())).unwrap_err();
        assert_eq!(shown(&path, e), r#"F:11: item "backup": schedule "daily at 02:30": no such day"#);
        // Without the check, any schedule loads.
        assert_eq!(config.items().unwrap().len(), 3);
    }

    #[test]
    fn default_path_prefers_pairsync_config_then_xdg_then_home() {
        let path = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, OsString> =
                vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
            default_path_from(|name| vars.get(name).cloned())
        };
        let all = [("PAIRSYNC_CONFIG", "/etc/p.toml"), ("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(path(&all), Some(PathBuf::from("/etc/p.toml")));
        assert_eq!(path(&all[1..]), Some(PathBuf::from("/x/pairsync/pairsync.toml")));
        assert_eq!(path(&all[2..]), Some(PathBuf::from("/h/.config/pairsync/pairsync.toml")));
        // Empty values count as unset; a relative XDG_CONFIG_HOME is invalid (XDG spec).
        assert_eq!(path(&[("PAIRSYNC_CONFIG", ""), ("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")]), path(&all[2..]));
        assert_eq!(path(&[]), None);
    }

    /// One test per validation rule: the file, then the whole message (path shown as `F`).
    macro_rules! invalid {
        ($($name:ident: $text:expr => $expected:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    assert_eq!(error($text), $expected);
                }
            )*
        };
    }

    mod invalid {
        use super::*;

        invalid! {
            not_toml: "[[item]]\nname = \"a\nmode = \"clone\"\n" => "F:2: invalid TOML: invalid basic string";
            unknown_top_level_key: "itme = 1\n" => "F:1: unknown key \"itme\" at the top level (items are [[item]] tables, mail replication is [mail])";
            item_not_an_array_of_tables: "[item]\nname = \"a\"\n" => "F:1: items must be [[item]] tables, not a table";
            unknown_item_key: concat!("[[item]]\nname = \"a\"\nmax_delet = 5\n", sides!())
                => "F:3: item \"a\": unknown key max_delet (known: name, description, group, log, mode, recursive, \
                    schedule, conflict, max_delete, watch, connections, exclude, include, backup_dir, backup_keep, source, \
                    destination)";
            backup_dir_absolute: concat!("[[item]]\nname = \"a\"\nbackup_dir = \"/v\"\n", sides!())
                => "F:3: item \"a\": backup_dir \"/v\" is absolute; give a folder relative to each side's root (old \
                    versions are moved by a rename, which cannot leave the side), e.g. .versions";
            backup_dir_leaves_the_root: concat!("[[item]]\nname = \"a\"\nbackup_dir = \"a/../..\"\n", sides!())
                => "F:3: item \"a\": backup_dir \"a/../..\" leaves the side's root; old versions are moved by a \
                    rename, which cannot leave the side";
            backup_keep_zero: concat!("[[item]]\nname = \"a\"\nbackup_dir = \"v\"\nbackup_keep = 0\n", sides!())
                => "F:4: item \"a\": backup_keep 0 is not a number of runs from 1 (leave it out to keep all)";
            backup_keep_without_backup_dir: concat!("[[item]]\nname = \"a\"\nbackup_keep = 2\n", sides!())
                => "F:3: item \"a\": backup_keep applies only with backup_dir";
            unknown_side_key: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\ndirectroy = \"/t\"\n[item.destination]\ndirectory = \"/d\"\n"
                => "F:5: item \"a\": unknown key source.directroy (known: type, server, username, password, \
                    password_env, tls, tls_verify, directory, ignore, check)";
            max_delete_not_an_integer: concat!("[[item]]\nname = \"a\"\nmax_delete = true\n", sides!())
                => "F:3: item \"a\": max_delete must be an integer (percent) or a string (\"N%\" or \"N\"), not a boolean";
            max_delete_not_a_count: concat!("[[item]]\nname = \"a\"\nmax_delete = \"many\"\n", sides!())
                => "F:3: item \"a\": max_delete \"many\" is neither N% (a share of a side's files) nor a count N of files";
            recursive_not_a_boolean: concat!("[[item]]\nname = \"a\"\nrecursive = \"yes\"\n", sides!())
                => "F:3: item \"a\": recursive must be true or false, not a string";
            side_not_a_table: "[[item]]\nname = \"a\"\nsource = \"/s\"\n[item.destination]\ndirectory = \"/d\"\n"
                => "F:3: item \"a\": source must be a table, not a string";
            ignore_not_an_array: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\nignore = '\\.tmp$'\n[item.destination]\ndirectory = \"/d\"\n"
                => "F:5: item \"a\": source.ignore must be an array of strings, not a string";
            ignore_entry_not_a_string: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\nignore = [\n  'a',\n  1,\n]\n[item.destination]\ndirectory = \"/d\"\n"
                => "F:7: item \"a\": source.ignore must hold strings only, not an integer";
            missing_name: concat!("[[item]]\nname = \"a\"\n", sides!(), "\n[[item]]\nmode = \"clone\"\n", sides!())
                => "F:8: item #2 has no name";
            name_not_a_string: concat!("[[item]]\nname = 5\n", sides!()) => "F:2: item #1: name must be a string, not an integer";
            missing_source: "[[item]]\nname = \"a\"\n[item.destination]\ndirectory = \"/d\"\n"
                => "F:1: item \"a\": no source (add an [item.source] table)";
            missing_destination: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\n"
                => "F:1: item \"a\": no destination (add an [item.destination] table)";
            missing_directory: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\n[item.destination]\ntype = \"directory\"\n"
                => "F:5: item \"a\": destination has no directory";
            duplicate_names: concat!("[[item]]\nname = \"a\"\n", sides!(), "[[item]]\nname = \"a\"\n", sides!())
                => "F:8: item \"a\": the name is already used by the item at line 2";
            name_with_a_space: concat!("[[item]]\nname = \"my backup\"\n", sides!())
                => "F:2: item \"my backup\": name \"my backup\" may hold only letters, digits, '.', '_' and '-'";
            name_dot_dot: concat!("[[item]]\nname = \"..\"\n", sides!()) => "F:2: item \"..\": name \"..\" is not allowed";
            max_delete_above_100: concat!("[[item]]\nname = \"a\"\nmax_delete = 101\n", sides!())
                => "F:3: item \"a\": max_delete 101 is not a percentage from 0 to 100 (a count of files is \"101\")";
            max_delete_negative: concat!("[[item]]\nname = \"a\"\nmax_delete = -1\n", sides!())
                => "F:3: item \"a\": max_delete -1 is not a percentage from 0 to 100";
            unknown_mode: concat!("[[item]]\nname = \"a\"\nmode = \"mirror\"\n", sides!())
                => "F:3: item \"a\": mode \"mirror\" is not one of simple, clone, two-way";
            unknown_conflict_policy: concat!("[[item]]\nname = \"a\"\nconflict = \"oldest\"\n", sides!())
                => "F:3: item \"a\": conflict \"oldest\" is not one of keep-both, newer, source, destination";
            unknown_type: "[[item]]\nname = \"a\"\n[item.source]\ntype = \"sftp\"\ndirectory = \"/s\"\n[item.destination]\ndirectory = \"/d\"\n"
                => "F:4: item \"a\": source.type \"sftp\" is not one of directory, ftp";
            ftp_without_server: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\n[item.destination]\ntype = \"ftp\"\ndirectory = \"/d\"\n"
                => "F:5: item \"a\": destination is an FTP side but has no server";
            both_password_and_password_env: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\n[item.destination]\ntype = \"ftp\"\nserver = \"h\"\npassword = \"hunter2\"\npassword_env = \"PW\"\ndirectory = \"/d\"\n"
                => "F:9: item \"a\": destination sets both password and password_env; keep one (password_env is safer)";
            server_on_a_directory_side: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\nserver = \"h\"\n[item.destination]\ndirectory = \"/d\"\n"
                => "F:5: item \"a\": source.server applies only to type = \"ftp\"";
            invalid_ignore_regex: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\nignore = [\n  'ok',\n  '[a-',\n]\n[item.destination]\ndirectory = \"/d\"\n"
                => "F:7: item \"a\": source.ignore: invalid regex \"[a-\": unclosed character class";
            invalid_check_regex: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\n[item.destination]\ndirectory = \"/d\"\ncheck = \".marker=(\"\n"
                => "F:7: item \"a\": destination.check \".marker=(\": invalid content regex: unclosed group";
            empty_check_path: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"/s\"\ncheck = \"=x\"\n[item.destination]\ndirectory = \"/d\"\n"
                => "F:5: item \"a\": source.check \"=x\": no file path before '='";
            empty_group: concat!("[[item]]\nname = \"a\"\ngroup = \"\"\n", sides!()) => "F:3: item \"a\": group is empty";
            empty_directory: "[[item]]\nname = \"a\"\n[item.source]\ndirectory = \"\"\n[item.destination]\ndirectory = \"/d\"\n"
                => "F:4: item \"a\": source.directory is empty";
        }
    }
}
