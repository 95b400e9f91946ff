//! The sync log: the file in which delivery hooks (and Cyrus's own imapd, lmtpd, cyr_synclog)
//! record what changed, one `VERB arg...` line per change, and from which rolling replication
//! learns which users and mailboxes to look at. The format, the quoting and the rotation are
//! exactly Cyrus 3's, so either program can write a log the other reads.
//!
//! This module owns:
//! - the format (pure): [`Verb`] and its arguments, [`parse_line`] / [`format_line`], and
//!   [`parse`] of a whole log, where a malformed line is skipped and reported by number;
//! - merging (pure): [`merge`] folds the lines of one log into the [`Work`] of one cycle,
//!   duplicates merged and what a `USER` covers dropped, and [`user_of_mailbox`] says whose a
//!   mailbox is;
//! - the files (I/O): [`take`] rotates `log` -> `log-run` as Cyrus `sync_client` does and
//!   [`Taken::done`] unlinks it after a successful cycle; [`append`] adds one line under the
//!   lock Cyrus's writers take; [`read_alternate`] reads `-f FILE`.
//!
//! # Quoting (Cyrus `imap/sync_log.c`, `sync_quote_name`; read back by `imap/imapparse.c`)
//! An argument is written as it is, unless it is empty or holds a space, a tab, `(`, `)`, `"`,
//! `\`, `{` or `}`: then it is written between double quotes, with a `\` before each `"`, `\`,
//! `{` and `}` inside (so `""` is the empty argument). Arguments are separated by one space.
//! The reader (`sync_log_reader_getitem`, `getword` and `getxstring`) takes a verb up to a
//! space, then one or two IMAP astrings: an atom ends at whitespace, `(`, `)` or `"`; inside
//! quotes `\` takes the next character as it is. Two deliberate differences, both invisible
//! for any name Cyrus itself can log:
//! - a vertical tab or form feed also forces quotes here: Cyrus's reader ends an atom at any
//!   C whitespace, so Cyrus would write such a name unquoted and misread it;
//! - an IMAP literal (`{5}` then the bytes on the next line) is refused: no writer uses them,
//!   and they would break "one change, one line".
//!
//! A line break cannot be written at all (Cyrus: "Illegal line break in folder name").

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::core::names::{named, Named, UnknownName};

/// What a log line says changed. The arguments of each verb are fixed (Cyrus's writers,
/// `imap/sync_log.h`, always write these; its reader would take one or two of anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    /// `USER user`: everything of a user (every mailbox, subscriptions, seen state, Sieve).
    User,
    /// `UNUSER user`: the user was deleted.
    Unuser,
    /// `META user`: the user's data outside mailboxes: subscriptions, seen state and Sieve
    /// scripts (Cyrus's `sync_do_meta`; its `sync_log_sieve` writes `META`).
    Meta,
    /// `SIEVE user`: the user's Sieve scripts (older Cyrus; its reader takes it as `META`).
    Sieve,
    /// `MAILBOX mailbox`: a mailbox changed (created, flags, expunge, deleted...).
    Mailbox,
    /// `APPEND mailbox`: a message was delivered to it ("just a mailbox event" to Cyrus).
    Append,
    /// `DOUBLEMAILBOX mailbox mailbox`: a copy or move between two mailboxes.
    DoubleMailbox,
    /// `UNMAILBOX mailbox`: the mailbox was deleted (a no-op while the master still has it).
    Unmailbox,
    /// `RENAME old new`: Cyrus follows it with `MAILBOX old` and `MAILBOX new`.
    Rename,
    /// `QUOTA root`: the quota of a quota root (a mailbox name) changed.
    Quota,
    /// `ANNOTATION mailbox`: its annotations changed; `ANNOTATION ""` is the server's.
    Annotation,
    /// `SEEN user mailbox`: the user's seen state of a mailbox (Cyrus 3 writes the mailbox's
    /// unique id, `imap/seen_db.c`; older ones its name).
    Seen,
    /// `SUB user mailbox`: the user subscribed or unsubscribed (Cyrus writes `SUB` for both).
    Sub,
    /// `UNSUB user mailbox`: the user unsubscribed (read by Cyrus, written by none of it).
    Unsub,
}

named!(Verb {
    User => "USER",
    Unuser => "UNUSER",
    Meta => "META",
    Sieve => "SIEVE",
    Mailbox => "MAILBOX",
    Append => "APPEND",
    DoubleMailbox => "DOUBLEMAILBOX",
    Unmailbox => "UNMAILBOX",
    Rename => "RENAME",
    Quota => "QUOTA",
    Annotation => "ANNOTATION",
    Seen => "SEEN",
    Sub => "SUB",
    Unsub => "UNSUB",
});

impl Verb {
    /// What each argument is, in order; their number is the verb's arity.
    pub fn params(self) -> &'static [&'static str] {
        match self {
            Verb::User | Verb::Unuser | Verb::Meta | Verb::Sieve => &["user"],
            Verb::Mailbox | Verb::Append | Verb::Unmailbox | Verb::Annotation => &["mailbox"],
            Verb::DoubleMailbox => &["mailbox", "mailbox"],
            Verb::Rename => &["old", "new"],
            Verb::Quota => &["root"],
            Verb::Seen | Verb::Sub | Verb::Unsub => &["user", "mailbox"],
        }
    }

    pub fn arity(self) -> usize {
        self.params().len()
    }
}

/// One line of the log, well formed: `args.len() == verb.arity()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub verb: Verb,
    pub args: Vec<String>,
}

/// Why a line cannot be read, or an argument list cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("blank line")]
    Blank,
    #[error("no verb: the line starts with {0:?}")]
    NoVerb(char),
    #[error("unknown verb: {0}")]
    UnknownVerb(UnknownName),
    #[error("{verb} takes {} ({}), found {found}", plural(.verb.arity(), "argument"), .verb.params().join(" "))]
    Arity { verb: Verb, found: usize },
    /// Only `ANNOTATION ""` means something (the server's annotations); Cyrus's writers refuse
    /// an empty name anywhere else (`cyr_synclog`, the assert in `sync_log_mailbox`).
    #[error("argument {position} of {verb} is empty")]
    EmptyArgument { verb: Verb, position: usize },
    #[error("expected one space after {}, found {found:?}", after_what(*.after))]
    Separator { after: usize, found: char },
    #[error("argument {position} cannot start with {found:?}")]
    BadStart { position: usize, found: char },
    #[error("argument {position}: the quoted string is not closed")]
    UnclosedQuote { position: usize },
    #[error("argument {position}: an IMAP literal ({{n}} then the bytes) has no place in a sync log")]
    Literal { position: usize },
    #[error("a line break inside the line")]
    LineBreak,
    #[error("argument {position} holds a line break, which no log line can carry")]
    ArgumentLineBreak { position: usize },
    #[error("the line is not UTF-8")]
    NotUtf8,
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn after_what(after: usize) -> String {
    if after == 0 {
        "the verb".to_string()
    } else {
        format!("argument {after}")
    }
}

