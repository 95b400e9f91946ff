//! The command line: raw flags (clap) in [`Args`], resolved into a [`Job`] by [`job`].

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

use crate::app::items::RunOptions;
use crate::app::report::{Console, Verbosity};
use crate::app::{commands, daemon};
use crate::core::check::FileCheck;
use crate::core::error::{Error, Result};
use crate::core::exit::ExitCode;
use crate::core::plan::{ConflictPolicy, Mode, PlanOptions};
use crate::engine::sync::{sync, Job};

#[derive(Debug, Parser)]
#[command(
    name = "pairsync",
    version,
    about = "Keeps pairs of folders in sync: one-way simple, one-way clone, or two-way"
)]
pub struct Args {
    /// The config file holding the items (default: $PAIRSYNC_CONFIG, then
    /// $XDG_CONFIG_HOME/pairsync/pairsync.toml, then ~/.config/pairsync/pairsync.toml).
    #[arg(short = 'C', long = "config", global = true, value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Where each pair's state database lives (default: $PAIRSYNC_STATE_DIR, then
    /// $XDG_STATE_HOME/pairsync, then ~/.local/state/pairsync).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print every action.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only errors and problems.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print one JSON summary object on stdout, and nothing else there.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sync SOURCE and DESTINATION once.
    Sync(SyncArgs),
    /// List the items: group, mode, source -> destination, schedule, last run, next run.
    List,
    /// List the groups and their items.
    Groups,
    /// Show every field of an item.
    Show { name: String },
    /// Add an item to the config file.
    Add(ItemArgs),
    /// Change fields of an item (only those given).
    #[command(after_help = "An ignore list given (--ignore, --ignore-source, --ignore-destination) replaces the \
                            item's; \"\" removes a check, a group or a schedule.")]
    Edit(ItemArgs),
    /// Copy an item under a new name.
    Copy { name: String, new: String },
    /// Delete an item (its sync state is kept unless --purge-state).
    Delete {
        name: String,
        /// Also delete the pair's state database and the item's last-run record.
        #[arg(long)]
        purge_state: bool,
    },
    /// Sync items now ("Sync Now"); the exit code is the worst of the runs.
    Run {
        #[arg(conflicts_with_all = ["group", "all"])]
        names: Vec<String>,
        /// Every item of this group.
        #[arg(long, value_name = "G", conflicts_with = "all")]
        group: Option<String>,
        /// Every item.
        #[arg(long)]
        all: bool,
    },
    /// Print an item's log.
    Logs {
        name: String,
        /// Keep printing lines as they are written.
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to print.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// Sync items once, then live: every change on a local side is carried within moments.
    Watch {
        #[arg(conflicts_with = "all")]
        names: Vec<String>,
        /// Every item.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        timing: WatchArgs,
    },
    /// Run every scheduled item at its due time, and watch the items with watch = true, until
    /// SIGTERM or SIGINT.
    Daemon {
        #[command(flatten)]
        timing: WatchArgs,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

/// How watching reacts to changes.
#[derive(Debug, Clone, ClapArgs)]
pub struct WatchArgs {
    /// Sync once a watched item has been quiet this long (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub quiet_ms: u64,
    /// ...and at least this often while changes keep coming (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub max_delay_ms: u64,
    /// A full rescan of each watched item this often (seconds).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub rescan: u64,
    /// FTP sides (and paused items) are checked this often (seconds).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub poll: u64,
}

impl WatchArgs {
    pub fn settings(&self) -> crate::app::watch::WatchSettings {
        use std::time::Duration;
        crate::app::watch::WatchSettings {
            quiet: Duration::from_millis(self.quiet_ms),
            max_delay: Duration::from_millis(self.max_delay_ms.max(self.quiet_ms)),
            rescan: Duration::from_secs(self.rescan.max(1)),
            poll: Duration::from_secs(self.poll.max(1)),
        }
    }
}

/// What a pair leaves out and when it may run: the same flags for `sync`, `add` and `edit`
/// (where a list given replaces the item's, and "" removes a check).
#[derive(Debug, Clone, ClapArgs)]
pub struct FilterArgs {
    /// Ignore paths matching this regex (on the '/'-separated relative path), on both sides.
    #[arg(long, value_name = "RE")]
    pub ignore: Vec<String>,
    /// Ignore paths matching this regex, written for the source (hides them from the pair).
    #[arg(long, value_name = "RE")]
    pub ignore_source: Vec<String>,
    /// Ignore paths matching this regex, written for the destination (hides them from the pair).
    #[arg(long, value_name = "RE")]
    pub ignore_destination: Vec<String>,
    /// Sync only if this file exists on the source side (and its content matches REGEX).
    #[arg(long, value_name = "PATH[=REGEX]")]
    pub check_source: Option<String>,
    /// Sync only if this file exists on the destination side (and its content matches REGEX).
    #[arg(long, value_name = "PATH[=REGEX]")]
    pub check_destination: Option<String>,
}

/// The fields of an item, as flags: all are needed by `add` (source and destination at least),
/// and those given are changed by `edit`.
#[derive(Debug, ClapArgs)]
pub struct ItemArgs {
    pub name: String,
    /// A local folder, or ftp://[user@]host[:port]/dir (ftps:// for explicit TLS).
    #[arg(long, value_name = "S")]
    pub source: Option<String>,
    /// A local folder, or ftp://[user@]host[:port]/dir (ftps:// for explicit TLS).
    #[arg(long, value_name = "D")]
    pub destination: Option<String>,
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Sync only the files directly in the two folders.
    #[arg(long, conflicts_with = "recursive")]
    pub no_recursive: bool,
    /// Sync the whole trees (the default; undoes --no-recursive).
    #[arg(long)]
    pub recursive: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long, value_enum)]
    pub conflict: Option<ConflictPolicy>,
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_delete: Option<u8>,
    /// A label shared by several items ("" removes it).
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// When the daemon runs the item, e.g. "mon-fri every 15m", "daily at 02:30" ("" removes it).
    #[arg(long, value_name = "SPEC")]
    pub schedule: Option<String>,
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// The item's log file (default: <state dir>/logs/NAME.log).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Also sync live when the daemon runs (watch mode).
    #[arg(long, conflicts_with = "no_watch")]
    pub watch: bool,
    #[arg(long)]
    pub no_watch: bool,
    /// Connections to an FTP side at most (default 4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: Option<u16>,
    /// Do not verify the FTPS sides' certificates (tls_verify = false); --secure-tls undoes it.
    #[arg(long, conflicts_with = "secure_tls")]
    pub insecure_tls: bool,
    #[arg(long)]
    pub secure_tls: bool,
    /// Name of an environment variable holding the source's FTP password.
    #[arg(long, value_name = "VAR")]
    pub source_password_env: Option<String>,
    /// Name of an environment variable holding the destination's FTP password.
    #[arg(long, value_name = "VAR")]
    pub destination_password_env: Option<String>,
}

#[derive(Debug, ClapArgs)]
pub struct SyncArgs {
    /// A local folder, or ftp://[user@]host[:port]/dir (ftps:// for explicit TLS; the password
    /// comes from ~/.netrc).
    pub source: String,
    /// A local folder, or ftp://[user@]host[:port]/dir (ftps:// for explicit TLS).
    pub destination: String,
    /// simple: copy new and changed files, never delete; clone: exact mirror; two-way: carry
    /// changes both ways.
    #[arg(long, value_enum, default_value = "two-way")]
    pub mode: Mode,
    /// Print the plan; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Sync only the files directly in the two folders.
    #[arg(long)]
    pub no_recursive: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// How two-way conflicts are resolved.
    #[arg(long, value_enum, default_value = "keep-both")]
    pub conflict: ConflictPolicy,
    /// Stop (exit 4) if more than PCT percent of a side's files would be deleted.
    #[arg(long, value_name = "PCT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_delete: u8,
    /// Override the empty-side and --max-delete safety stops.
    #[arg(long)]
    pub force: bool,
    /// Compare content by BLAKE3 hash instead of size and mtime.
    #[arg(long)]
    pub checksum: bool,
    /// Without state, mtimes this many seconds apart count as equal.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub modify_window: u32,
    /// Append a timestamped log of the run to FILE.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Do not verify FTPS servers' certificates: the connection can then be intercepted. Only
    /// for a server you know, with a self-signed certificate.
    #[arg(long)]
    pub insecure_tls: bool,
    /// Connections to an FTP side at most: parallel transfers (backing off on 421).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: u16,
}

/// The state folder: the flag, $PAIRSYNC_STATE_DIR, $XDG_STATE_HOME/pairsync, ~/.local/state/pairsync.
fn state_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    flag.or_else(|| env("PAIRSYNC_STATE_DIR"))
        .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("pairsync")))
        .or_else(|| env("HOME").map(|h| h.join(".local/state/pairsync")))
        .ok_or_else(|| Error::Usage("no state folder: set --state-dir, PAIRSYNC_STATE_DIR or HOME".into()))
}

