//! The command line as typed: clap's structs, which only validate what the user wrote. Resolving
//! them (environment, config file, defaults) into plain types is [`super::cli`]'s job; nothing
//! below the app layer sees these types.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

use crate::config::edit::ItemEdit;
use crate::core::names::Named;
use crate::core::plan::{ConflictPolicy, Mode};
use crate::core::safety::MaxDelete;
use crate::core::versions::Keep;

/// `--max-delete`: `N%` or a count `N`.
fn max_delete(text: &str) -> Result<MaxDelete, String> {
    text.parse()
}

/// A flag taking one of a choice's names (shown in --help and in the error for any other).
fn choice<E: Named + Send + Sync + Clone>() -> impl clap::builder::TypedValueParser<Value = E> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(E::names())
        .map(|word| E::from_name(&word).expect("clap checked it is one of the names"))
}

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
    /// Draw the progress line even where it would not be (not a terminal, TERM=dumb, -v).
    #[arg(long, global = true, conflicts_with = "no_progress")]
    pub progress: bool,
    /// Never draw the progress line.
    #[arg(long, global = true)]
    pub no_progress: bool,
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
        /// Print each item's plan; change nothing (no log line, no last-run record either).
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Override the empty-side and max-delete safety stops, for this run.
        #[arg(long)]
        force: bool,
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
    /// Print a shell completion script (bash, zsh and fish complete item and group names too).
    Completions { shell: clap_complete::Shell },
    /// The items and groups in one screen, with Add, Edit, Copy, Delete, Logs and Sync Now
    /// (a terminal UI; ? shows its keys).
    Console,
    /// Replicate the mail store of [mail] to a replica, like Cyrus sync_client.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = "Modes: -r rolling (from the sync log, until the shutdown file), -u USER..., -m MAILBOX..., \
                      -s USER... (Sieve scripts only), -A (every user). Mailboxes are named as Cyrus names them: \
                      user.alice, user.alice.Sent, example.com!user.alice."
    )]
    Mail(MailArgs),
}

