//! Rolling replication (`pairsync mail -r`): cycles driven by the sync log until the shutdown
//! file appears, as Cyrus `sync_client -r` runs.
//!
//! A cycle: the shutdown file is looked for first (present: removed, and the loop ends, any
//! log not yet processed left as it is); then the log is taken (a leftover `log-run` first),
//! merged into work, and replicated user by user, trusting the state for the replica; the
//! `log-run` is unlinked only once the cycle succeeded. Cycles start at least `delay` apart;
//! one that runs past `timeout` stops at the next user and queues the rest in the log again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::core::error::{Error, Result};
use crate::engine::sync::Reporter;
use crate::mail::names::Mailbox;
use crate::mail::replicate::{Passed, Replicator};
use crate::mail::synclog::{self, LogLine, Malformed, Verb, Work};
use crate::mail::watch::StoreWatch;

/// How `-r` runs.
#[derive(Debug, Clone)]
pub struct Rolling {
    /// The sync log (`log`; `log-run` beside it).
    pub log: PathBuf,
    /// `-1`: one log file, then return.
    pub once: bool,
    /// `-F`: checked at the top of each cycle.
    pub shutdown: Option<PathBuf>,
    /// `-t`: a cycle running longer is cut at the next user.
    pub timeout: Duration,
    /// `-d`: the least time from one cycle's start to the next's.
    pub delay: Duration,
}

/// What the caller is told as cycles go.
pub trait Narrator: Reporter {
    /// A line of the log that could not be read: skipped.
    fn malformed(&self, _log: &Path, _line: &Malformed) {}
    /// A note (a verb with nothing to do for this layout, a skipped mailbox, a requeue).
    fn note(&self, _message: &str) {}
    /// A cycle ended, after `took`.
    fn cycle(&self, _passed: &Passed, _took: Duration) {}
}

/// Why the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The shutdown file appeared (and was removed).
    Shutdown,
    /// `-1`: the one log file was processed (or there was none).
    Once,
    /// Asked to stop (a signal).
    Stopped,
}

/// What runs one cycle over a log's lines: the Maildir replicator, or the Cyrus one.
pub trait Cycles {
    fn run_cycle(&self, lines: &[LogLine], rolling: Option<&Rolling>, narrator: &dyn Narrator) -> Result<Passed>;
}

impl Cycles for Replicator {
    fn run_cycle(&self, lines: &[LogLine], rolling: Option<&Rolling>, narrator: &dyn Narrator) -> Result<Passed> {
        cycle(self, lines, rolling, narrator)
    }
}

/// Runs cycles until the shutdown file, `-1`'s one log, or a stop. Returns how it ended and
/// what all cycles did together.
pub fn roll(
    replicator: &dyn Cycles,
    how: &Rolling,
    feed: Option<&StoreWatch>,
    narrator: &dyn Narrator,
) -> Result<(End, Passed)> {
    let mut total = Passed::default();
    loop {
        let started = Instant::now();
        if let Some(shutdown) = &how.shutdown {
            if shutdown.exists() {
                std::fs::remove_file(shutdown)
                    .map_err(|e| Error::Usage(format!("shutdown file {}: {e}", shutdown.display())))?;
                return Ok((End::Shutdown, total));
            }
        }
        if narrator.should_stop() {
            return Ok((End::Stopped, total));
        }
        let taken = synclog::take(&how.log).map_err(|e| log_error(&how.log, e))?;
        // What inotify saw joins the log's lines, as MAILBOX lines would.
        let watched: Vec<LogLine> = feed
            .map(StoreWatch::drain)
            .unwrap_or_default()
            .into_iter()
            .map(|name| LogLine { verb: Verb::Mailbox, args: vec![name] })
            .collect();
        match taken {
            None if how.once && watched.is_empty() => return Ok((End::Once, total)),
            None if watched.is_empty() => {}
            None => {
                let started_cycle = Instant::now();
                let passed = replicator.run_cycle(&watched, Some(how), narrator)?;
                narrator.cycle(&passed, started_cycle.elapsed());
                total.add(passed.outcome, passed.mailboxes);
            }
            Some(taken) => {
                for bad in &taken.malformed {
                    narrator.malformed(&taken.path, bad);
                }
                let lines: Vec<LogLine> = taken.lines.iter().cloned().chain(watched).collect();
                let started_cycle = Instant::now();
                let passed = replicator.run_cycle(&lines, Some(how), narrator)?;
                narrator.cycle(&passed, started_cycle.elapsed());
                let stopped = passed.outcome.interrupted;
                total.add(passed.outcome, passed.mailboxes);
                if stopped {
                    // What was not done is still in log-run, for the next start.
                    return Ok((End::Stopped, total));
                }
                taken.done().map_err(|e| log_error(&how.log, e))?;
                if how.once {
                    return Ok((End::Once, total));
                }
            }
        }
        // Wait out the delay, looking for a stop request now and then; never less than a
        // moment, so that -d 0 polls an idle log rather than spins on it.
        let delay = how.delay.max(Duration::from_millis(500));
        while started.elapsed() < delay {
            if narrator.should_stop() {
                return Ok((End::Stopped, total));
            }
            std::thread::sleep(delay.saturating_sub(started.elapsed()).min(Duration::from_millis(200)));
        }
    }
}

fn log_error(log: &Path, e: std::io::Error) -> Error {
    Error::Usage(format!("sync log {}: {e}", log.display()))
}

