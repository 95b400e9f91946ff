//! The item commands (the seed's Items, Groups, Add, Edit, Copy, Delete, Logs and Sync Now):
//! each loads the config file, does its one thing, and returns an exit code.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::app::items::{self, RunOptions};
use crate::app::out::outln;
use crate::config::edit::{apply, side_from, ItemEdit};
use crate::config::job::{job, shown};
use crate::config::{self, Config, EndpointKind, Item};
use crate::core::error::{Error, Result};
use crate::core::exit::ExitCode;
use crate::core::schedule::Schedule;
use crate::engine::job::pair_of;

/// The config file: `-C`, then $PAIRSYNC_CONFIG, then $XDG_CONFIG_HOME/pairsync/pairsync.toml.
pub fn config_path(flag: Option<PathBuf>) -> Result<PathBuf> {
    flag.or_else(config::default_path)
        .ok_or_else(|| Error::Usage("no config file: give -C FILE or set PAIRSYNC_CONFIG".into()))
}

/// Loads and validates the config (schedules included); prints its warnings unless quiet.
pub fn load(flag: Option<PathBuf>, quiet: bool) -> Result<Config> {
    let path = config_path(flag)?;
    if !path.exists() {
        return Err(missing(&path));
    }
    load_or_new(&path, quiet)
}

/// Only `add` creates the file: any other command on a missing one would do nothing and say
/// all is well (a typo in -C, a unit pointing at the wrong place).
fn missing(path: &Path) -> Error {
    Error::Usage(format!(
        "{}: no such config file (pairsync add NAME --source S --destination D creates it)",
        path.display()
    ))
}

/// Loads the config file, an absent one being empty: for `add`, which creates it.
fn load_or_new(path: &Path, quiet: bool) -> Result<Config> {
    let config = Config::load(path).map_err(items::config_error)?;
    config
        .validate_with(|spec| spec.parse::<Schedule>().map(|_| ()).map_err(|e| e.reason))
        .map_err(items::config_error)?;
    if !quiet {
        for warning in config.warnings() {
            eprintln!("pairsync: warning: {warning}");
        }
    }
    Ok(config)
}

/// Loads the config, lets `change` edit it, and saves it, holding `<config>.lock` meanwhile:
/// two edits at once (two `add`s from a script) must never lose one of them.
pub(crate) fn edit_config<T>(
    flag: Option<PathBuf>,
    quiet: bool,
    create: bool,
    change: impl FnOnce(&mut Config) -> Result<T>,
) -> Result<T> {
    let path = config_path(flag)?;
    if !create && !path.exists() {
        return Err(missing(&path));
    }
    let lock_path = {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    };
    let lock_error = |e: std::io::Error| Error::Usage(format!("{}: {e}", lock_path.display()));
    if let Some(parent) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(lock_error)?;
    }
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(lock_error)?;
    lock.lock().map_err(lock_error)?;
    let mut config = load_or_new(&path, quiet)?;
    let out = change(&mut config)?;
    config.save().map_err(items::config_error)?;
    Ok(out)
}

pub fn add(config_flag: Option<PathBuf>, edit: &ItemEdit, quiet: bool) -> Result<()> {
    let (Some(source), Some(destination)) = (&edit.source, &edit.destination) else {
        return Err(Error::Usage(format!("add {}: --source and --destination are required", edit.name)));
    };
    let mut item = Item::new(&edit.name, side_from("--source", source)?, side_from("--destination", destination)?);
    apply(&mut item, edit)?;
    let created = config_path(config_flag.clone()).map(|path| !path.exists())?;
    let path = edit_config(config_flag, quiet, true, |config| {
        config.add(&item).map_err(items::config_error)?;
        Ok(config.path().to_path_buf())
    })?;
    if !quiet {
        let made = if created { " (file created)" } else { "" };
        outln!(
            "added {}: {} {} -> {} in {}{made}",
            item.name,
            item.mode,
            shown(&item.source),
            shown(&item.destination),
            path.display()
        );
    }
    Ok(())
}

pub fn edit(config_flag: Option<PathBuf>, edit: &ItemEdit, quiet: bool) -> Result<()> {
    edit_config(config_flag, quiet, false, |config| {
        let mut item = config.item(&edit.name).map_err(items::config_error)?;
        apply(&mut item, edit)?;
        config.replace(&edit.name, &item).map_err(items::config_error)
    })
}

