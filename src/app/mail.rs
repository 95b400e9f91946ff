//! `pairsync mail`: the command line of mail replication, as sync_client has it.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::args::{MailArgs, MailCommand};
use crate::app::commands;
use crate::app::out::outln;
use crate::app::report::{Console, Verbosity};
use crate::config::mail::{MailConfig, StoreLayout};
use crate::core::error::{Error, Result};
use crate::core::exit::ExitCode;
use crate::engine::executor::Observer;
use crate::mail::names::Mailbox;
use crate::mail::replicate::{Passed, Replicator};
use crate::mail::rolling::{self, End, Narrator, Rolling};
use crate::mail::synclog::{self, Malformed, Verb};
use crate::mail::watch::StoreWatch;

impl Narrator for Console {
    fn malformed(&self, log: &Path, line: &Malformed) {
        crate::engine::sync::Reporter::warning(
            self,
            &format!("{}:{}: {}; line skipped", log.display(), line.line, line.reason),
        );
    }

    fn note(&self, message: &str) {
        crate::engine::sync::Reporter::warning(self, message);
    }

    fn cycle(&self, passed: &Passed, took: Duration) {
        // --json with -r: one object a cycle that did something, as it ends.
        if self.json_cycles() {
            let t = &passed.outcome.tally;
            if t.copied + t.deleted + t.renamed + t.folders_created > 0 || !passed.outcome.problems.is_empty() {
                let mut object = summary_json(passed, None);
                if let Some(fields) = object.as_object_mut() {
                    fields.insert("cycle".into(), true.into());
                    fields.insert("seconds".into(), took.as_secs_f64().into());
                }
                self.print_summary_json(object);
            }
        }
        let t = &passed.outcome.tally;
        if t.copied + t.deleted + t.renamed + t.folders_created > 0 || !passed.outcome.problems.is_empty() {
            let line = format!("cycle: {} in {:.3} s", summary(passed), took.as_secs_f64());
            self.log(&line);
            if self.verbosity() == Verbosity::Verbose {
                outln!("pairsync mail: {line}");
            }
        }
    }
}

/// What a pass did as `--json` gives it (the caller adds the actions and warnings): the counts
/// as `sync --json` has them, the problems as objects, and the exit code.
pub(crate) fn summary_json(passed: &Passed, exit: Option<ExitCode>) -> serde_json::Value {
    let mut object = serde_json::to_value(&passed.outcome.tally).expect("a tally serializes");
    if let Some(fields) = object.as_object_mut() {
        fields.insert("mailboxes".into(), passed.mailboxes.into());
        fields.insert("problems".into(), serde_json::to_value(&passed.outcome.problems).expect("serializes"));
        fields.insert("interrupted".into(), passed.outcome.interrupted.into());
        if let Some(exit) = exit {
            fields.insert("exit_code".into(), exit.code().into());
        }
    }
    object
}

/// Says what a pass did: the summary line, or with `--json` the summary object; returns the
/// exit code.
pub(crate) fn report(console: &Console, verbosity: Verbosity, what: &str, passed: &Passed) -> ExitCode {
    let exit = if !passed.outcome.problems.is_empty() || passed.outcome.interrupted {
        ExitCode::Problems
    } else {
        ExitCode::Synced
    };
    if console.json() {
        console.print_summary_json(summary_json(passed, Some(exit)));
    } else if verbosity > Verbosity::Quiet {
        outln!("pairsync mail{what}: {}", summary(passed));
    }
    exit
}

/// One line for what a pass did.
pub(crate) fn summary(passed: &Passed) -> String {
    let t = &passed.outcome.tally;
    format!(
        "{} mailboxes: copied {} ({}), renamed {}, deleted {}, {} folders created, {} problems",
        passed.mailboxes,
        t.copied,
        indicatif::HumanBytes(t.bytes),
        t.renamed,
        t.deleted,
        t.folders_created,
        passed.outcome.problems.len()
    )
}

/// The `[mail]` table of the config file; none is a usage error naming the file.
fn mail_config(config_flag: Option<PathBuf>, quiet: bool) -> Result<(MailConfig, PathBuf)> {
    let config = commands::load(config_flag, quiet)?;
    let path = config.path().to_path_buf();
    let mail = config.mail().map_err(|e| Error::Usage(e.to_string()))?;
    let mail =
        mail.ok_or_else(|| Error::Usage(format!("{}: no [mail] table (see pairsync-mail(8))", path.display())))?;
    Ok((mail, path))
}