/// Resolves the flags of `sync` into a validated job.
pub fn job(args: &SyncArgs, state_dir_flag: Option<PathBuf>) -> Result<Job> {
    let f = &args.filter;
    let patterns = f
        .ignore
        .iter()
        .map(|p| ("--ignore", p.as_str()))
        .chain(f.ignore_source.iter().map(|p| ("--ignore-source", p.as_str())))
        .chain(f.ignore_destination.iter().map(|p| ("--ignore-destination", p.as_str())));
    let check = |flag: &str, spec: &Option<String>| spec.as_deref().map(|s| FileCheck::parse(flag, s)).transpose();
    let checks = [check("--check-source", &f.check_source)?, check("--check-destination", &f.check_destination)?];
    let filter = crate::app::items::pair_filter(patterns, &checks, !args.no_recursive)?;
    Ok(Job {
        source: args.source.clone(),
        destination: args.destination.clone(),
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
        state_dir: state_dir(state_dir_flag)?,
        auth: std::array::from_fn(|_| crate::engine::sync::Auth {
            insecure_tls: args.insecure_tls,
            ..Default::default()
        }),
        connections: usize::from(args.connections),
        scope: None,
    })
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> std::process::ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { ExitCode::Usage.into() } else { ExitCode::Synced.into() };
        }
    };
    run(args).into()
}