/// A line of a log that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// 1-based, counting blank lines.
    pub line: usize,
    pub text: String,
    pub reason: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {:?}", self.line, self.reason, self.text)
    }
}

/// `found` arguments for `verb`: exactly its arity.
pub fn check_arity(verb: Verb, found: usize) -> Result<(), LineError> {
    if found == verb.arity() {
        Ok(())
    } else {
        Err(LineError::Arity { verb, found })
    }
}

/// Whether `args` can be written for `verb`: its arity, no line break, and no empty argument
/// except `ANNOTATION ""`. [`parse_line`] holds every line it accepts to the same rules.
pub fn check_args(verb: Verb, args: &[&str]) -> Result<(), LineError> {
    check_arity(verb, args.len())?;
    for (index, arg) in args.iter().enumerate() {
        let position = index + 1;
        if arg.contains(['\r', '\n']) {
            return Err(LineError::ArgumentLineBreak { position });
        }
        if arg.is_empty() && verb != Verb::Annotation {
            return Err(LineError::EmptyArgument { verb, position });
        }
    }
    Ok(())
}

/// Where an atom (an unquoted argument, or the verb) ends: C `isspace` (CR and LF never reach
/// here), parentheses and the double quote, as Cyrus's `getword` and `getxstring`.
fn ends_atom(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '(' | ')' | '"')
}

/// Whether an argument must be quoted: Cyrus's `sync_quote_name` list, plus the two other
/// whitespace characters its reader splits on (see the module doc).
fn needs_quotes(arg: &str) -> bool {
    const SPECIAL: [char; 10] = [' ', '\t', '(', ')', '"', '\\', '{', '}', '\x0b', '\x0c'];
    arg.is_empty() || arg.contains(SPECIAL)
}

/// The line for `verb` and `args`, quoted as Cyrus quotes it, without the newline.
///
/// # Panics
/// When [`check_args`] refuses the arguments (wrong number, a line break, an empty one): such
/// a line cannot be read back. Callers with arguments from outside check first.
pub fn format_line(verb: Verb, args: &[&str]) -> String {
    if let Err(e) = check_args(verb, args) {
        panic!("format_line({verb}, {args:?}): {e}");
    }
    let mut line = verb.name().to_string();
    for arg in args {
        line.push(' ');
        if !needs_quotes(arg) {
            line.push_str(arg);
            continue;
        }
        line.push('"');
        for c in arg.chars() {
            // Cyrus escapes the braces too, though its reader would not need it: kept, so the
            // bytes match what Cyrus writes.
            if matches!(c, '\\' | '"' | '{' | '}') {
                line.push('\\');
            }
            line.push(c);
        }
        line.push('"');
    }
    line
}

/// One line (its trailing `\n` or `\r\n` may be there or not). Lenient where Cyrus is and
/// nothing is ambiguous: the verb's case, trailing spaces and tabs, any character in an atom
/// but the ones that end it. Strict where Cyrus would misread or stop reading the whole file
/// (two spaces in a row, a quote left open): those lines are refused, with the reason.
pub fn parse_line(line: &str) -> Result<LogLine, LineError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.contains(['\r', '\n']) {
        return Err(LineError::LineBreak);
    }
    let line = line.trim_end_matches([' ', '\t']);
    let mut chars = line.chars().peekable();
    let word: String = std::iter::from_fn(|| chars.next_if(|c| !ends_atom(*c))).collect();
    if word.is_empty() {
        return Err(chars.peek().map_or(LineError::Blank, |&c| LineError::NoVerb(c)));
    }
    // Cyrus upper-cases the verb before comparing it.
    let verb = Verb::from_name(&word.to_ascii_uppercase())
        .ok_or_else(|| LineError::UnknownVerb(UnknownName { word: word.clone(), expected: Verb::names() }))?;
    let mut args = Vec::new();
    while let Some(c) = chars.next() {
        if c != ' ' {
            return Err(LineError::Separator { after: args.len(), found: c });
        }
        let position = args.len() + 1;
        let arg = match chars.peek().copied() {
            // Trailing spaces were trimmed, so a space is always followed by something.
            None => return Err(LineError::Separator { after: args.len(), found: ' ' }),
            Some('"') => {
                chars.next();
                let mut arg = String::new();
                loop {
                    match chars.next() {
                        None => return Err(LineError::UnclosedQuote { position }),
                        Some('"') => break,
                        Some('\\') => arg.push(chars.next().ok_or(LineError::UnclosedQuote { position })?),
                        Some(c) => arg.push(c),
                    }
                }
                arg
            }
            Some('{') => return Err(LineError::Literal { position }),
            Some(c) if ends_atom(c) => return Err(LineError::BadStart { position, found: c }),
            Some(_) => std::iter::from_fn(|| chars.next_if(|c| !ends_atom(*c))).collect(),
        };
        args.push(arg);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    check_args(verb, &refs)?;
    Ok(LogLine { verb, args })
}

/// Every line of a log: the well-formed ones in order, and the malformed ones, skipped,
/// with their line numbers. Blank lines are ignored.
pub fn parse(text: &str) -> (Vec<LogLine>, Vec<Malformed>) {
    parse_bytes(text.as_bytes())
}

/// [`parse`] of raw bytes (a file, stdin): a line that is not UTF-8 is one malformed line,
/// not a failure of the whole log.
pub fn parse_bytes(bytes: &[u8]) -> (Vec<LogLine>, Vec<Malformed>) {
    let mut lines = Vec::new();
    let mut malformed = Vec::new();
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let parsed = std::str::from_utf8(raw).map_err(|_| LineError::NotUtf8).and_then(parse_line);
        match parsed {
            Ok(line) => lines.push(line),
            Err(LineError::Blank) => {}
            Err(e) => {
                let text = String::from_utf8_lossy(raw);
                let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
                malformed.push(Malformed { line: index + 1, text, reason: e.to_string() });
            }
        }
    }
    (lines, malformed)
}