pub fn run(
    config_flag: Option<PathBuf>,
    state_dir: &Path,
    args: MailArgs,
    verbosity: Verbosity,
    json: bool,
    stop: Option<Arc<AtomicBool>>,
) -> Result<ExitCode> {
    let quiet = verbosity == Verbosity::Quiet;
    let (config, _) = mail_config(config_flag, quiet)?;
    if let Some(MailCommand::Log { verb, args: words }) = &args.log_line {
        // A Cyrus spool's logs are Cyrus's own: the line goes to every channel, as
        // cyr_synclog writes it.
        let (logs, owner) = match (config.layout, &config.sync_log) {
            (StoreLayout::Cyrus, None) => {
                let conf =
                    crate::mail::cyrus::conf::read(&config.cyrus_config).map_err(|e| Error::Usage(e.to_string()))?;
                (conf.sync_log_paths(), Some(conf.configdirectory))
            }
            _ => (vec![config.sync_log(state_dir)], None),
        };
        for log in &logs {
            log_line(log, verb, words)?;
            // Cyrus (its own user) must go on appending to a log root created, and rotate it.
            if let Some(owner) = &owner {
                crate::mail::cyrus::give_to_owner_of(owner, log)
                    .map_err(|e| Error::Usage(format!("sync log {}: {e}", log.display())))?;
            }
        }
        return Ok(ExitCode::Synced);
    }
    let modes =
        [("-r", args.rolling), ("-u", args.users), ("-m", args.mailboxes), ("-s", args.sieve), ("-A", args.all)];
    let chosen: Vec<&str> = modes.iter().filter(|(_, on)| *on).map(|(flag, _)| *flag).collect();
    let mode = match chosen[..] {
        [one] => one,
        [] => return Err(Error::Usage("mail: give one of -r, -u, -m, -s, -A (or --restore with -u, -m, -A)".into())),
        _ => return Err(Error::Usage(format!("mail: {} cannot go together; give one", chosen.join(" and ")))),
    };
    let mut objects = args.objects.clone();
    if let (Some(file), false) = (&args.file, args.rolling) {
        objects.extend(read_objects(file)?);
    }
    match mode {
        "-u" | "-m" | "-s" if objects.is_empty() => {
            return Err(Error::Usage(format!("mail {mode}: name at least one object (or give -f FILE)")))
        }
        "-r" | "-A" if !objects.is_empty() => {
            return Err(Error::Usage(format!("mail {mode} takes no objects (given: {})", objects.join(" "))))
        }
        _ => {}
    }
    let log = args.log_actions.then(|| config.log(state_dir));
    let console = Console::new(verbosity, json, false, log.as_deref())
        .map_err(|e| Error::Usage(format!("mail log {}: {e}", log.clone().unwrap_or_default().display())))?;
    let console = match &stop {
        Some(flag) => console.with_stop(flag.clone()),
        None => console,
    };
    let console = console.with_json_cycles(args.rolling && !args.one && args.file.is_none());
    if args.wait > 0 {
        wait(Duration::from_secs(args.wait), &console);
    }
    if args.restore && !matches!(mode, "-u" | "-m" | "-A") {
        return Err(Error::Usage(format!("mail --restore goes with -u, -m or -A, not {mode}")));
    }
    if config.layout == StoreLayout::Cyrus {
        return crate::app::mail_cyrus::run(&config, state_dir, &args, mode, &objects, &console, verbosity);
    }
    if args.channel.is_some() || args.print_only || args.force.is_some() {
        return Err(Error::Usage(
            "mail: -n, --print-only and --force are for a Cyrus spool (layout = \"cyrus\")".into(),
        ));
    }
    let job = config.job(args.replica.as_deref(), state_dir)?;
    let shutdown = args.shutdown_file.clone().or_else(|| config.shutdown_file.clone());
    let replicator = open_with_backoff(
        || Replicator::open(job.clone()),
        args.rolling && !args.connect_once,
        shutdown.as_deref(),
        &console,
    )?;
    let Some(replicator) = replicator else { return Ok(ExitCode::Synced) };
    if args.restore {
        let passed = restore(&replicator, mode, &objects, &console)?;
        return Ok(report(&console, verbosity, " --restore", &passed));
    }
    let passed = match mode {
        "-r" => {
            let rolling = Rolling {
                log: config.sync_log(state_dir),
                once: args.one,
                shutdown: shutdown.clone(),
                timeout: Duration::from_secs(args.timeout.max(1)),
                delay: Duration::from_secs(args.delay),
            };
            if let Some(file) = &args.file {
                // -f with -r: an alternate log, processed once, never deleted.
                let (lines, malformed) = read_alternate(file)?;
                for bad in &malformed {
                    console.malformed(file, bad);
                }
                rolling::cycle(&replicator, &lines, None, &console)?
            } else {
                let feed = if args.watch || config.watch {
                    let watch = StoreWatch::start(replicator.store(), &replicator.job.layout).map_err(|e| {
                        Error::Usage(format!("cannot watch the mail store {}: {e}", replicator.store().display()))
                    })?;
                    Some(watch)
                } else {
                    None
                };
                let (end, passed) = rolling::roll(&replicator, &rolling, feed.as_ref(), &console)?;
                if end == End::Shutdown && !quiet {
                    outln!("pairsync mail: shutdown file found; stopped");
                }
                passed
            }
        }
        "-u" => users(&replicator, &objects, true, &console)?,
        "-s" => users(&replicator, &objects, false, &console)?,
        "-m" => mailboxes(&replicator, &objects, &console)?,
        "-A" => {
            let found = replicator.job.layout.users(replicator.store()).map_err(|e| {
                Error::Safety(format!("the mail store {} cannot be listed: {e}", replicator.store().display()))
            })?;
            if found.is_empty() {
                if replicator.knows_any_user()? {
                    return Err(Error::Safety(format!(
                        "the mail store {} holds no mailboxes, but the state says it did: nothing deleted on the \
                         replica (an unmounted store?)",
                        replicator.store().display()
                    )));
                }
                return Err(Error::Usage(format!(
                    "no users found in the mail store {} (user_dir {:?})",
                    replicator.store().display(),
                    replicator.job.layout.user_dir()
                )));
            }
            users(&replicator, &found, true, &console)?
        }
        _ => unreachable!("modes checked above"),
    };
    let t = &passed.outcome.tally;
    if t.copied + t.deleted + t.renamed + t.folders_created > 0 {
        replicator.flush()?;
    }
    Ok(report(&console, verbosity, "", &passed))
}

