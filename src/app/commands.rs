//! The item commands (the seed's Items, Groups, Add, Edit, Copy, Delete, Logs and Sync Now):
//! each loads the config file, does its one thing, and returns an exit code.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::app::cli::ItemArgs;
use crate::app::items::{self, RunOptions};
use crate::config::{self, Config, EndpointKind, Item, SideConfig};
use crate::core::error::{Error, Result};
use crate::core::exit::ExitCode;
use crate::core::schedule::Schedule;

/// The config file: `-C`, then $PAIRSYNC_CONFIG, then $XDG_CONFIG_HOME/pairsync/pairsync.toml.
pub fn config_path(flag: Option<PathBuf>) -> Result<PathBuf> {
    flag.or_else(config::default_path)
        .ok_or_else(|| Error::Usage("no config file: give -C FILE or set PAIRSYNC_CONFIG".into()))
}

/// Loads and validates the config (schedules included); prints its warnings unless quiet.
pub fn load(flag: Option<PathBuf>, quiet: bool) -> Result<Config> {
    let config = Config::load(&config_path(flag)?).map_err(items::config_error)?;
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

/// A side from `--source`/`--destination`: an `ftp://` or `ftps://` URL, or a local folder
/// (made absolute, so that cron and the daemon find it from any working folder).
pub fn side_from(flag: &str, given: &str) -> Result<SideConfig> {
    let url = given
        .strip_prefix("ftp://")
        .map(|rest| (false, rest))
        .or_else(|| given.strip_prefix("ftps://").map(|rest| (true, rest)));
    let Some((tls, rest)) = url else {
        if given.is_empty() {
            return Err(Error::Usage(format!("{flag}: empty path")));
        }
        let path = std::path::absolute(given).map_err(|e| Error::Usage(format!("{flag} {given}: {e}")))?;
        return Ok(SideConfig::directory(path.display().to_string()));
    };
    let (authority, dir) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, server) = match authority.rsplit_once('@') {
        Some((user, server)) => (Some(user), server),
        None => (None, authority),
    };
    if user.is_some_and(|u| u.contains(':')) {
        // Never store (or echo) a password given on the command line.
        return Err(Error::Usage(format!(
            "{flag}: a password in the URL is not stored; use --{}-password-env VAR or ~/.netrc",
            flag.trim_start_matches("--")
        )));
    }
    if server.is_empty() {
        return Err(Error::Usage(format!("{flag} {given}: no server in the URL")));
    }
    Ok(SideConfig {
        kind: EndpointKind::Ftp,
        server: Some(server.to_string()),
        username: user.map(str::to_string),
        tls,
        directory: format!("/{dir}"),
        ..SideConfig::directory("")
    })
}