/// The user a mailbox belongs to, as Cyrus's `mboxname_to_userid` says: `user.alice.Sent` ->
/// `alice`, `user.john^doe` -> `john.doe` ('^' is the '.' of a user name),
/// `example.com!user.alice` -> `alice@example.com`, and a deleted mailbox
/// `DELETED.user.alice.Trash.6B026207` -> `alice` (the prefix and the hex time stamp dropped),
/// so a `USER alice` covers her deleted mailboxes too. `None` for a mailbox of no user
/// (`shared.news`, `user` alone) and for names no user can have (an empty user or domain).
/// The default domain is not known here, so a domain is always kept.
pub fn user_of_mailbox(name: &str) -> Option<String> {
    let (domain, local) = match name.split_once('!') {
        Some((domain, local)) => (Some(domain), local),
        None => (None, name),
    };
    if domain == Some("") {
        return None;
    }
    let mut parts: Vec<&str> = local.split('.').collect();
    // Cyrus's default `deletedprefix`; a deleted name has at least the prefix, one part and
    // the stamp.
    if parts.len() > 2 && parts[0] == "DELETED" {
        parts.remove(0);
        parts.pop();
    }
    if parts.len() < 2 || parts[0] != "user" || parts[1].is_empty() {
        return None;
    }
    let user = parts[1].replace('^', ".");
    Some(match domain {
        Some(domain) => format!("{user}@{domain}"),
        None => user,
    })
}

/// What one cycle has to replicate: the lines of a log with duplicates merged. Users are as
/// the log names them (`alice`, `john.doe`, `alice@example.com`), mailboxes by Cyrus name.
///
/// The merge follows Cyrus's `sync_do_reader` (`imap/sync_support.c`): `UNUSER` trumps `USER`
/// for the same user; `USER` and `UNUSER` cover the user's `META`, `SIEVE`, `SEEN` and `SUB`;
/// `META` covers `SIEVE`, `SEEN` and `SUB`. Beyond Cyrus, `USER u` and `UNUSER u` also cover
/// every mailbox, deleted mailbox, quota root and annotation of u (Cyrus repeats them; a
/// user pass does them all anyway). Whether an `UNUSER` or `UNMAILBOX` still holds is for the
/// caller to ask the store: Cyrus's `UNMAILBOX` is a no-op while the mailbox exists, and a
/// user deleted and created again in one cycle logs both verbs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Work {
    /// `USER`: everything of these users.
    pub users: BTreeSet<String>,
    /// `UNUSER`: these users were deleted.
    pub unusers: BTreeSet<String>,
    /// `META`: subscriptions, seen state and Sieve scripts of these users.
    pub meta: BTreeSet<String>,
    /// `SIEVE`: the Sieve scripts of these users.
    pub sieve: BTreeSet<String>,
    /// `MAILBOX`, `APPEND`, both of `DOUBLEMAILBOX` and both of `RENAME`: these mailboxes.
    pub mailboxes: BTreeSet<String>,
    /// `UNMAILBOX`: these mailboxes were deleted.
    pub unmailboxes: BTreeSet<String>,
    /// `RENAME old new`, in log order, a rename repeated with no other rename in between kept
    /// once (Cyrus logs some renames twice). A hint to move a folder on the replica rather
    /// than copy it again: both names are also in `mailboxes` (or covered by `users`), whose
    /// replication makes the replica right whatever a stale rename did. Kept even for users
    /// in `users`, for the same reason.
    pub renames: Vec<(String, String)>,
    /// `QUOTA`: these quota roots.
    pub quotas: BTreeSet<String>,
    /// `ANNOTATION`: these mailboxes' annotations; `""` is the server's.
    pub annotations: BTreeSet<String>,
    /// `SEEN`: the seen state of these users.
    pub seen: BTreeSet<String>,
    /// `SUB` and `UNSUB`: the subscriptions of these users.
    pub subs: BTreeSet<String>,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        self == &Work::default()
    }

    /// Whether something a `verb` line records is left in the work.
    pub fn has(&self, verb: Verb) -> bool {
        match verb {
            Verb::User => !self.users.is_empty(),
            Verb::Unuser => !self.unusers.is_empty(),
            Verb::Meta => !self.meta.is_empty(),
            Verb::Sieve => !self.sieve.is_empty(),
            Verb::Mailbox | Verb::Append | Verb::DoubleMailbox => !self.mailboxes.is_empty(),
            Verb::Unmailbox => !self.unmailboxes.is_empty(),
            Verb::Rename => !self.renames.is_empty(),
            Verb::Quota => !self.quotas.is_empty(),
            Verb::Annotation => !self.annotations.is_empty(),
            Verb::Seen => !self.seen.is_empty(),
            Verb::Sub | Verb::Unsub => !self.subs.is_empty(),
        }
    }
}

/// The work of one cycle from the lines of its log (see [`Work`] for the rules).
pub fn merge(lines: &[LogLine]) -> Work {
    let mut work = Work::default();
    for line in lines {
        let add = |set: &mut BTreeSet<String>, name: &String| {
            set.insert(name.clone());
        };
        match (line.verb, line.args.as_slice()) {
            (Verb::User, [user]) => add(&mut work.users, user),
            (Verb::Unuser, [user]) => add(&mut work.unusers, user),
            (Verb::Meta, [user]) => add(&mut work.meta, user),
            (Verb::Sieve, [user]) => add(&mut work.sieve, user),
            (Verb::Mailbox | Verb::Append, [mailbox]) => add(&mut work.mailboxes, mailbox),
            (Verb::DoubleMailbox, [from, to]) => {
                add(&mut work.mailboxes, from);
                add(&mut work.mailboxes, to);
            }
            (Verb::Unmailbox, [mailbox]) => add(&mut work.unmailboxes, mailbox),
            (Verb::Rename, [old, new]) => {
                let rename = (old.clone(), new.clone());
                if work.renames.last() != Some(&rename) {
                    work.renames.push(rename);
                }
                add(&mut work.mailboxes, old);
                add(&mut work.mailboxes, new);
            }
            (Verb::Quota, [root]) => add(&mut work.quotas, root),
            (Verb::Annotation, [mailbox]) => add(&mut work.annotations, mailbox),
            (Verb::Seen, [user, _]) => add(&mut work.seen, user),
            (Verb::Sub | Verb::Unsub, [user, _]) => add(&mut work.subs, user),
            // A wrong number of arguments: parse_line never builds such a line.
            _ => {}
        }
    }

    // Here a user is either wholly replicated or wholly removed; "unuser trumps user" (Cyrus).
    work.users.retain(|user| !work.unusers.contains(user));
    let whole: BTreeSet<String> = work.users.union(&work.unusers).cloned().collect();
    work.meta.retain(|user| !whole.contains(user));
    let per_user = |user: &String| !whole.contains(user) && !work.meta.contains(user);
    work.sieve.retain(per_user);
    work.seen.retain(per_user);
    work.subs.retain(per_user);
    let not_covered = |name: &String| !user_of_mailbox(name).is_some_and(|user| whole.contains(&user));
    work.mailboxes.retain(not_covered);
    work.unmailboxes.retain(not_covered);
    work.quotas.retain(not_covered);
    work.annotations.retain(not_covered);
    work
}