/// One cycle over the lines of a log: the work merged, then replicated user by user. With
/// `rolling`, the state is trusted for the replica and the timeout applies; without (`-f`
/// given to a one-off pass) it is the same but with no requeue.
pub fn cycle(
    replicator: &Replicator,
    lines: &[LogLine],
    rolling: Option<&Rolling>,
    narrator: &dyn Narrator,
) -> Result<Passed> {
    let work = synclog::merge(lines);
    let started = Instant::now();
    let mut passed = Passed::default();
    let plan = users_of(replicator, &work, narrator)?;
    let mut users = plan.into_iter();
    while let Some((user, mailboxes)) = users.next() {
        if let Some(rolling) = rolling {
            if started.elapsed() > rolling.timeout {
                requeue(&rolling.log, std::iter::once((user, mailboxes)).chain(users), narrator)?;
                break;
            }
        }
        if narrator.should_stop() {
            passed.outcome.interrupted = true;
            break;
        }
        // A user the log does not remove on purpose (UNUSER) must still be in the store.
        if !work.unusers.iter().any(|u| replicator.job.layout.user_name(u) == user) {
            replicator.check_user_present(&user)?;
        }
        let outcome = match replicator.user(&mailboxes, false, narrator) {
            Ok(outcome) => outcome,
            // A failing mailbox is retried as its user: every mailbox, the replica listed.
            Err(first) => {
                narrator.note(&format!("{user}: {}; retried as the whole user", first.chain()));
                let all = all_mailboxes(replicator, &user)?;
                replicator.user(&all, true, narrator)?
            }
        };
        passed.add(outcome, mailboxes.len());
        // USER, META and SIEVE lines also mean the user's Sieve scripts.
        if [&work.users, &work.meta, &work.sieve]
            .iter()
            .any(|set| set.iter().any(|u| replicator.job.layout.user_name(u) == user))
        {
            let sieve = replicator.sieve(&user, narrator)?;
            passed.add(sieve, 0);
        }
    }
    Ok(passed)
}

/// The work as (user -> mailboxes), each mailbox resolved through the layout; a user named by
/// USER or UNUSER gets every mailbox the store or the state knows of.
fn users_of(replicator: &Replicator, work: &Work, narrator: &dyn Narrator) -> Result<BTreeMap<String, Vec<Mailbox>>> {
    let layout = &replicator.job.layout;
    let mut users: BTreeMap<String, Vec<Mailbox>> = BTreeMap::new();
    for user in work.users.iter().chain(&work.unusers).chain(&work.sieve).chain(&work.meta) {
        let user = layout.user_name(user);
        // A user no store can hold (from a hostile or broken line) is skipped like a bad
        // mailbox name, not a reason to stop replicating everyone else.
        if let Err(e) = layout.user_root(&user) {
            narrator.note(&format!("{user}: {e}; skipped"));
            continue;
        }
        if let std::collections::btree_map::Entry::Vacant(entry) = users.entry(user) {
            let all = all_mailboxes(replicator, entry.key())?;
            entry.insert(all);
        }
    }
    // A renamed mailbox takes its children along in Maildir++ (`.Work` -> `.Job` moves
    // `.Work.2024` too) while the log names only the parent: its user is looked at whole, where
    // every renamed folder is matched to its new name.
    for (old, _) in &work.renames {
        if let Ok(mailbox) = layout.mailbox(old) {
            if let std::collections::btree_map::Entry::Vacant(entry) = users.entry(mailbox.user) {
                let all = all_mailboxes(replicator, entry.key())?;
                entry.insert(all);
            }
        }
    }
    let renamed = work.renames.iter().flat_map(|(old, new)| [old, new]);
    let named = work.mailboxes.iter().chain(&work.unmailboxes).chain(renamed);
    for name in named {
        match layout.mailbox(name) {
            Ok(mailbox) => {
                let list = users.entry(mailbox.user.clone()).or_default();
                if !list.iter().any(|m| m.folder == mailbox.folder) {
                    list.push(mailbox);
                }
            }
            Err(e) => narrator.note(&format!("{name}: {e}; skipped")),
        }
    }
    // SUB and UNSUB change the user's subscriptions file, which lives in the INBOX folder.
    for user in work.subs.iter() {
        let user = layout.user_name(user);
        let inbox = layout.mailbox(&layout.name(&user, None)).map_err(|e| Error::Usage(e.to_string()))?;
        let list = users.entry(user).or_default();
        if !list.iter().any(|m| m.folder == inbox.folder) {
            list.push(inbox);
        }
    }
    for verb in [Verb::Quota, Verb::Annotation, Verb::Seen] {
        if work.has(verb) {
            narrator.note(&format!(
                "{verb}: nothing to replicate for a Maildir store (Dovecot keeps it in files already copied)"
            ));
        }
    }
    Ok(users)
}

/// Every mailbox of `user`: on the master now, and in the state (gone from the master since).
pub fn all_mailboxes(replicator: &Replicator, user: &str) -> Result<Vec<Mailbox>> {
    let layout = &replicator.job.layout;
    let mut all = layout.mailboxes(replicator.store(), user).unwrap_or_default();
    for recorded in replicator.recorded_mailboxes(user)? {
        if !all.iter().any(|m| m.folder == recorded.folder) {
            all.push(recorded);
        }
    }
    Ok(all)
}

/// Puts what a cut cycle did not reach back into the live log, for the next cycle.
fn requeue(log: &Path, rest: impl Iterator<Item = (String, Vec<Mailbox>)>, narrator: &dyn Narrator) -> Result<()> {
    let mut count = 0;
    for (_, mailboxes) in rest {
        for mailbox in mailboxes {
            synclog::append(log, Verb::Mailbox, &[&mailbox.name]).map_err(|e| log_error(log, e))?;
            count += 1;
        }
    }
    narrator.note(&format!("cycle timeout: {count} mailboxes queued again for the next cycle"));
    Ok(())
}