pub fn run(args: Args) -> ExitCode {
    let verbosity = match (args.quiet, args.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let quiet = verbosity == Verbosity::Quiet;
    let (config, json) = (args.config, args.json);
    let state = || state_dir(args.state_dir.clone());
    let done = |result: Result<()>| result.map(|()| ExitCode::Synced);
    let result = match args.command {
        Command::Sync(sync_args) => return run_sync(sync_args, args.state_dir, verbosity, json),
        Command::List => state().and_then(|state| done(commands::list(config, &state, json, quiet))),
        Command::Groups => done(commands::groups(config, quiet)),
        Command::Show { name } => state().and_then(|state| done(commands::show(config, &state, &name, quiet))),
        Command::Add(item) => done(commands::add(config, &item, quiet)),
        Command::Edit(item) => done(commands::edit(config, &item, quiet)),
        Command::Copy { name, new } => done(commands::copy(config, &name, &new, quiet)),
        Command::Delete { name, purge_state } => {
            state().and_then(|state| done(commands::delete(config, &state, &name, purge_state, quiet)))
        }
        Command::Run { names, group, all } => state()
            .and_then(|state| {
                let options = RunOptions { json, ..RunOptions::new(verbosity) };
                commands::run(config, &state, (&names, group.as_deref(), all), &options)
            })
            .inspect_err(|error| {
                // --json: an error before any item ran is the one object too, as for `sync`.
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "error": error.chain(), "exit_code": error.exit_code().code() })
                    );
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
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Args as clap::CommandFactory>::command(),
                "pairsync",
                &mut std::io::stdout(),
            );
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

fn run_sync(sync_args: SyncArgs, state_dir_flag: Option<PathBuf>, verbosity: Verbosity, json: bool) -> ExitCode {
    let console = match Console::new(verbosity, json, sync_args.dry_run, sync_args.log.as_deref()) {
        Ok(console) => console,
        Err(e) => {
            let log = sync_args.log.unwrap_or_default();
            eprintln!("pairsync: --log {}: {e}", log.display());
            return ExitCode::Usage;
        }
    };
    // As URLs without a password: the log must never hold one.
    let shown = |given: &str| crate::engine::sync::shown_url(given);
    console.started(&shown(&sync_args.source), &shown(&sync_args.destination));
    match job(&sync_args, state_dir_flag).and_then(|job| sync(&job, &console)) {
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