/// `--restore` with -u, -m or -A: the replica's mailboxes back into the store.
fn restore(replicator: &Replicator, mode: &str, objects: &[String], console: &Console) -> Result<Passed> {
    let layout = &replicator.job.layout;
    let mailboxes: Vec<Mailbox> = match mode {
        "-m" => objects
            .iter()
            .map(|name| layout.mailbox(name).map_err(|e| Error::Usage(format!("-m {name}: {e}"))))
            .collect::<Result<_>>()?,
        "-u" => {
            let mut all = Vec::new();
            for user in objects {
                // The state says which mailboxes were replicated; lost with the server, the
                // replica itself does.
                let mut known = replicator.recorded_mailboxes(user)?;
                if known.is_empty() {
                    known = replicator.replica_mailboxes(user)?;
                }
                if known.is_empty() {
                    return Err(Error::Usage(format!("unknown user {user:?}: not on this replica")));
                }
                all.extend(known);
            }
            all
        }
        "-A" => {
            let mut users = replicator.recorded_users()?;
            if users.is_empty() {
                users = replicator.replica_users()?;
            }
            if users.is_empty() {
                return Err(Error::Usage("mail --restore -A: the replica holds no user's Maildir".into()));
            }
            let mut all = Vec::new();
            for user in &users {
                let mut known = replicator.recorded_mailboxes(user)?;
                if known.is_empty() {
                    known = replicator.replica_mailboxes(user)?;
                }
                all.extend(known);
            }
            all
        }
        _ => return Err(Error::Usage(format!("mail --restore goes with -u, -m or -A, not {mode}"))),
    };
    let outcome = replicator.restore(&mailboxes, console)?;
    let mut passed = Passed::default();
    passed.add(outcome, mailboxes.len());
    Ok(passed)
}

/// `mail log VERB ARG...`: one line appended to the sync log, quoted as Cyrus quotes it.
fn log_line(log: &Path, verb: &str, words: &[String]) -> Result<ExitCode> {
    let verb: Verb = verb.parse().map_err(|e| Error::Usage(format!("mail log: {e}")))?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    synclog::check_arity(verb, words.len()).map_err(|e| Error::Usage(format!("mail log {verb}: {e}")))?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Usage(format!("sync log {}: {e}", log.display())))?;
    }
    synclog::append(log, verb, &words).map_err(|e| Error::Usage(format!("sync log {}: {e}", log.display())))?;
    Ok(ExitCode::Synced)
}

/// `-f FILE`: one object a line, `#` comments and blank lines skipped; `-` is stdin.
pub(crate) fn read_objects(file: &Path) -> Result<Vec<String>> {
    let error = |e: std::io::Error| Error::Usage(format!("-f {}: {e}", file.display()));
    let lines: Vec<String> = if file == Path::new("-") {
        std::io::stdin().lock().lines().collect::<std::io::Result<_>>().map_err(error)?
    } else {
        std::fs::read_to_string(file).map_err(error)?.lines().map(str::to_string).collect()
    };
    Ok(lines.into_iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty() && !l.starts_with('#')).collect())
}

