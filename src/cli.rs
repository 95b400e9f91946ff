//! The command line: raw flags (clap) in [`Args`], resolved into a [`Job`] by [`job`].

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

use crate::check::FileCheck;
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::filter::Filter;
use crate::plan::{ConflictPolicy, Mode, PlanOptions};
use crate::report::{Console, Verbosity};
use crate::sync::{sync, Job};

#[derive(Debug, Parser)]
#[command(
    name = "pairsync",
    version,
    about = "Keeps pairs of folders in sync: one-way simple, one-way clone, or two-way"
)]
pub struct Args {
    /// Where each pair's state database lives (default: $PAIRSYNC_STATE_DIR, then
    /// $XDG_STATE_HOME/pairsync).
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
}

#[derive(Debug, ClapArgs)]
pub struct SyncArgs {
    /// A local folder.
    pub source: String,
    /// A local folder.
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
    let patterns = args
        .ignore
        .iter()
        .map(|p| ("--ignore", p.as_str()))
        .chain(args.ignore_source.iter().map(|p| ("--ignore-source", p.as_str())))
        .chain(args.ignore_destination.iter().map(|p| ("--ignore-destination", p.as_str())));
    let check = |flag: &str, spec: &Option<String>| spec.as_deref().map(|s| FileCheck::parse(flag, s)).transpose();
    let checks = [check("--check-source", &args.check_source)?, check("--check-destination", &args.check_destination)?];
    // A check file inside a root marks the drive; it is not data to sync (nor, in clone mode,
    // an extra to delete).
    let markers: Vec<String> = checks.iter().flatten().filter_map(FileCheck::ignore_pattern).collect();
    let filter = Filter::new(patterns.chain(markers.iter().map(|m| ("file check", m.as_str()))), !args.no_recursive)?;
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
    match args.command {
        Command::Sync(sync_args) => {
            let console = match Console::new(verbosity, args.json, sync_args.dry_run, sync_args.log.as_deref()) {
                Ok(console) => console,
                Err(e) => {
                    let log = sync_args.log.unwrap_or_default();
                    eprintln!("pairsync: --log {}: {e}", log.display());
                    return ExitCode::Usage;
                }
            };
            console.started(&sync_args.source, &sync_args.destination);
            match job(&sync_args, args.state_dir).and_then(|job| sync(&job, &console)) {
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
    }
}