/// Sets the fields given as flags on `item`.
fn apply(item: &mut Item, args: &ItemArgs) -> Result<()> {
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
    if let Some(s) = &args.source {
        item.source = keep_side_fields(&item.source, side_from("--source", s)?);
    }
    if let Some(d) = &args.destination {
        item.destination = keep_side_fields(&item.destination, side_from("--destination", d)?);
    }
    if let Some(mode) = args.mode {
        item.mode = mode;
    }
    if args.no_recursive {
        item.recursive = false;
    }
    if args.recursive {
        item.recursive = true;
    }
    let f = &args.filter;
    if !f.ignore.is_empty() || !f.ignore_source.is_empty() {
        item.source.ignore = f.ignore.iter().chain(&f.ignore_source).cloned().collect();
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
    if let Some(conflict) = args.conflict {
        item.conflict = conflict;
    }
    if let Some(pct) = args.max_delete {
        item.max_delete = pct;
    }
    if let Some(group) = optional(&args.group) {
        item.group = group;
    }
    if let Some(schedule) = optional(&args.schedule) {
        if let Some(spec) = &schedule {
            spec.parse::<Schedule>().map_err(|e| Error::Usage(format!("--schedule: {e}")))?;
        }
        item.schedule = schedule;
    }
    if let Some(description) = optional(&args.description) {
        item.description = description;
    }
    if let Some(log) = &args.log {
        item.log = Some(std::path::absolute(log).map_err(|e| Error::Usage(format!("--log: {e}")))?);
    }
    if args.watch {
        item.watch = true;
    }
    if args.no_watch {
        item.watch = false;
    }
    if let Some(n) = args.connections {
        item.connections = Some(n);
    }
    for side in [&mut item.source, &mut item.destination] {
        if args.insecure_tls && side.tls {
            side.tls_verify = false;
        }
        if args.secure_tls {
            side.tls_verify = true;
        }
    }
    if let Some(var) = &args.source_password_env {
        item.source.password_env = Some(var.clone());
    }
    if let Some(var) = &args.destination_password_env {
        item.destination.password_env = Some(var.clone());
    }
    // The same checks as a sync would make, now rather than at 2 a.m.
    items::job(item, Path::new("/")).map(|_| ())
}

/// Loads the config, lets `change` edit it, and saves it, holding `<config>.lock` meanwhile:
/// two edits at once (two `add`s from a script) must never lose one of them.
fn edit_config<T>(flag: Option<PathBuf>, quiet: bool, change: impl FnOnce(&mut Config) -> Result<T>) -> Result<T> {
    let path = config_path(flag)?;
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
    let mut config = load(Some(path), quiet)?;
    let out = change(&mut config)?;
    config.save().map_err(items::config_error)?;
    Ok(out)
}

pub fn add(config_flag: Option<PathBuf>, args: &ItemArgs, quiet: bool) -> Result<()> {
    let (Some(source), Some(destination)) = (&args.source, &args.destination) else {
        return Err(Error::Usage(format!("add {}: --source and --destination are required", args.name)));
    };
    let mut item = Item::new(&args.name, side_from("--source", source)?, side_from("--destination", destination)?);
    apply(&mut item, args)?;
    edit_config(config_flag, quiet, |config| config.add(&item).map_err(items::config_error))
}

pub fn edit(config_flag: Option<PathBuf>, args: &ItemArgs, quiet: bool) -> Result<()> {
    edit_config(config_flag, quiet, |config| {
        let mut item = config.item(&args.name).map_err(items::config_error)?;
        apply(&mut item, args)?;
        config.replace(&args.name, &item).map_err(items::config_error)
    })
}

pub fn copy(config_flag: Option<PathBuf>, name: &str, new: &str, quiet: bool) -> Result<()> {
    edit_config(config_flag, quiet, |config| config.copy(name, new).map_err(items::config_error))
}

pub fn delete(
    config_flag: Option<PathBuf>,
    state_dir: &Path,
    name: &str,
    purge_state: bool,
    quiet: bool,
) -> Result<()> {
    edit_config(config_flag, quiet, |config| {
        let item = config.item(name).map_err(items::config_error)?;
        // With --purge-state, the pair's lock first: if a run is going on, nothing changes (exit 5).
        let pair = if purge_state {
            let job = items::job(&item, state_dir)?;
            let id = crate::engine::sync::pair_of(&job.source, &job.destination)?;
            let lock = crate::state::PairLock::acquire(state_dir, &id)?;
            Some((id, lock))
        } else {
            None
        };
        config.delete(name).map_err(items::config_error)?;
        if let Some((id, _lock)) = pair {
            items::forget_last_run(state_dir, name);
            let database = state_dir.join("pairs").join(&id);
            match std::fs::remove_dir_all(&database) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::State { path: database, message: e.to_string() });
                }
                _ => {}
            }
        }
        Ok(())
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
            let result = match run.exit_code {
                0 => "ok".to_string(),
                1 => "problems (1)".to_string(),
                3 => "check failed (3)".to_string(),
                4 => "safety stop (4)".to_string(),
                5 => "busy (5)".to_string(),
                code => format!("failed ({code})"),
            };
            format!("{when} {result}")
        }
    }
}