pub(crate) fn read_alternate(file: &Path) -> Result<(Vec<synclog::LogLine>, Vec<Malformed>)> {
    let error = |e: std::io::Error| Error::Usage(format!("-f {}: {e}", file.display()));
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(error)?;
        Ok(synclog::parse(&text))
    } else {
        synclog::read_alternate(file).map_err(error)
    }
}

/// Replicates users: every mailbox of each (`mailboxes`), and with `sieve` their scripts.
fn users(replicator: &Replicator, users: &[String], with_mail: bool, console: &Console) -> Result<Passed> {
    let mut passed = Passed::default();
    for user in users {
        if console.should_stop() {
            passed.outcome.interrupted = true;
            break;
        }
        replicator.check_user_present(user)?;
        let all = rolling::all_mailboxes(replicator, user)?;
        if all.is_empty() {
            return Err(Error::Usage(format!(
                "unknown user {user:?}: no Maildir at {} in the store, and none replicated before",
                replicator.job.layout.user_root(user).unwrap_or_default()
            )));
        }
        if with_mail {
            let outcome = replicator.user(&all, true, console)?;
            passed.add(outcome, all.len());
        }
        let sieve = replicator.sieve(user, console)?;
        passed.add(sieve, 0);
    }
    Ok(passed)
}

/// Replicates named mailboxes, grouped by user so that a move between two of them is a rename.
fn mailboxes(replicator: &Replicator, names: &[String], console: &Console) -> Result<Passed> {
    let layout = &replicator.job.layout;
    let mut by_user: Vec<(String, Vec<Mailbox>)> = Vec::new();
    for name in names {
        let mailbox = layout.mailbox(name).map_err(|e| Error::Usage(format!("-m {name}: {e}")))?;
        let exists = replicator.store().join(&mailbox.folder).is_dir();
        if !exists && !replicator.knows_mailbox(&mailbox)? {
            return Err(Error::Usage(format!("unknown mailbox {name:?}: no folder {} in the store", mailbox.folder)));
        }
        match by_user.iter_mut().find(|(user, _)| *user == mailbox.user) {
            Some((_, list)) => list.push(mailbox),
            None => by_user.push((mailbox.user.clone(), vec![mailbox])),
        }
    }
    for (user, _) in &by_user {
        replicator.check_user_present(user)?;
    }
    let mut passed = Passed::default();
    for (_, list) in by_user {
        if console.should_stop() {
            passed.outcome.interrupted = true;
            break;
        }
        let outcome = replicator.user(&list, true, console)?;
        passed.add(outcome, list.len());
    }
    Ok(passed)
}

/// Opens the replicator. When rolling without -o, an unreachable replica is retried with
/// backoff (15 s, doubling, up to 20 min) until it answers, a stop, or the shutdown file
/// (then `None`, the shutdown file removed).
pub(crate) fn open_with_backoff<T>(
    open: impl Fn() -> Result<T>,
    retry: bool,
    shutdown: Option<&Path>,
    console: &Console,
) -> Result<Option<T>> {
    let mut backoff = Duration::from_secs(15);
    loop {
        match open() {
            Err(error) if retry && error.exit_code() == ExitCode::Unreachable => {
                crate::engine::sync::Reporter::warning(
                    console,
                    &format!("{}; trying again in {} s", error.chain(), backoff.as_secs()),
                );
                if !wait_unless(backoff, console, shutdown) {
                    // Stopped while waiting: by a signal, or the shutdown file, which is removed
                    // as a cycle's check removes it.
                    if let Some(file) = shutdown.filter(|f| f.exists()) {
                        std::fs::remove_file(file)
                            .map_err(|e| Error::Usage(format!("shutdown file {}: {e}", file.display())))?;
                    }
                    return Ok(None);
                }
                backoff = (backoff * 2).min(Duration::from_secs(20 * 60));
            }
            other => return other.map(Some),
        }
    }
}

/// Sleeps `how_long`, waking for a stop request; false when stopped.
pub(crate) fn wait(how_long: Duration, console: &Console) -> bool {
    wait_unless(how_long, console, None)
}

pub(crate) fn wait_unless(how_long: Duration, console: &Console, shutdown: Option<&Path>) -> bool {
    let started = Instant::now();
    while started.elapsed() < how_long {
        if console.should_stop() || shutdown.is_some_and(Path::exists) {
            return false;
        }
        std::thread::sleep((how_long - started.elapsed()).min(Duration::from_millis(200)));
    }
    true
}
