//! The command line resolved: the raw flags of [`crate::app::args`] (with the environment and
//! defaults) into plain types, a [`Job`] for `sync`; the one place errors are printed.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;

use crate::app::args::{Args, Command, SyncArgs};
use crate::app::items::RunOptions;
use crate::app::out::outln;
use crate::app::report::{Console, Verbosity};
use crate::app::signals::Interrupt;
use crate::app::{commands, completions, daemon};
use crate::core::check::FileCheck;
use crate::core::error::{Error, Result};
use crate::core::exit::ExitCode;
use crate::core::filter::Filter;
use crate::core::model::Side;
use crate::core::plan::PlanOptions;
use crate::core::versions::Backup;
use crate::endpoint::credentials::Auth;
use crate::endpoint::spec::{without_password, EndpointSpec};
use crate::engine::job::Job;
use crate::engine::sync::sync;

/// The state folder and where it was set: --state-dir, $PAIRSYNC_STATE_DIR, the config file's
/// `state_dir`, then $XDG_STATE_HOME/pairsync or ~/.local/state/pairsync.
pub fn state_dir(flag: Option<PathBuf>, config: Option<&Path>) -> Result<(PathBuf, String)> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = flag {
        return Ok((dir, "--state-dir".into()));
    }
    if let Some(dir) = env("PAIRSYNC_STATE_DIR") {
        return Ok((dir, "PAIRSYNC_STATE_DIR".into()));
    }
    if let Some(path) = config.filter(|p| p.exists()) {
        if let Some(dir) = crate::config::Config::state_dir_of(path).map_err(|e| Error::Usage(e.to_string()))? {
            return Ok((dir, format!("state_dir in {}", path.display())));
        }
    }
    env("XDG_STATE_HOME")
        .map(|d| (d.join("pairsync"), "$XDG_STATE_HOME/pairsync".to_string()))
        .or_else(|| env("HOME").map(|h| (h.join(".local/state/pairsync"), "the default".to_string())))
        .ok_or_else(|| Error::Usage("no state folder: set --state-dir, PAIRSYNC_STATE_DIR or HOME".into()))
}

/// Resolves the flags of `sync` into a validated job.
pub fn job(args: &SyncArgs, state_dir_flag: Option<PathBuf>, config: Option<PathBuf>) -> Result<Job> {
    let f = &args.filter;
    let patterns = f
        .ignore
        .iter()
        .map(|p| ("--ignore", p.as_str()))
        .chain(f.ignore_source.iter().map(|p| ("--ignore-source", p.as_str())))
        .chain(f.ignore_destination.iter().map(|p| ("--ignore-destination", p.as_str())));
    let check = |flag: &str, spec: &Option<String>| spec.as_deref().map(|s| FileCheck::parse(flag, s)).transpose();
    let checks = [check("--check-source", &f.check_source)?, check("--check-destination", &f.check_destination)?];
    let filter = Filter::for_pair(patterns, &checks, !args.no_recursive)?.with_globs(
        f.exclude.iter().map(|g| ("--exclude", g.as_str())),
        f.include.iter().map(|g| ("--include", g.as_str())),
    )?;
    let keep = args.backup_keep.and_then(|keep| keep.0);
    let backup = args.backup_dir.as_deref().map(|dir| Backup::new(dir, keep)).transpose();
    let backup = backup.map_err(|why| Error::Usage(format!("--backup-dir {why}")))?;
    let mut notices = Vec::new();
    let mut auth: [Auth; 2] = std::array::from_fn(|_| Auth { insecure_tls: args.insecure_tls, ..Auth::default() });
    let mut side = |side: Side, given: &str| {
        let (spec, password) = EndpointSpec::parse(given)
            .map_err(|e| Error::Usage(format!("{}: {e}", side.to_string().to_uppercase())))?;
        if let Some(password) = password {
            notices.push(format!(
                "the {side} URL holds a password; it works, but ~/.netrc or an item's password_env keeps it out of \
                 shell history and process lists"
            ));
            auth[side.index()].password = Some(password);
        }
        Ok::<_, Error>(spec)
    };
    let sides = [side(Side::Source, &args.source)?, side(Side::Destination, &args.destination)?];
    Ok(Job {
        sides,
        mode: args.mode,
        options: PlanOptions {
            conflict: args.conflict,
            modify_window_ns: i64::from(args.modify_window) * 1_000_000_000,
            checksum: args.checksum,
            ..PlanOptions::default()
        },
        filter,
        checks,
        max_delete: args.max_delete,
        force: args.force,
        dry_run: args.dry_run,
        state_dir: state_dir(state_dir_flag, config.as_deref())?.0,
        auth,
        connections: usize::from(args.connections),
        scope: None,
        notices,
        backup,
    })
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> std::process::ExitCode {
    // The completion scripts' helper, before clap: clap_complete would list a hidden subcommand.
    if std::env::args_os().nth(1).is_some_and(|arg| arg == completions::HELPER) {
        completions::print_names(std::env::args_os().skip(2));
        return ExitCode::Synced.into();
    }
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            // An rsync habit gets pairsync's equivalent, not clap's "use -- to pass it".
            if let Some(vv) = std::env::args().skip(1).find(|a| a == "-vv" || a == "-vvv") {
                eprintln!("pairsync: {vv}: not a pairsync flag; {}", rsync_hint(&vv).unwrap_or_default());
                return ExitCode::Usage.into();
            }
            if err.kind() == clap::error::ErrorKind::UnknownArgument {
                if let Some(clap::error::ContextValue::String(flag)) = err.get(clap::error::ContextKind::InvalidArg) {
                    if let Some(hint) = rsync_hint(flag) {
                        eprintln!("pairsync: {flag}: not a pairsync flag; {hint}");
                        return ExitCode::Usage.into();
                    }
                }
            }
            let _ = err.print();
            return if err.use_stderr() { ExitCode::Usage.into() } else { ExitCode::Synced.into() };
        }
    };
    run(args)
}

