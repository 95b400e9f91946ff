//! Changing an item: the fields an `add` or `edit` gives ([`ItemEdit`], plain values whoever
//! collected them: flags, or later a form) applied to an item, with the checks a sync would make.

use std::path::{Path, PathBuf};

use crate::config::job::job;
use crate::config::{EndpointKind, Item, SideConfig};
use crate::core::error::{Error, Result};
use crate::core::plan::{ConflictPolicy, Mode};
use crate::core::schedule::Schedule;
use crate::endpoint::spec::EndpointSpec;

/// The fields to set on an item; `None` (or an empty list) leaves a field as it is, and `""`
/// removes a check, a group, a schedule or a description.
#[derive(Debug, Clone, Default)]
pub struct ItemEdit {
    pub name: String,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub mode: Option<Mode>,
    pub recursive: Option<bool>,
    /// An ignore list given replaces the side's (both sides' for `ignore`).
    pub ignore: Vec<String>,
    pub ignore_source: Vec<String>,
    pub ignore_destination: Vec<String>,
    /// Globs; a list given replaces the item's.
    pub exclude: Vec<String>,
    pub include: Vec<String>,
    pub check_source: Option<String>,
    pub check_destination: Option<String>,
    pub conflict: Option<ConflictPolicy>,
    pub max_delete: Option<crate::core::safety::MaxDelete>,
    pub group: Option<String>,
    pub schedule: Option<String>,
    pub description: Option<String>,
    pub log: Option<PathBuf>,
    pub watch: Option<bool>,
    pub connections: Option<u16>,
    /// `""` stops keeping versions (and forgets `backup_keep`).
    pub backup_dir: Option<String>,
    /// `Keep(None)`: every run folder (removes `backup_keep`).
    pub backup_keep: Option<crate::core::versions::Keep>,
    /// Verify the FTPS sides' certificates (`false` only touches sides that use TLS).
    pub tls_verify: Option<bool>,
    pub source_password_env: Option<String>,
    pub destination_password_env: Option<String>,
}

/// A side from `--source`/`--destination`, read by the one parser of sides (so that an item
/// holds only what `sync` would take): a local folder, made absolute so that cron and the daemon
/// find it from any working folder, or an FTP side as the item's fields.
pub fn side_from(flag: &str, given: &str) -> Result<SideConfig> {
    let (spec, password) = EndpointSpec::parse(given).map_err(|e| Error::Usage(format!("{flag}: {e}")))?;
    if password.is_some() {
        // Never store (or echo) a password given on the command line.
        return Err(Error::Usage(format!(
            "{flag}: a password in the URL is not stored; use --{}-password-env VAR or ~/.netrc",
            flag.trim_start_matches("--")
        )));
    }
    Ok(match spec {
        EndpointSpec::Local(path) => SideConfig::directory(path.display().to_string()),
        EndpointSpec::Ftp(url) => SideConfig {
            kind: EndpointKind::Ftp,
            server: Some(if url.port == 21 { url.host.clone() } else { format!("{}:{}", url.host, url.port) }),
            username: url.user,
            tls: url.tls,
            directory: if url.dir.is_empty() { "/".to_string() } else { url.dir },
            ..SideConfig::directory("")
        },
    })
}

/// Sets the fields of `edit` on `item`, then checks the item as a sync would.
pub fn apply(item: &mut Item, edit: &ItemEdit) -> Result<()> {
    // A new --source/--destination changes where the side is, not its filters, nor (for an FTP
    // side that stays FTP) where its password comes from.
    let keep_side_fields = |old: &SideConfig, mut new: SideConfig| {
        new.ignore = old.ignore.clone();
        new.check = old.check.clone();
        if new.kind == EndpointKind::Ftp && old.kind == EndpointKind::Ftp {
            new.password = old.password.clone();
            new.password_env = old.password_env.clone();
            new.tls_verify = old.tls_verify || !new.tls;
        }
        new
    };
    if let Some(s) = &edit.source {
        item.source = keep_side_fields(&item.source, side_from("--source", s)?);
    }
    if let Some(d) = &edit.destination {
        item.destination = keep_side_fields(&item.destination, side_from("--destination", d)?);
    }
    if let Some(mode) = edit.mode {
        item.mode = mode;
    }
    if let Some(recursive) = edit.recursive {
        item.recursive = recursive;
    }
    let f = edit;
    if !f.ignore.is_empty() || !f.ignore_source.is_empty() {
        item.source.ignore = f.ignore.iter().chain(&f.ignore_source).cloned().collect();
    }
    if !f.exclude.is_empty() {
        item.exclude = f.exclude.clone();
    }
    if !f.include.is_empty() {
        item.include = f.include.clone();
    }
    if !f.ignore.is_empty() || !f.ignore_destination.is_empty() {
        item.destination.ignore = f.ignore.iter().chain(&f.ignore_destination).cloned().collect();
    }
    // "" removes a check.
    let optional = |value: &Option<String>| value.as_ref().map(|v| Some(v.clone()).filter(|v| !v.is_empty()));
    if let Some(check) = optional(&f.check_source) {
        item.source.check = check;
    }
    if let Some(check) = optional(&f.check_destination) {
        item.destination.check = check;
    }
    if let Some(conflict) = edit.conflict {
        item.conflict = conflict;
    }
    if let Some(pct) = edit.max_delete {
        item.max_delete = pct;
    }
    if let Some(group) = optional(&edit.group) {
        item.group = group;
    }
    if let Some(schedule) = optional(&edit.schedule) {
        if let Some(spec) = &schedule {
            spec.parse::<Schedule>().map_err(|e| Error::Usage(format!("--schedule: {e}")))?;
        }
        item.schedule = schedule;
    }
    if let Some(description) = optional(&edit.description) {
        item.description = description;
    }
    if let Some(log) = &edit.log {
        item.log = Some(std::path::absolute(log).map_err(|e| Error::Usage(format!("--log: {e}")))?);
    }
    if let Some(watch) = edit.watch {
        item.watch = watch;
    }
    if let Some(n) = edit.connections {
        item.connections = Some(n);
    }
    if let Some(dir) = optional(&edit.backup_dir) {
        // Without a backup dir, a number of runs to keep means nothing.
        if dir.is_none() {
            item.backup_keep = None;
        }
        item.backup_dir = dir;
    }
    if let Some(keep) = edit.backup_keep {
        item.backup_keep = keep.0;
    }
    for side in [&mut item.source, &mut item.destination] {
        match edit.tls_verify {
            Some(false) if side.tls => side.tls_verify = false,
            Some(true) => side.tls_verify = true,
            _ => {}
        }
    }
    if let Some(var) = &edit.source_password_env {
        item.source.password_env = Some(var.clone());
    }
    if let Some(var) = &edit.destination_password_env {
        item.destination.password_env = Some(var.clone());
    }
    // The same checks as a sync would make, now rather than at 2 a.m.
    job(item, Path::new("/")).map(|_| ())
}