/// The Items table.
pub fn list(config_flag: Option<PathBuf>, state_dir: &Path, json: bool, quiet: bool) -> Result<()> {
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
                    "source": items::endpoint(&item.source),
                    "destination": items::endpoint(&item.destination),
                    "schedule": item.schedule,
                    "last_run": items::last_run(state_dir, &item.name),
                    "next_run": next_run(item, &now).map(|t| t.to_rfc3339()),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
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
                format!("{} -> {}", items::endpoint(&item.source), items::endpoint(&item.destination)),
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
    println!("{}", line(&header.map(String::from)));
    for row in &rows {
        println!("{}", line(row));
    }
    Ok(())
}

pub fn groups(config_flag: Option<PathBuf>, quiet: bool) -> Result<()> {
    let config = load(config_flag, quiet)?;
    let items = config.items().map_err(items::config_error)?;
    for (group, names) in config.groups().map_err(items::config_error)? {
        println!("{group}: {}", names.join(", "));
    }
    let loose: Vec<&str> = items.iter().filter(|i| i.group.is_none()).map(|i| i.name.as_str()).collect();
    if !loose.is_empty() {
        println!("(no group): {}", loose.join(", "));
    }
    Ok(())
}

/// Every field of an item; a password shows as `(set)`, never its value.
pub fn show(config_flag: Option<PathBuf>, state_dir: &Path, name: &str, quiet: bool) -> Result<()> {
    let config = load(config_flag, quiet)?;
    let item = config.item(name).map_err(items::config_error)?;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mode = serde_json::to_value(item.mode).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let conflict = serde_json::to_value(item.conflict).ok().and_then(|v| v.as_str().map(str::to_string));
    println!("name:         {}", item.name);
    println!("description:  {}", opt(&item.description));
    println!("group:        {}", opt(&item.group));
    println!("mode:         {mode}");
    println!("recursive:    {}", item.recursive);
    println!("conflict:     {}", conflict.unwrap_or_default());
    println!("max_delete:   {}%", item.max_delete);
    println!("schedule:     {}", opt(&item.schedule));
    println!("watch:        {}", item.watch);
    if [&item.source, &item.destination].iter().any(|side| side.kind == EndpointKind::Ftp) {
        let connections = item.connections.map_or("4 (default)".to_string(), |n| n.to_string());
        println!("connections:  {connections}");
    }
    println!("log:          {}", items::log_path(&item, state_dir).display());
    for (label, side) in [("source", &item.source), ("destination", &item.destination)] {
        println!("{label}:");
        println!("  endpoint:   {}", items::endpoint(side));
        if side.kind == EndpointKind::Ftp {
            let password = match (&side.password, &side.password_env) {
                (Some(_), _) => "(set in the config file)".to_string(),
                (None, Some(var)) => format!("from ${var}"),
                (None, None) => "from ~/.netrc".to_string(),
            };
            println!("  password:   {password}");
            if side.tls {
                let verify = if side.tls_verify { "verified" } else { "NOT verified (tls_verify = false)" };
                println!("  certificate: {verify}");
            }
        }
        println!("  ignore:     {}", if side.ignore.is_empty() { "-".into() } else { side.ignore.join("  ") });
        println!("  check:      {}", opt(&side.check));
    }
    println!("last run:     {}", last_run_cell(state_dir, &item.name));
    let next = next_run(&item, &chrono::Local::now()).map(|t| fmt_time(&t)).unwrap_or_else(|| "-".into());
    println!("next run:     {next}");
    Ok(())
}

/// The items named, or of a group, or all; unknown names are an error before anything runs.
pub fn select(config: &Config, names: &[String], group: Option<&str>, all: bool) -> Result<Vec<Item>> {
    let items = config.items().map_err(items::config_error)?;
    if all {
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
    let exit = chosen.iter().map(|item| items::run(item, state_dir, &options)).fold(ExitCode::Synced, ExitCode::merge);
    if let Some(sink) = sink {
        let items = std::mem::take(&mut *sink.lock().unwrap());
        println!("{}", serde_json::json!({ "items": items, "exit_code": exit.code() }));
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