/// `pairsync mail`: sync_client's flags, with their meanings.
#[derive(Debug, ClapArgs)]
pub struct MailArgs {
    #[command(subcommand)]
    pub log_line: Option<MailCommand>,
    /// Log every action in the mail log ([mail] log, default <state dir>/logs/mail.log).
    #[arg(short = 'l')]
    pub log_actions: bool,
    /// The replica: a [[mail.replica]] name, or a URL or folder (default: [mail] default_replica).
    #[arg(short = 'S', value_name = "REPLICA")]
    pub replica: Option<String>,
    /// The objects, one a line ('#' comments, '-' for stdin); with -r, an alternate log,
    /// processed once and never deleted.
    #[arg(short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Shutdown file, checked at the top of each rolling cycle and removed on shutdown.
    #[arg(short = 'F', value_name = "FILE")]
    pub shutdown_file: Option<PathBuf>,
    /// Wait this long before starting.
    #[arg(short = 'w', value_name = "SECS", default_value_t = 0)]
    pub wait: u64,
    /// A rolling cycle running longer is cut at the next user, the rest queued again.
    #[arg(short = 't', value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
    /// Least time between the starts of two rolling cycles.
    #[arg(short = 'd', value_name = "SECS", default_value_t = 3)]
    pub delay: u64,
    /// Connect once: an unreachable replica exits 6 instead of being retried with backoff.
    #[arg(short = 'o')]
    pub connect_once: bool,
    /// Rolling replication from the sync log, until the shutdown file appears.
    #[arg(short = 'r')]
    pub rolling: bool,
    /// With -r: process one log file, then exit (0 when there was none).
    #[arg(short = '1', requires = "rolling")]
    pub one: bool,
    /// The objects are users: every mailbox, control file and Sieve script of each.
    #[arg(short = 'u')]
    pub users: bool,
    /// The objects are mailboxes.
    #[arg(short = 'm')]
    pub mailboxes: bool,
    /// The objects are users: their Sieve scripts only.
    #[arg(short = 's')]
    pub sieve: bool,
    /// Every user found in the store.
    #[arg(short = 'A')]
    pub all: bool,
    /// Also learn changes from inotify on the store (with -r), so that a store without a sync
    /// log is replicated live.
    #[arg(long, requires = "rolling")]
    pub watch: bool,
    /// Copy the replica back into the store (with -u, -m or -A), never overwriting a message
    /// that is there.
    #[arg(long)]
    pub restore: bool,
    /// A Cyrus spool: the sync log channel (imapd.conf sync_log_channels), as sync_client -n:
    /// reads {configdirectory}/sync/CHANNEL/log and CHANNEL_sync_shutdown_file.
    #[arg(short = 'n', value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// With --restore into a Cyrus spool: print the reconstruct commands instead of running them.
    #[arg(long, requires = "restore")]
    pub print_only: bool,
    /// With --restore into a Cyrus spool: which copy wins when a mailbox exists there under
    /// another uniqueid ("replica" or "spool"); without it, that is exit 2.
    #[arg(long, value_name = "WHICH", requires = "restore")]
    pub force: Option<String>,
    #[arg(value_name = "OBJECTS")]
    pub objects: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Append one correctly quoted line to the sync log (for delivery hooks).
    Log {
        /// USER, UNUSER, META, SIEVE, MAILBOX, APPEND, DOUBLEMAILBOX, UNMAILBOX, RENAME, QUOTA,
        /// ANNOTATION, SEEN, SUB or UNSUB.
        verb: String,
        #[arg(value_name = "ARG")]
        args: Vec<String>,
    },
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
    /// Leave out paths matching this glob, as rsync and rclone read it: `*.tmp` at any depth,
    /// `/build` from the root only, `cache/` folders only, `**` across folders.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Sync only the files matching one of these globs (folders are always walked); an
    /// --exclude wins over an --include.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
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
    #[arg(long, value_parser = choice::<Mode>())]
    pub mode: Option<Mode>,
    /// Sync only the files directly in the two folders.
    #[arg(long, conflicts_with = "recursive")]
    pub no_recursive: bool,
    /// Sync the whole trees (the default; undoes --no-recursive).
    #[arg(long)]
    pub recursive: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long, value_parser = choice::<ConflictPolicy>())]
    pub conflict: Option<ConflictPolicy>,
    /// Stop (exit 4) above N% of a side's files deleted, or above N files (rsync's meaning).
    #[arg(long, value_name = "N%|N", value_parser = max_delete)]
    pub max_delete: Option<MaxDelete>,
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
    /// Keep every file a run overwrites or deletes, moved to DIR/<YYYY-MM-DD_HHMMSS>/<path> on
    /// its side (DIR relative to each side's root; "" stops keeping versions).
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<String>,
    /// Keep only the newest N run folders in the backup dir ("all": every one, the default).
    #[arg(long, value_name = "N|all")]
    pub backup_keep: Option<Keep>,
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
    #[arg(long, value_parser = choice::<Mode>(), default_value = "two-way")]
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
    #[arg(long, value_parser = choice::<ConflictPolicy>(), default_value = "keep-both")]
    pub conflict: ConflictPolicy,
    /// Stop (exit 4) if a run would delete more than N% of a side's files (default 50%), or
    /// more than N files (a plain count, as rsync's --max-delete).
    #[arg(long, value_name = "N%|N", default_value = "50%", value_parser = max_delete)]
    pub max_delete: MaxDelete,
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
    /// Keep every file the run overwrites or deletes on a side: first moved (a rename on that
    /// side, no copy) to DIR/<YYYY-MM-DD_HHMMSS>/<path>. DIR is relative to each side's root and
    /// never synced.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<String>,
    /// After a run that kept versions, keep only the newest N run folders in --backup-dir
    /// (default: all).
    #[arg(long, value_name = "N|all", requires = "backup_dir")]
    pub backup_keep: Option<Keep>,
}

impl ItemArgs {
    /// The fields these flags set, as plain values.
    pub fn edit(&self) -> ItemEdit {
        let f = &self.filter;
        let either = |on: bool, off: bool| (on || off).then_some(on);
        ItemEdit {
            name: self.name.clone(),
            source: self.source.clone(),
            destination: self.destination.clone(),
            mode: self.mode,
            recursive: either(self.recursive, self.no_recursive),
            ignore: f.ignore.clone(),
            ignore_source: f.ignore_source.clone(),
            ignore_destination: f.ignore_destination.clone(),
            exclude: f.exclude.clone(),
            include: f.include.clone(),
            check_source: f.check_source.clone(),
            check_destination: f.check_destination.clone(),
            conflict: self.conflict,
            max_delete: self.max_delete,
            group: self.group.clone(),
            schedule: self.schedule.clone(),
            description: self.description.clone(),
            log: self.log.clone(),
            watch: either(self.watch, self.no_watch),
            connections: self.connections,
            backup_dir: self.backup_dir.clone(),
            backup_keep: self.backup_keep,
            tls_verify: either(self.secure_tls, self.insecure_tls),
            source_password_env: self.source_password_env.clone(),
            destination_password_env: self.destination_password_env.clone(),
        }
    }
}