/// What pairsync does for an rsync (or rclone) flag it does not take.
pub fn rsync_hint(flag: &str) -> Option<&'static str> {
    let flag = flag.split('=').next().unwrap_or(flag);
    Some(match flag {
        "-a" | "--archive" => "pairsync always keeps mtimes and permissions and walks folders (no -a needed)",
        "-r" | "--recursive" => "folders are synced whole by default (--no-recursive for the top folder only)",
        "--delete" | "--delete-after" | "--delete-before" | "--delete-during" | "--delete-excluded" | "--mirror" => {
            "use --mode clone for an exact mirror (deletes extras), or two-way (the default) to carry deletes both ways"
        }
        "-P" | "--partial" | "--append" | "--append-verify" => {
            "an interrupted copy of a large file is continued by itself, and a terminal shows progress bars"
        }
        "-z" | "--compress" => "there is no compression: the sides are local folders or FTP servers",
        "-vv" | "-vvv" => "-v prints every action (there is one level of verbosity)",
        "-u" | "--update" => "two-way mode carries the newer edit; --conflict newer settles edits made on both sides",
        "-c" => "use --checksum to compare content by hash",
        "--exclude-from" | "--include-from" | "--filter" | "-f" | "-F" => {
            "give each glob with --exclude GLOB or --include GLOB, or a regex with --ignore RE"
        }
        "-e" | "--rsh" => "pairsync syncs local folders and ftp:// or ftps:// servers, not over ssh",
        "--bwlimit" => "there is no bandwidth limit; --connections N caps parallel FTP transfers",
        "--backup" | "-b" => "use --backup-dir DIR to keep the versions a run replaces or deletes",
        _ => return None,
    })
}

/// Runs the command; `sync` and `run` stopped by SIGINT or SIGTERM exit 128 + the signal.
pub fn run(args: Args) -> std::process::ExitCode {
    crate::app::progress::set_when(crate::app::progress::When::from_flags(args.progress, args.no_progress));
    // `mail -r` ends like the daemon: a signal is the way to stop it, so it exits 0.
    let rolling = matches!(&args.command, Command::Mail(m) if m.rolling);
    let stoppable = matches!(args.command, Command::Sync(_) | Command::Run { .. } | Command::Mail(_));
    let interrupt = match stoppable.then(Interrupt::install) {
        Some(Err(e)) => {
            eprintln!("pairsync: cannot handle signals: {e}");
            return ExitCode::Usage.into();
        }
        Some(Ok(interrupt)) => Some(interrupt),
        None => None,
    };
    let code = run_command(args, interrupt.as_ref().map(Interrupt::flag));
    match interrupt.and_then(|i| i.exit_code()) {
        Some(_) if rolling && code <= ExitCode::Problems => ExitCode::Synced.into(),
        Some(signal) => std::process::ExitCode::from(signal),
        None => code.into(),
    }
}