pub fn copy(config_flag: Option<PathBuf>, name: &str, new: &str, quiet: bool) -> Result<()> {
    edit_config(config_flag, quiet, false, |config| config.copy(name, new).map_err(items::config_error))
}

pub fn delete(
    config_flag: Option<PathBuf>,
    state_dir: &Path,
    name: &str,
    purge_state: bool,
    quiet: bool,
) -> Result<()> {
    let said = delete_item(config_flag, state_dir, name, purge_state, quiet)?;
    if !quiet {
        outln!("{said}");
    }
    Ok(())
}

/// Deletes the item (and with `purge_state` its state) and says what was done.
pub(crate) fn delete_item(
    config_flag: Option<PathBuf>,
    state_dir: &Path,
    name: &str,
    purge_state: bool,
    quiet: bool,
) -> Result<String> {
    edit_config(config_flag, quiet, false, |config| {
        let item = config.item(name).map_err(items::config_error)?;
        // With --purge-state, the pair's lock first: if a run is going on, nothing changes (exit 5).
        let pair = if purge_state {
            let job = job(&item, state_dir)?;
            let id =
                pair_of(state_dir, job.mode, &job.sides).map_err(|e| Error::Usage(format!("item {name:?}: {e}")))?;
            let lock = crate::state::PairLock::acquire(state_dir, &id)?;
            Some((id, lock))
        } else {
            None
        };
        config.delete(name).map_err(items::config_error)?;
        if let Some((id, _lock)) = pair {
            items::forget_last_run(state_dir, name);
            // Another item of the same pair (the same two folders, in either order for
            // two-way) still needs the state: only the last-run record goes.
            let users: Vec<String> = config
                .items()
                .map_err(items::config_error)?
                .into_iter()
                .filter(|other| {
                    job(other, state_dir)
                        .ok()
                        .and_then(|j| pair_of(state_dir, j.mode, &j.sides).ok())
                        .is_some_and(|other_id| other_id == id)
                })
                .map(|other| other.name)
                .collect();
            if !users.is_empty() {
                return Ok(format!("deleted {name}; its pair's state is kept: item {} uses it", users.join(", ")));
            }
            let database = state_dir.join("pairs").join(&id);
            let existed = database.exists();
            match std::fs::remove_dir_all(&database) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::State { path: database, message: e.to_string() });
                }
                _ => {}
            }
            let what = if existed {
                format!("purged its state {} and its last-run record", database.display())
            } else {
                "it had no state; its last-run record is purged".into()
            };
            Ok(format!("deleted {name}; {what}"))
        } else {
            Ok(format!("deleted {name}; its state is kept (--purge-state removes it)"))
        }
    })
}

