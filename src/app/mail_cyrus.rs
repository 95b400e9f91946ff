//! `pairsync mail` for a Cyrus spool (`[mail] layout = "cyrus"`): the same flags as for a
//! Maildir store, plus `-n CHANNEL`, and a restore that ends with Cyrus's `reconstruct`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::app::args::MailArgs;
use crate::app::mail::{open_with_backoff, read_alternate, report};
use crate::app::out::outln;
use crate::app::report::{Console, Verbosity};
use crate::config::mail::MailConfig;
use crate::core::error::{Error, Result};
use crate::core::exit::ExitCode;
use crate::mail::cyrus::replicate::CyrusReplicator;
use crate::mail::cyrus::restore::{self, Force};
use crate::mail::rolling::{self, Cycles, End, Narrator, Rolling};
use crate::mail::synclog::{user_of_mailbox, Work};

pub fn run(
    config: &MailConfig,
    state_dir: &Path,
    args: &MailArgs,
    mode: &str,
    objects: &[String],
    console: &Console,
    verbosity: Verbosity,
) -> Result<ExitCode> {
    if args.watch || config.watch {
        return Err(Error::Usage(
            "mail --watch (watch = true) is for a Maildir store; Cyrus writes its own sync log (sync_log: 1)".into(),
        ));
    }
    let job = config.cyrus_job(args.replica.as_deref(), state_dir)?;
    let channel = args.channel.as_deref();
    let shutdown =
        args.shutdown_file.clone().or_else(|| config.shutdown_file.clone()).or_else(|| job.conf.shutdown_file(channel));
    // The log is checked before anything opens: a log Cyrus never writes is a replica that
    // silently falls behind.
    let log = match (mode, &config.sync_log) {
        ("-r", Some(log)) => Some(log.clone()),
        ("-r", None) if args.file.is_none() => {
            Some(job.conf.sync_log_path(channel).map_err(|e| Error::Usage(e.to_string()))?)
        }
        _ => None,
    };
    let force = match args.force.as_deref() {
        None => None,
        Some("replica") => Some(Force::Replica),
        Some("spool") => Some(Force::Spool),
        Some(other) => return Err(Error::Usage(format!("--force {other:?}: give replica or spool"))),
    };
    let replicator = open_with_backoff(
        || CyrusReplicator::open(job.clone()),
        args.rolling && !args.connect_once,
        shutdown.as_deref(),
        console,
    )?;
    let Some(replicator) = replicator else { return Ok(ExitCode::Synced) };
    if args.restore {
        let restored = restore::restore(&replicator, mode, objects, force, args.print_only, console)?;
        for command in &restored.commands {
            if args.print_only {
                outln!("{command}");
            } else if verbosity == Verbosity::Verbose {
                outln!("pairsync mail --restore: ran {command}");
            }
        }
        return Ok(report(console, verbosity, " --restore", &restored.passed));
    }
    let passed = match mode {
        "-r" => {
            if let Some(file) = &args.file {
                let (lines, malformed) = read_alternate(file)?;
                for bad in &malformed {
                    console.malformed(file, bad);
                }
                replicator.run_cycle(&lines, None, console)?
            } else {
                let rolling = Rolling {
                    log: log.expect("set for -r"),
                    once: args.one,
                    shutdown: shutdown.clone(),
                    timeout: Duration::from_secs(args.timeout.max(1)),
                    delay: Duration::from_secs(args.delay),
                };
                let (end, passed) = rolling::roll(&replicator, &rolling, None, console)?;
                if end == End::Shutdown && verbosity > Verbosity::Quiet {
                    outln!("pairsync mail: shutdown file found; stopped");
                }
                passed
            }
        }
        "-A" => {
            let users = replicator.all_users()?;
            // Mailboxes of no user (shared folders) too.
            let (_, listed) = replicator.mboxlist()?;
            let shared: std::collections::BTreeSet<String> = listed
                .iter()
                .filter(|l| !l.is_tombstone() && user_of_mailbox(&l.name).is_none())
                .map(|l| l.name.clone())
                .collect();
            if users.is_empty() && shared.is_empty() {
                return Err(Error::Usage(format!(
                    "no users in the Cyrus spool of {} (ctl_mboxlist -d lists no user.* mailbox)",
                    replicator.job.conf.path.display()
                )));
            }
            let work = Work { users: users.into_iter().collect(), mailboxes: shared, ..Work::default() };
            replicator.pass(&work, true, console)?
        }
        "-u" | "-s" => {
            let (_, listed) = replicator.mboxlist()?;
            let known: BTreeSet<String> = listed
                .iter()
                .filter(|l| !l.is_tombstone())
                .filter_map(|l| user_of_mailbox(&l.name))
                .chain(replicator.db().notes("u:")?.into_iter().map(|(k, _)| k[2..].to_string()))
                .collect();
            if let Some(unknown) = objects.iter().find(|u| !known.contains(*u)) {
                return Err(Error::Usage(format!("unknown user {unknown:?}: no mailbox of it in the Cyrus spool")));
            }
            let mut work = Work::default();
            if mode == "-u" {
                work.users = objects.iter().cloned().collect();
            } else {
                work.sieve = objects.iter().cloned().collect();
                let sieve_boxes = listed.iter().filter(|l| l.name.ends_with(".#sieve") && !l.is_tombstone());
                for l in sieve_boxes {
                    if user_of_mailbox(&l.name).is_some_and(|u| objects.contains(&u)) {
                        work.mailboxes.insert(l.name.clone());
                    }
                }
            }
            replicator.pass(&work, true, console)?
        }
        "-m" => {
            let found =
                replicator.job.tools.mbpath(objects, false).map_err(|e| Error::Safety(format!("mbpath: {e}")))?;
            let notes = replicator.db().notes("m:")?;
            if let Some(unknown) =
                objects.iter().find(|m| !found.contains_key(*m) && !notes.iter().any(|(k, _)| &k[2..] == m.as_str()))
            {
                return Err(Error::Usage(format!("unknown mailbox {unknown:?}: Cyrus does not know it")));
            }
            let work = Work { mailboxes: objects.iter().cloned().collect(), ..Work::default() };
            replicator.pass(&work, true, console)?
        }
        _ => unreachable!("modes checked by the caller"),
    };
    let t = &passed.outcome.tally;
    if t.copied + t.deleted + t.renamed + t.folders_created > 0 {
        replicator.flush()?;
    }
    Ok(report(console, verbosity, "", &passed))
}
