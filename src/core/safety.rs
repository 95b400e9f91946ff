//! Safety stops: a plan that looks like an accident (an unmounted drive, a mass deletion) is not
//! applied. `--force` overrides these; a missing root is never overridden (see `sync`).

use std::fmt;
use std::str::FromStr;

use crate::core::error::{Error, Result};
use crate::core::model::{Kind, Side, Snapshot, State};
use crate::core::plan::Plan;

/// How many deletions on a side a run may make before it stops: a share of the side's files
/// (`50%`, the default) or, as rsync's `--max-delete` means it, a count of files (`50`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxDelete {
    Percent(u8),
    Count(usize),
}

impl Default for MaxDelete {
    fn default() -> Self {
        MaxDelete::Percent(50)
    }
}

impl fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxDelete::Percent(p) => write!(f, "{p}%"),
            MaxDelete::Count(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for MaxDelete {
    type Err = String;

    /// `N%` (0 to 100) or a count `N`.
    fn from_str(text: &str) -> std::result::Result<MaxDelete, String> {
        let text = text.trim();
        match text.strip_suffix('%') {
            Some(pct) => match pct.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(MaxDelete::Percent(p)),
                _ => Err(format!("{text:?} is not a percentage from 0% to 100%")),
            },
            None => text
                .parse::<usize>()
                .map(MaxDelete::Count)
                .map_err(|_| format!("{text:?} is neither N% (a share of a side's files) nor a count N of files")),
        }
    }
}

impl MaxDelete {
    /// The percentage, when it is one above 100 (only a hand-made value can be).
    pub fn percent_over_100(self) -> Option<u8> {
        match self {
            MaxDelete::Percent(p) if p > 100 => Some(p),
            _ => None,
        }
    }

    /// True when `deletions` of a side's `files` is more than this allows.
    fn exceeded(self, deletions: usize, files: usize) -> bool {
        match self {
            MaxDelete::Percent(p) => deletions * 100 > usize::from(p) * files,
            MaxDelete::Count(n) => deletions > n,
        }
    }
}

/// The pair's size as the safety stops count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Files each side holds.
    pub files: [usize; 2],
    /// Files the state records.
    pub recorded: usize,
    /// The counts are the whole pair's, side by side: an empty side means something. A run
    /// scoped to a few paths knows only the pair's recorded files, for both sides.
    pub whole_sides: bool,
}

impl Counts {
    /// Counted from whole snapshots and state.
    pub fn of(state: &State, sides: [&Snapshot; 2]) -> Counts {
        Counts {
            files: sides.map(|snapshot| snapshot.values().filter(|e| e.kind == Kind::File).count()),
            recorded: state.values().filter(|r| r.kind == Kind::File).count(),
            whole_sides: true,
        }
    }

    /// A scoped run: its snapshots are partial, so percentages are of the pair's `recorded`
    /// files and "empty" means nothing.
    pub fn scoped(recorded: usize) -> Counts {
        Counts { files: [recorded; 2], recorded, whole_sides: false }
    }
}

/// Refuses `plan` when a side is empty while the state says it held files, or when it would
/// delete more of a side's files than `max_delete` allows.
pub fn check(plan: &Plan, counts: Counts, max_delete: MaxDelete) -> Result<()> {
    let (files, recorded_files) = (counts.files, counts.recorded);
    // An emptied side first: it explains the mass deletion it would cause on the other.
    for side in Side::BOTH {
        if counts.whole_sides && files[side.index()] == 0 && recorded_files > 0 {
            return Err(Error::Safety(format!(
                "the {side} holds no files but the state says it held {recorded_files} (an unmounted drive?); \
                 use --force if that is intended"
            )));
        }
    }
    for side in Side::BOTH {
        let files = files[side.index()];
        let deletions = plan.deletions(side);
        if deletions > 0 && max_delete.exceeded(deletions, files) {
            return Err(Error::Safety(format!(
                "would delete {deletions} of {files} files on the {side} ({}%), above --max-delete {max_delete}; \
                 use --force if that is intended",
                deletions * 100 / files.max(1)
            )));
        }
    }
    Ok(())
}