// ---------------------------------------------------------------------------------------------
// The files.
//
// The lock is Cyrus's: a POSIX record lock (fcntl F_SETLKW, F_WRLCK, the whole file), as
// lib/lock_fcntl.c takes it (Cyrus's default `--with-lock=fcntl`), so pairsync's and Cyrus's
// writers and readers exclude each other. flock(2) would not do: on Linux flock and fcntl locks
// ignore each other. Open file description locks (F_OFD_SETLKW) would conflict with Cyrus's
// too, but neither rustix nor std offers them (only libc, with unsafe). Record locks belong to
// a process, not a thread, and closing any descriptor of the file drops them: so within this
// process every open, lock and close of a log happens under LOG_MUTEX, and threads exclude
// each other there.

/// Serializes this process's writers and readers of sync logs (see above); guards no data.
static LOG_MUTEX: Mutex<()> = Mutex::new(());

/// How often `append` reopens a log renamed between its open and its lock before giving up
/// (Cyrus's SYNC_LOG_RETRIES).
const WRITE_ATTEMPTS: usize = 64;

fn log_mutex() -> std::sync::MutexGuard<'static, ()> {
    LOG_MUTEX.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `what path: error`, the error's kind kept.
fn context(what: &str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let message = format!("{what} {}", path.display());
    move |e| io::Error::new(e.kind(), format!("{message}: {e}"))
}

fn lock_exclusive(file: &File) -> io::Result<()> {
    fcntl_lock(file, rustix::fs::FlockOperation::LockExclusive)
}

fn unlock(file: &File) -> io::Result<()> {
    fcntl_lock(file, rustix::fs::FlockOperation::Unlock)
}

/// `fcntl(F_SETLKW)` on the whole file (rustix's `fcntl_lock` is exactly Cyrus's call),
/// again when a signal interrupts the wait.
pub(crate) fn fcntl_lock(file: &File, operation: rustix::fs::FlockOperation) -> io::Result<()> {
    loop {
        match rustix::fs::fcntl_lock(file, operation) {
            Err(rustix::io::Errno::INTR) => continue,
            result => return result.map_err(io::Error::from),
        }
    }
}

/// The work file beside `log`: its path with `-run` appended (`log` -> `log-run`), as Cyrus's
/// `sync_log_reader_create_with_channel` names it.
pub fn run_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push("-run");
    PathBuf::from(name)
}

/// A log taken for one cycle: its lines, read from `path` (`log-run`), which stays until
/// [`Taken::done`].
#[derive(Debug)]
#[must_use = "call done() once the cycle succeeded; dropped, log-run is left for the next cycle"]
pub struct Taken {
    /// The work file, `<log>-run`.
    pub path: PathBuf,
    pub lines: Vec<LogLine>,
    pub malformed: Vec<Malformed>,
    /// The work file was a leftover of an earlier cycle that crashed or failed (Cyrus logs
    /// "Reprocessing sync log file"), not a fresh rotation of the log.
    pub leftover: bool,
}

impl Taken {
    /// The cycle succeeded: the work file is unlinked. A work file already gone is fine.
    pub fn done(self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(context("unlinking", &self.path)(e)),
            _ => Ok(()),
        }
    }
}

/// Takes the log for one cycle, as Cyrus `sync_client` (`sync_log_reader_begin`) does: a
/// leftover `log-run` is read first and `log` left for the next cycle (so with `-1` and both
/// there, only `log-run` is processed); otherwise `log` is renamed to `log-run`, and `Ok(None)`
/// when there is no log. The exclusive lock taken and released on `log-run` waits for a
/// writer that locked the file before the rename to finish its line; any writer locking it
/// later sees that `log` is another file and writes there.
pub fn take(log: &Path) -> io::Result<Option<Taken>> {
    let run = run_path(log);
    let _guard = log_mutex();
    let leftover = match fs::symlink_metadata(&run) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::rename(log, &run) {
            Ok(()) => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(context(&format!("renaming {} to", log.display()), &run)(e)),
        },
        Err(e) => return Err(context("looking at", &run)(e)),
    };
    // Opened for writing: a write lock needs it (Cyrus opens it O_RDWR for the same reason).
    let mut file = OpenOptions::new().read(true).write(true).open(&run).map_err(context("opening", &run))?;
    lock_exclusive(&file).map_err(context("locking", &run))?;
    unlock(&file).map_err(context("unlocking", &run))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(context("reading", &run))?;
    drop(file);
    let (lines, malformed) = parse_bytes(&bytes);
    Ok(Some(Taken { path: run, lines, malformed, leftover }))
}

/// `-f FILE` in rolling mode: an alternate log, read as it is, neither renamed nor locked nor
/// ever deleted (it may be read-only; stdin, `-`, is the caller's: [`parse_bytes`]).
pub fn read_alternate(path: &Path) -> io::Result<(Vec<LogLine>, Vec<Malformed>)> {
    let bytes = fs::read(path).map_err(context("reading", path))?;
    Ok(parse_bytes(&bytes))
}

/// Appends one line to the log, as Cyrus's `sync_log` writes: opened `O_APPEND|O_CREAT` with
/// mode 0640 (its folder created 0755 if missing), locked, checked to still be the file at
/// `log` (a reader may have renamed it to `log-run` between the open and the lock: then it is
/// opened again), written in one write, fsync'ed, unlocked.
///
/// # Errors
/// `InvalidInput` when [`check_args`] refuses the arguments; otherwise the I/O error, with the
/// path it concerns.
pub fn append(log: &Path, verb: Verb, args: &[&str]) -> io::Result<()> {
    check_args(verb, args).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut line = format_line(verb, args);
    line.push('\n');
    let _guard = log_mutex();
    for _ in 0..WRITE_ATTEMPTS {
        let file = open_for_append(log)?;
        lock_exclusive(&file).map_err(context("locking", log))?;
        if !is_at(&file, log)? {
            unlock(&file).map_err(context("unlocking", log))?;
            continue;
        }
        let written = (&file).write_all(line.as_bytes()).and_then(|()| file.sync_all());
        let unlocked = unlock(&file);
        written.map_err(context("writing", log))?;
        return unlocked.map_err(context("unlocking", log));
    }
    Err(io::Error::other(format!("{}: renamed under the writer {WRITE_ATTEMPTS} times in a row", log.display())))
}

fn open_for_append(log: &Path) -> io::Result<File> {
    let open = || OpenOptions::new().append(true).create(true).mode(0o640).open(log);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(folder) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
                DirBuilder::new().recursive(true).mode(0o755).create(folder).map_err(context("creating", folder))?;
            }
            open().map_err(context("opening", log))
        }
        result => result.map_err(context("opening", log)),
    }
}