fn run_command(args: Args, stop: Option<Arc<AtomicBool>>) -> ExitCode {
    let verbosity = match (args.quiet, args.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let quiet = verbosity == Verbosity::Quiet;
    let (config, json) = (args.config, args.json);
    let config_file = commands::config_path(config.clone()).ok();
    let state_from = || state_dir(args.state_dir.clone(), config_file.as_deref());
    let state = || state_from().map(|(dir, _)| dir);
    let done = |result: Result<()>| result.map(|()| ExitCode::Synced);
    let result = match args.command {
        Command::Sync(sync_args) => return run_sync(sync_args, args.state_dir, config_file, verbosity, json, stop),
        Command::List => state_from().and_then(|state| done(commands::list(config, &state, json, quiet))),
        Command::Groups => done(commands::groups(config, quiet)),
        Command::Show { name } => state_from().and_then(|state| done(commands::show(config, &state, &name, quiet))),
        Command::Add(item) => done(commands::add(config, &item.edit(), quiet)),
        Command::Edit(item) => done(commands::edit(config, &item.edit(), quiet)),
        Command::Copy { name, new } => done(commands::copy(config, &name, &new, quiet)),
        Command::Delete { name, purge_state } => {
            state().and_then(|state| done(commands::delete(config, &state, &name, purge_state, quiet)))
        }
        Command::Run { names, group, all, dry_run, force } => state()
            .and_then(|state| {
                let options = RunOptions { json, stop, dry_run, force, ..RunOptions::new(verbosity) };
                commands::run(config, &state, (&names, group.as_deref(), all), &options)
            })
            .inspect_err(|error| {
                // --json: an error before any item ran is the one object too, as for `sync`.
                if json {
                    outln!("{}", serde_json::json!({ "error": error.chain(), "exit_code": error.exit_code().code() }));
                }
            }),
        Command::Logs { name, follow, lines } => {
            state().and_then(|state| done(commands::logs(config, &state, &name, lines, follow)))
        }
        Command::Daemon { timing } => {
            state().and_then(|state| daemon::run(config, &state, verbosity, &timing.settings()))
        }
        Command::Watch { names, all, timing } => {
            state().and_then(|state| daemon::watch(config, &state, (&names, all), verbosity, &timing.settings()))
        }
        Command::Mail(mail_args) => {
            state().and_then(|state| crate::app::mail::run(config, &state, mail_args, verbosity, json, stop))
        }
        Command::Console => state().and_then(|state| crate::app::console::run(config, &state)),
        Command::Completions { shell } => {
            crate::app::out::bytes(&completions::script(shell));
            Ok(ExitCode::Synced)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pairsync: {}", error.chain());
            error.exit_code()
        }
    }
}

fn run_sync(
    sync_args: SyncArgs,
    state_dir_flag: Option<PathBuf>,
    config_file: Option<PathBuf>,
    verbosity: Verbosity,
    json: bool,
    stop: Option<Arc<AtomicBool>>,
) -> ExitCode {
    let console = match Console::new(verbosity, json, sync_args.dry_run, sync_args.log.as_deref()) {
        Ok(console) => match stop {
            Some(stop) => console.with_stop(stop),
            None => console,
        },
        Err(e) => {
            let log = sync_args.log.unwrap_or_default();
            eprintln!("pairsync: --log {}: {e}", log.display());
            return ExitCode::Usage;
        }
    };
    // As URLs without a password: the log must never hold one.
    let shown = |given: &str| match EndpointSpec::parse(given) {
        Ok((spec, _)) => spec.url(),
        Err(_) => without_password(given),
    };
    console.started(&shown(&sync_args.source), &shown(&sync_args.destination));
    match job(&sync_args, state_dir_flag, config_file).and_then(|job| sync(&job, &console)) {
        Ok(summary) => {
            console.finished(&summary);
            summary.exit()
        }
        Err(error) => {
            console.stopped(&error);
            error.exit_code()
        }
    }
}