fn fmt_time(t: &chrono::DateTime<chrono::Local>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

/// The time of the next run of an item, if it has a schedule.
pub fn next_run(item: &Item, now: &chrono::DateTime<chrono::Local>) -> Option<chrono::DateTime<chrono::Local>> {
    let schedule: Schedule = item.schedule.as_deref()?.parse().ok()?;
    Some(schedule.next_after(now))
}

fn last_run_cell(state_dir: &Path, name: &str) -> String {
    match items::last_run(state_dir, name) {
        None => "never".into(),
        Some(run) => {
            let when = chrono::DateTime::parse_from_rfc3339(&run.started)
                .map(|t| fmt_time(&t.with_timezone(&chrono::Local)))
                .unwrap_or(run.started);
            format!("{when} {}", outcome(run.exit_code))
        }
    }
}

/// How a run ended, in a word or two and its exit code: "ok", "problems (1)".
pub(crate) fn outcome(exit_code: u8) -> String {
    match exit_code {
        0 => "ok".to_string(),
        1 => "problems (1)".to_string(),
        3 => "check failed (3)".to_string(),
        4 => "safety stop (4)".to_string(),
        5 => "busy (5)".to_string(),
        code => format!("failed ({code})"),
    }
}

/// The Items table.
/// `state` is the state folder and what set it (the flag, the environment, the config file).
pub fn list(config_flag: Option<PathBuf>, state: &(PathBuf, String), json: bool, quiet: bool) -> Result<()> {
    let state_dir = state.0.as_path();
    let config = load(config_flag, quiet)?;
    let items = config.items().map_err(items::config_error)?;
    let now = chrono::Local::now();
    if json {
        let rows: Vec<_> = items
            .iter()
            .map(|item| {
                serde_json::json!({
                    "name": item.name,
                    "group": item.group,
                    "mode": item.mode,
                    "source": shown(&item.source),
                    "destination": shown(&item.destination),
                    "schedule": item.schedule,
                    "last_run": items::last_run(state_dir, &item.name),
                    "next_run": next_run(item, &now).map(|t| t.to_rfc3339()),
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    let header = ["NAME", "GROUP", "MODE", "SOURCE -> DESTINATION", "SCHEDULE", "LAST RUN", "NEXT RUN"];
    let rows: Vec<[String; 7]> = items
        .iter()
        .map(|item| {
            [
                item.name.clone(),
                item.group.clone().unwrap_or_else(|| "-".into()),
                serde_json::to_value(item.mode).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                format!("{} -> {}", shown(&item.source), shown(&item.destination)),
                item.schedule.clone().unwrap_or_else(|| "-".into()),
                last_run_cell(state_dir, &item.name),
                next_run(item, &now).map(|t| fmt_time(&t)).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    outln!("{}", line(&header.map(String::from)));
    for row in &rows {
        outln!("{}", line(row));
    }
    if !quiet {
        outln!("state: {} (from {})", state.0.display(), state.1);
    }
    Ok(())
}

pub fn groups(config_flag: Option<PathBuf>, quiet: bool) -> Result<()> {
    let config = load(config_flag, quiet)?;
    let items = config.items().map_err(items::config_error)?;
    for (group, names) in config.groups().map_err(items::config_error)? {
        outln!("{group}: {}", names.join(", "));
    }
    let loose: Vec<&str> = items.iter().filter(|i| i.group.is_none()).map(|i| i.name.as_str()).collect();
    if !loose.is_empty() {
        outln!("(no group): {}", loose.join(", "));
    }
    Ok(())
}

/// Every field of an item; a password shows as `(set)`, never its value.
pub fn show(config_flag: Option<PathBuf>, state: &(PathBuf, String), name: &str, quiet: bool) -> Result<()> {
    let state_dir = state.0.as_path();
    let config = load(config_flag, quiet)?;
    let item = config.item(name).map_err(items::config_error)?;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mode = serde_json::to_value(item.mode).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let conflict = serde_json::to_value(item.conflict).ok().and_then(|v| v.as_str().map(str::to_string));
    outln!("name:         {}", item.name);
    outln!("description:  {}", opt(&item.description));
    outln!("group:        {}", opt(&item.group));
    outln!("mode:         {mode}");
    outln!("recursive:    {}", item.recursive);
    outln!("conflict:     {}", conflict.unwrap_or_default());
    outln!("max_delete:   {}", item.max_delete);
    outln!("schedule:     {}", opt(&item.schedule));
    outln!("watch:        {}", item.watch);
    let globs = |list: &[String]| if list.is_empty() { "-".to_string() } else { list.join(" ") };
    outln!("exclude:      {}", globs(&item.exclude));
    outln!("include:      {}", globs(&item.include));
    outln!("state dir:    {} (from {})", state.0.display(), state.1);
    if [&item.source, &item.destination].iter().any(|side| side.kind == EndpointKind::Ftp) {
        let connections = item.connections.map_or("4 (default)".to_string(), |n| n.to_string());
        outln!("connections:  {connections}");
    }
    if let Some(dir) = &item.backup_dir {
        let keep = item.backup_keep.map_or("every run".to_string(), |n| format!("the newest {n} runs"));
        outln!("backup_dir:   {dir} (in each side's root; keeps {keep})");
    }
    outln!("log:          {}", items::log_path(&item, state_dir).display());
    for (label, side) in [("source", &item.source), ("destination", &item.destination)] {
        outln!("{label}:");
        outln!("  endpoint:   {}", shown(side));
        if side.kind == EndpointKind::Ftp {
            let password = match (&side.password, &side.password_env) {
                (Some(_), _) => "(set in the config file)".to_string(),
                (None, Some(var)) => format!("from ${var}"),
                (None, None) => "from ~/.netrc".to_string(),
            };
            outln!("  password:   {password}");
            if side.tls {
                let verify = if side.tls_verify { "verified" } else { "NOT verified (tls_verify = false)" };
                outln!("  certificate: {verify}");
            }
        }
        outln!("  ignore:     {}", if side.ignore.is_empty() { "-".into() } else { side.ignore.join("  ") });
        outln!("  check:      {}", opt(&side.check));
    }
    outln!("last run:     {}", last_run_cell(state_dir, &item.name));
    let next = next_run(&item, &chrono::Local::now()).map(|t| fmt_time(&t)).unwrap_or_else(|| "-".into());
    outln!("next run:     {next}");
    Ok(())
}

/// The items named, or of a group, or all; unknown names are an error before anything runs.
pub fn select(config: &Config, names: &[String], group: Option<&str>, all: bool) -> Result<Vec<Item>> {
    let items = config.items().map_err(items::config_error)?;
    if all {
        if items.is_empty() {
            return Err(Error::Usage(format!("no items in {}", config.path().display())));
        }
        return Ok(items);
    }
    if let Some(group) = group {
        let chosen: Vec<Item> = items.into_iter().filter(|i| i.group.as_deref() == Some(group)).collect();
        if chosen.is_empty() {
            return Err(Error::Usage(format!("no item is in group {group:?}")));
        }
        return Ok(chosen);
    }
    if names.is_empty() {
        return Err(Error::Usage("run: name items, or give --group G or --all".into()));
    }
    names.iter().map(|name| config.item(name).map_err(items::config_error)).collect()
}

/// Sync Now: runs the items one after another; the exit code is the worst.
pub fn run(
    config_flag: Option<PathBuf>,
    state_dir: &Path,
    selection: (&[String], Option<&str>, bool),
    options: &RunOptions,
) -> Result<ExitCode> {
    let quiet = options.verbosity == crate::app::report::Verbosity::Quiet;
    let config = load(config_flag, quiet)?;
    let chosen = select(&config, selection.0, selection.1, selection.2)?;
    let several = chosen.len() > 1;
    // --json prints one object: for several items, {"items": [summary + "item", ...], "exit_code"}.
    let sink = (options.json && several).then(crate::app::report::JsonSink::default);
    let options = RunOptions { prefixed: several, json_sink: sink.clone(), ..options.clone() };
    // After a stop (SIGINT, SIGTERM) the items not started yet are not started.
    let stopped = || options.stop.as_ref().is_some_and(|stop| stop.load(std::sync::atomic::Ordering::SeqCst));
    let exit = chosen
        .iter()
        .take_while(|_| !stopped())
        .map(|item| items::run(item, state_dir, &options))
        .fold(ExitCode::Synced, ExitCode::merge);
    if let Some(sink) = sink {
        let items = std::mem::take(&mut *sink.lock().unwrap());
        outln!("{}", serde_json::json!({ "items": items, "exit_code": exit.code() }));
    }
    Ok(exit)
}

/// Prints the last `lines` lines of an item's log, then (with `follow`) what is appended,
/// across rotations, until interrupted.
pub fn logs(config_flag: Option<PathBuf>, state_dir: &Path, name: &str, lines: usize, follow: bool) -> Result<()> {
    let config = load(config_flag, true)?;
    let item = config.item(name).map_err(items::config_error)?;
    let path = items::log_path(&item, state_dir);
    let io_error = |e: std::io::Error| Error::Usage(format!("log {}: {e}", path.display()));
    let text = match std::fs::read(&path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && follow => String::new(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Usage(format!("item {name:?} has no log yet ({})", path.display())))
        }
        Err(e) => return Err(io_error(e)),
    };
    let all: Vec<&str> = text.lines().collect();
    let mut out = std::io::stdout().lock();
    for line in &all[all.len().saturating_sub(lines)..] {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
    if !follow {
        return Ok(());
    }
    let mut offset = text.len() as u64;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let Ok(mut file) = std::fs::File::open(&path) else { continue };
        let len = file.metadata().map_err(io_error)?.len();
        if len < offset {
            offset = 0; // rotated or truncated: start over in the new file
        }
        if len > offset {
            file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
            let mut more = Vec::new();
            file.read_to_end(&mut more).map_err(io_error)?;
            offset += more.len() as u64;
            let _ = out.write_all(&more);
            let _ = out.flush();
        }
    }
}