/// Whether the open `file` is still the one at `path` (not renamed away since it was opened).
fn is_at(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata().map_err(context("looking at", path))?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == open.dev() && now.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(context("looking at", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn ok(verb: Verb, args: &[&str]) -> Result<LogLine, LineError> {
        Ok(LogLine { verb, args: args.iter().map(|a| a.to_string()).collect() })
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// One test per row, so that a failure names the case.
    macro_rules! cases {
        ($check:expr; $($case:ident: $input:expr => $want:expr,)*) => {
            $(
                #[test]
                fn $case() {
                    $check($input, $want);
                }
            )*
        };
    }

    mod parse_line {
        use super::*;
        use LineError::*;
        use Verb::*;

        fn check(line: &str, want: Result<LogLine, LineError>) {
            assert_eq!(parse_line(line), want, "line {line:?}");
        }

        cases! { check;
            mailbox_atom: "MAILBOX user.alice" => ok(Mailbox, &["user.alice"]),
            every_verb_user: "USER alice" => ok(User, &["alice"]),
            unuser: "UNUSER alice" => ok(Unuser, &["alice"]),
            meta: "META alice" => ok(Meta, &["alice"]),
            sieve: "SIEVE alice" => ok(Sieve, &["alice"]),
            append: "APPEND user.alice" => ok(Append, &["user.alice"]),
            double_mailbox: "DOUBLEMAILBOX user.alice user.alice.Sent" => ok(DoubleMailbox, &["user.alice", "user.alice.Sent"]),
            unmailbox: "UNMAILBOX user.alice.Old" => ok(Unmailbox, &["user.alice.Old"]),
            rename: "RENAME user.a.X user.a.Y" => ok(Rename, &["user.a.X", "user.a.Y"]),
            quota: "QUOTA user.bob" => ok(Quota, &["user.bob"]),
            annotation_server: r#"ANNOTATION """# => ok(Annotation, &[""]),
            seen_uniqueid: "SEEN alice 6d1b5e5c-3a4b-4c1e" => ok(Seen, &["alice", "6d1b5e5c-3a4b-4c1e"]),
            sub: "SUB alice user.alice.Sent" => ok(Sub, &["alice", "user.alice.Sent"]),
            unsub: "UNSUB alice user.alice.Sent" => ok(Unsub, &["alice", "user.alice.Sent"]),
            domain_and_caret: "MAILBOX example.com!user.john^doe" => ok(Mailbox, &["example.com!user.john^doe"]),
            quoted_space: r#"MAILBOX "user.alice.My Folder""# => ok(Mailbox, &["user.alice.My Folder"]),
            quoted_escapes: r#"MAILBOX "a\"b\\c\{d\}""# => ok(Mailbox, &[r#"a"b\c{d}"#]),
            quoted_tab_and_parens: "MAILBOX \"a\tb (c)\"" => ok(Mailbox, &["a\tb (c)"]),
            escape_takes_any_char: r#"MAILBOX "\a\é""# => ok(Mailbox, &["aé"]),
            utf8_atom: "MAILBOX user.zoë.Entwürfe" => ok(Mailbox, &["user.zoë.Entwürfe"]),
            atom_keeps_backslash_and_braces: r"MAILBOX a\b{c}" => ok(Mailbox, &[r"a\b{c}"]),
            verb_any_case: "mailbox user.alice" => ok(Mailbox, &["user.alice"]),
            crlf: "MAILBOX user.alice\r\n" => ok(Mailbox, &["user.alice"]),
            trailing_blanks: "MAILBOX user.alice \t " => ok(Mailbox, &["user.alice"]),
            blank: "" => Err(Blank),
            whitespace_only: " \t " => Err(Blank),
            unknown_verb: "FROB x" => Err(UnknownVerb(UnknownName { word: "FROB".into(), expected: Verb::names() })),
            starts_with_space: " MAILBOX x" => Err(NoVerb(' ')),
            starts_with_paren: "(MAILBOX x)" => Err(NoVerb('(')),
            verb_alone: "USER" => Err(Arity { verb: User, found: 0 }),
            too_many: "MAILBOX a b" => Err(Arity { verb: Mailbox, found: 2 }),
            too_few: "RENAME a" => Err(Arity { verb: Rename, found: 1 }),
            tab_after_verb: "MAILBOX\tx" => Err(Separator { after: 0, found: '\t' }),
            quote_glued_to_verb: "MAILBOX\"x\"" => Err(Separator { after: 0, found: '"' }),
            garbage_after_quote: r#"MAILBOX "a"b"# => Err(Separator { after: 1, found: 'b' }),
            paren_in_atom: "MAILBOX a(b" => Err(Separator { after: 1, found: '(' }),
            two_spaces: "MAILBOX  x" => Err(BadStart { position: 1, found: ' ' }),
            unclosed_quote: r#"MAILBOX "abc"# => Err(UnclosedQuote { position: 1 }),
            unclosed_after_escape: r#"MAILBOX "abc\"# => Err(UnclosedQuote { position: 1 }),
            literal: "MAILBOX {5}" => Err(Literal { position: 1 }),
            empty_mailbox: r#"MAILBOX """# => Err(EmptyArgument { verb: Mailbox, position: 1 }),
            empty_second: r#"SUB alice """# => Err(EmptyArgument { verb: Sub, position: 2 }),
            inner_cr: "MAILBOX a\rb" => Err(LineBreak),
        }
    }

    mod format_line {
        use super::*;
        use Verb::*;

        fn check((verb, args): (Verb, &[&str]), want: &str) {
            assert_eq!(format_line(verb, args), want);
            assert_eq!(parse_line(want), ok(verb, args), "read back");
        }

        cases! { check;
            plain: (Mailbox, &["user.alice.Sent"]) => "MAILBOX user.alice.Sent",
            space: (Mailbox, &["user.alice.My Folder"]) => r#"MAILBOX "user.alice.My Folder""#,
            tab: (Mailbox, &["a\tb"]) => "MAILBOX \"a\tb\"",
            parens: (Mailbox, &["a(b)"]) => r#"MAILBOX "a(b)""#,
            quote: (Mailbox, &[r#"a"b"#]) => r#"MAILBOX "a\"b""#,
            backslash: (Mailbox, &[r"a\b"]) => r#"MAILBOX "a\\b""#,
            braces_escaped_as_cyrus: (Mailbox, &["a{b}"]) => r#"MAILBOX "a\{b\}""#,
            empty_is_two_quotes: (Annotation, &[""]) => r#"ANNOTATION """#,
            caret_and_domain_plain: (Mailbox, &["example.com!user.john^doe"]) => "MAILBOX example.com!user.john^doe",
            utf8_plain: (Mailbox, &["user.zoë.Entwürfe"]) => "MAILBOX user.zoë.Entwürfe",
            other_specials_plain: (Mailbox, &["a[b]%*&~"]) => "MAILBOX a[b]%*&~",
            vertical_tab_quoted: (Mailbox, &["a\x0bb"]) => "MAILBOX \"a\x0bb\"",
            two_args: (Rename, &["user.a.X", "user.a.Y Z"]) => r#"RENAME user.a.X "user.a.Y Z""#,
        }
    }

    #[test]
    fn check_args_refuses_what_cannot_be_read_back() {
        assert_eq!(check_args(Verb::Mailbox, &["a\nb"]), Err(LineError::ArgumentLineBreak { position: 1 }));
        assert_eq!(check_args(Verb::Sub, &["alice", "a\rb"]), Err(LineError::ArgumentLineBreak { position: 2 }));
        assert_eq!(check_args(Verb::User, &[""]), Err(LineError::EmptyArgument { verb: Verb::User, position: 1 }));
        assert_eq!(check_args(Verb::Seen, &["alice"]), Err(LineError::Arity { verb: Verb::Seen, found: 1 }));
        assert_eq!(check_arity(Verb::Rename, 2), Ok(()));
        assert_eq!(
            LineError::Arity { verb: Verb::Rename, found: 1 }.to_string(),
            "RENAME takes 2 arguments (old new), found 1"
        );
    }

    /// Any character but CR and LF, the quoting-relevant ones often.
    fn arg_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => prop::sample::select(vec![' ', '\t', '"', '\\', '{', '}', '(', ')', '\x0b', '\x0c', '^', '!', '.', 'é', '中']),
            2 => any::<char>().prop_filter("no line break", |c| !matches!(c, '\r' | '\n')),
        ]
    }

    fn arg(min: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(arg_char(), min..12).prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn format_then_parse_gives_the_arguments_back(
            verb in prop::sample::select(Verb::ALL.to_vec()),
            first in arg(1),
            second in arg(1),
        ) {
            let args: Vec<&str> = [first.as_str(), second.as_str()][..verb.arity()].to_vec();
            let line = format_line(verb, &args);
            prop_assert!(!line.contains(['\r', '\n']));
            prop_assert_eq!(parse_line(&line), ok(verb, &args));
        }

        #[test]
        fn an_annotation_may_be_empty(name in arg(0)) {
            let line = format_line(Verb::Annotation, &[&name]);
            prop_assert_eq!(parse_line(&line), ok(Verb::Annotation, &[&name]));
        }
    }

    #[test]
    fn parse_skips_malformed_lines_by_number() {
        let text = "MAILBOX user.a\n\nFROB x\r\nMAILBOX  user.b\n  \nUSER bob\nMAILBOX \"open\n";
        let (lines, malformed) = parse(text);
        assert_eq!(lines, vec![ok(Verb::Mailbox, &["user.a"]).unwrap(), ok(Verb::User, &["bob"]).unwrap()]);
        let numbers: Vec<usize> = malformed.iter().map(|m| m.line).collect();
        assert_eq!(numbers, [3, 4, 7]);
        assert_eq!(malformed[0].text, "FROB x");
        assert_eq!(malformed[1].to_string(), r#"line 4: argument 1 cannot start with ' ': "MAILBOX  user.b""#);
        assert!(malformed[0].reason.starts_with(r#"unknown verb: "FROB" is not one of USER, UNUSER"#));
    }

    #[test]
    fn a_line_not_utf8_is_one_malformed_line() {
        let (lines, malformed) = parse_bytes(b"MAILBOX user.a\nMAILBOX user.\xff\nUSER b\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(malformed.len(), 1);
        assert_eq!((malformed[0].line, malformed[0].reason.as_str()), (2, "the line is not UTF-8"));
    }

    mod user_of_mailbox {
        use super::*;

        fn check(name: &str, want: Option<&str>) {
            assert_eq!(user_of_mailbox(name).as_deref(), want, "mailbox {name:?}");
        }

        cases! { check;
            inbox: "user.alice" => Some("alice"),
            folder: "user.alice.Sent" => Some("alice"),
            deep_folder: "user.alice.Work.2024" => Some("alice"),
            caret_is_dot: "user.john^doe.Sent" => Some("john.doe"),
            domain: "example.com!user.alice.Sent" => Some("alice@example.com"),
            domain_caret: "example.com!user.john^doe" => Some("john.doe@example.com"),
            deleted_folder: "DELETED.user.alice.Trash.6B026207" => Some("alice"),
            deleted_inbox: "DELETED.user.alice.6B026207" => Some("alice"),
            deleted_in_domain: "example.com!DELETED.user.alice.Trash.6B026207" => Some("alice@example.com"),
            deleted_too_short: "DELETED.user.alice" => None,
            shared: "shared.news" => None,
            user_alone: "user" => None,
            empty_user: "user..Sent" => None,
            empty_domain: "!user.alice" => None,
            empty: "" => None,
            not_user_prefix: "users.alice" => None,
        }
    }

    mod merge {
        use super::*;

        fn check(text: &str, want: Work) {
            let (lines, malformed) = parse(text);
            assert!(malformed.is_empty(), "{malformed:?}");
            assert_eq!(merge(&lines), want, "log:\n{text}");
        }

        fn renames(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
            pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
        }

        cases! { check;
            nothing: "" => Work::default(),
            duplicates_merge: "MAILBOX user.a\nAPPEND user.a\nMAILBOX user.a\n"
                => Work { mailboxes: set(&["user.a"]), ..Work::default() },
            double_mailbox_both: "DOUBLEMAILBOX user.a user.b.Sent"
                => Work { mailboxes: set(&["user.a", "user.b.Sent"]), ..Work::default() },
            user_covers_its_mailboxes: "MAILBOX user.alice.Sent\nUSER alice\nMAILBOX user.alice\nMAILBOX user.bob\nMAILBOX DELETED.user.alice.X.6B026207"
                => Work { users: set(&["alice"]), mailboxes: set(&["user.bob"]), ..Work::default() },
            user_with_dot_covers_caret: "USER john.doe\nMAILBOX user.john^doe.Sent\nMAILBOX user.john"
                => Work { users: set(&["john.doe"]), mailboxes: set(&["user.john"]), ..Work::default() },
            domain_user_covers_domain_mailboxes: "USER alice@example.com\nMAILBOX example.com!user.alice\nMAILBOX user.alice"
                => Work { users: set(&["alice@example.com"]), mailboxes: set(&["user.alice"]), ..Work::default() },
            user_covers_meta_seen_subs_quota_annotation:
                "META alice\nSIEVE alice\nSEEN alice x\nSUB alice user.alice.S\nQUOTA user.alice\nANNOTATION user.alice.S\nUNMAILBOX user.alice.Old\nUSER alice"
                => Work { users: set(&["alice"]), ..Work::default() },
            unuser_trumps_user: "USER bob\nMAILBOX user.bob\nUNUSER bob\nUSER bob"
                => Work { unusers: set(&["bob"]), ..Work::default() },
            meta_covers_sieve_seen_subs: "SIEVE a\nSEEN a x\nUNSUB a user.a.S\nMETA a\nSEEN b y\nSIEVE c"
                => Work { meta: set(&["a"]), seen: set(&["b"]), sieve: set(&["c"]), ..Work::default() },
            sub_and_unsub_are_subs: "SUB a user.a.X\nUNSUB b user.b.Y"
                => Work { subs: set(&["a", "b"]), ..Work::default() },
            renames_keep_order_and_name_both: "RENAME user.a.X user.a.Y\nRENAME user.a.Y user.a.X\nRENAME user.a.X user.a.Z"
                => Work {
                    renames: renames(&[("user.a.X", "user.a.Y"), ("user.a.Y", "user.a.X"), ("user.a.X", "user.a.Z")]),
                    mailboxes: set(&["user.a.X", "user.a.Y", "user.a.Z"]),
                    ..Work::default()
                },
            repeated_rename_kept_once: "RENAME user.a.X user.a.Y\nMAILBOX user.a.X\nRENAME user.a.X user.a.Y"
                => Work { renames: renames(&[("user.a.X", "user.a.Y")]), mailboxes: set(&["user.a.X", "user.a.Y"]), ..Work::default() },
            renames_kept_for_a_whole_user: "RENAME user.a.X user.a.Y\nUSER a"
                => Work { users: set(&["a"]), renames: renames(&[("user.a.X", "user.a.Y")]), ..Work::default() },
            unmailbox_kept_beside_mailbox: "UNMAILBOX user.a.X\nMAILBOX user.a.X"
                => Work { mailboxes: set(&["user.a.X"]), unmailboxes: set(&["user.a.X"]), ..Work::default() },
            server_annotation_and_shared: "ANNOTATION \"\"\nANNOTATION shared.x\nQUOTA shared"
                => Work { annotations: set(&["", "shared.x"]), quotas: set(&["shared"]), ..Work::default() },
        }

        #[test]
        fn has_and_is_empty() {
            let work = merge(&parse("QUOTA user.bob\nSUB a user.a").0);
            assert!(work.has(Verb::Quota) && work.has(Verb::Unsub) && !work.has(Verb::Mailbox));
            assert!(!work.is_empty());
            assert!(Work::default().is_empty());
        }
    }

    /// /work/shared/mail/cyrus-3.6-sync-log.txt, a log written by Cyrus 3.6 (deliveries, a
    /// copy, a subscription, a rename done twice, a delete under delete_mode delayed, a quota).
    const CYRUS_36_LOG: &str = "\
MAILBOX user.alice
MAILBOX user.alice.Sent
MAILBOX user.bob
APPEND user.alice
MAILBOX user.alice
APPEND user.alice
MAILBOX user.alice
APPEND user.alice
MAILBOX user.alice
APPEND user.bob
MAILBOX user.bob
MAILBOX user.alice
MAILBOX user.alice
MAILBOX user.alice
APPEND user.alice.Sent
MAILBOX user.alice.Sent
DOUBLEMAILBOX user.alice user.alice.Sent
APPEND user.alice.Sent
MAILBOX user.alice
MAILBOX user.alice
SUB alice user.alice.Sent
RENAME user.alice.Sent user.alice.Sent2
MAILBOX user.alice.Sent
MAILBOX user.alice.Sent2
RENAME user.alice.Sent user.alice.Sent2
MAILBOX user.alice.Sent
MAILBOX user.alice.Sent2
MAILBOX user.alice.Sent
MAILBOX user.alice.Trash
RENAME user.alice.Trash DELETED.user.alice.Trash.6B026207
MAILBOX user.alice.Trash
MAILBOX DELETED.user.alice.Trash.6B026207
RENAME user.alice.Trash DELETED.user.alice.Trash.6B026207
MAILBOX user.alice.Trash
MAILBOX DELETED.user.alice.Trash.6B026207
MAILBOX user.alice.Trash
MAILBOX user.bob
QUOTA user.bob
MAILBOX user.bob
";

    #[test]
    fn a_cyrus_3_6_log_merges_into_its_work() {
        let (lines, malformed) = parse(CYRUS_36_LOG);
        assert!(malformed.is_empty(), "{malformed:?}");
        assert_eq!(lines.len(), 39);
        // Our quoting writes what Cyrus wrote, byte for byte.
        let written: String = lines
            .iter()
            .map(|l| format_line(l.verb, &l.args.iter().map(String::as_str).collect::<Vec<_>>()) + "\n")
            .collect();
        assert_eq!(written, CYRUS_36_LOG);
        let work = merge(&lines);
        let want = Work {
            mailboxes: set(&[
                "DELETED.user.alice.Trash.6B026207",
                "user.alice",
                "user.alice.Sent",
                "user.alice.Sent2",
                "user.alice.Trash",
                "user.bob",
            ]),
            renames: vec![
                ("user.alice.Sent".into(), "user.alice.Sent2".into()),
                ("user.alice.Trash".into(), "DELETED.user.alice.Trash.6B026207".into()),
            ],
            quotas: set(&["user.bob"]),
            subs: set(&["alice"]),
            ..Work::default()
        };
        assert_eq!(work, want);
        // With a USER alice line, only bob's mailboxes are left beside her.
        let (mut lines, _) = parse(CYRUS_36_LOG);
        lines.push(ok(Verb::User, &["alice"]).unwrap());
        let work = merge(&lines);
        assert_eq!(work.mailboxes, set(&["user.bob"]));
        assert_eq!(work.subs, set(&[]));
        assert_eq!(work.renames.len(), 2);
    }

    // The files.

    fn log_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("log")
    }

    #[test]
    fn run_path_appends_run() {
        assert_eq!(run_path(Path::new("/var/lib/pairsync/mail/log")), Path::new("/var/lib/pairsync/mail/log-run"));
    }

    #[test]
    fn append_writes_quoted_lines_creating_the_folder_with_mode_0640() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mail").join("log");
        append(&log, Verb::Mailbox, &["user.alice.My Folder"]).unwrap();
        append(&log, Verb::Sub, &["alice", "user.alice.Sent"]).unwrap();
        assert_eq!(fs::read_to_string(&log).unwrap(), "MAILBOX \"user.alice.My Folder\"\nSUB alice user.alice.Sent\n");
        // 0640 less the umask: never more than 0640.
        assert_eq!(fs::metadata(&log).unwrap().mode() & 0o777 & !0o640, 0);
    }

    #[test]
    fn append_refuses_what_cannot_be_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_in(&dir);
        for (verb, args) in [(Verb::Mailbox, &["a\nb"][..]), (Verb::Mailbox, &[][..]), (Verb::User, &[""][..])] {
            let err = append(&log, verb, args).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{verb} {args:?}");
        }
        assert!(!log.exists());
    }

    #[test]
    fn take_rotates_and_done_unlinks() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_in(&dir);
        assert!(take(&log).unwrap().is_none(), "no log, nothing taken");
        append(&log, Verb::Mailbox, &["user.a"]).unwrap();
        fs::write(&log, fs::read_to_string(&log).unwrap() + "FROB\n").unwrap();
        let taken = take(&log).unwrap().unwrap();
        assert_eq!(taken.path, run_path(&log));
        assert!(!taken.leftover);
        assert!(!log.exists() && taken.path.exists());
        assert_eq!(taken.lines, vec![ok(Verb::Mailbox, &["user.a"]).unwrap()]);
        assert_eq!(taken.malformed.iter().map(|m| m.line).collect::<Vec<_>>(), [2]);
        taken.done().unwrap();
        assert!(!run_path(&log).exists());
        assert!(take(&log).unwrap().is_none());
    }

    #[test]
    fn a_failed_cycle_leaves_log_run_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_in(&dir);
        append(&log, Verb::Mailbox, &["user.a"]).unwrap();
        let first = take(&log).unwrap().unwrap();
        drop(first); // the cycle failed: no done()
        append(&log, Verb::Mailbox, &["user.b"]).unwrap();
        let again = take(&log).unwrap().unwrap();
        assert!(again.leftover);
        assert_eq!(again.lines, vec![ok(Verb::Mailbox, &["user.a"]).unwrap()]);
        again.done().unwrap();
        let next = take(&log).unwrap().unwrap();
        assert_eq!(next.lines, vec![ok(Verb::Mailbox, &["user.b"]).unwrap()]);
    }

    #[test]
    fn with_log_run_and_log_only_log_run_is_taken() {
        // Issue 10: "With -1 and both log-run and log present, only log-run is processed".
        let dir = tempfile::tempdir().unwrap();
        let log = log_in(&dir);
        fs::write(run_path(&log), "MAILBOX user.old\n").unwrap();
        fs::write(&log, "MAILBOX user.new\n").unwrap();
        let taken = take(&log).unwrap().unwrap();
        assert_eq!(taken.lines, vec![ok(Verb::Mailbox, &["user.old"]).unwrap()]);
        assert_eq!(fs::read_to_string(&log).unwrap(), "MAILBOX user.new\n", "log untouched");
        taken.done().unwrap();
        assert!(log.exists());
    }

    #[test]
    fn read_alternate_never_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("replay");
        fs::write(&file, "USER alice\nBAD\n").unwrap();
        let (lines, malformed) = read_alternate(&file).unwrap();
        assert_eq!(lines, vec![ok(Verb::User, &["alice"]).unwrap()]);
        assert_eq!(malformed.len(), 1);
        assert!(file.exists());
        assert!(!run_path(&file).exists());
    }

    #[test]
    fn every_line_appended_during_rotations_is_taken_exactly_once() {
        const N: usize = 300;
        let dir = tempfile::tempdir().unwrap();
        let log = log_in(&dir);
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    append(&log, Verb::Mailbox, &[&format!("user.u{i}")]).unwrap();
                }
            })
        };
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut record = |taken: Taken| {
            assert!(taken.malformed.is_empty(), "{:?}", taken.malformed);
            for line in &taken.lines {
                *seen.entry(line.args[0].clone()).or_default() += 1;
            }
            taken.done().unwrap();
        };
        while !writer.is_finished() {
            match take(&log).unwrap() {
                Some(taken) => record(taken),
                None => std::thread::yield_now(),
            }
        }
        writer.join().unwrap();
        if let Some(taken) = take(&log).unwrap() {
            record(taken);
        }
        assert!(take(&log).unwrap().is_none());
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
        assert!(twice.is_empty(), "seen more than once: {twice:?}");
        assert_eq!(seen.len(), N, "lines lost");
    }

    /// The variable that makes `lock_holder_child` act (it is a no-op in a normal test run).
    const CHILD_LOCKS: &str = "PAIRSYNC_SYNCLOG_TEST_LOCK_HOLDER";
    /// What the child prints once it holds the lock.
    const CHILD_HOLDS_LOCK: &str = "synclog-child-holds-the-lock";

    /// Run in a child process by `a_cyrus_lock_in_another_process_excludes_ours`: takes the
    /// lock exactly as Cyrus's lib/lock_fcntl.c does, says so, and holds it until stdin closes.
    #[test]
    #[ignore = "a helper process, run by a_cyrus_lock_in_another_process_excludes_ours"]
    fn lock_holder_child() {
        let Some(path) = std::env::var_os(CHILD_LOCKS) else { return };
        use std::os::fd::AsRawFd;
        let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
        // SAFETY: an all-zero flock is a valid value; fcntl only reads it.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as _;
        lock.l_whence = libc::SEEK_SET as _;
        // SAFETY: a valid open descriptor and a pointer to a live flock.
        assert_eq!(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &lock as *const libc::flock) }, 0);
        // libtest prints "test <name> ... " first: the marker ends that line.
        println!("{CHILD_HOLDS_LOCK}");
        io::stdout().flush().unwrap();
        io::copy(&mut io::stdin(), &mut io::sink()).unwrap();
    }

    #[test]
    fn a_cyrus_lock_in_another_process_excludes_ours() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let log = log_in(&dir);
        fs::write(&log, "").unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "mail::synclog::tests::lock_holder_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_LOCKS, &log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = io::BufReader::new(child.stdout.take().unwrap());
        let mut said = String::new();
        while !said.trim_end().ends_with(CHILD_HOLDS_LOCK) {
            said.clear();
            assert_ne!(out.read_line(&mut said).unwrap(), 0, "the child ended without locking");
        }
        let file = OpenOptions::new().read(true).write(true).open(&log).unwrap();
        let probe = rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        assert!(probe.is_err(), "our fcntl lock was granted while Cyrus's was held");
        // Why not flock(2): on Linux it ignores fcntl locks, so it would be granted here.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        lock_exclusive(&file).unwrap();
        unlock(&file).unwrap();
    }
}
