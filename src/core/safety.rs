//! Safety stops: a plan that looks like an accident (an unmounted drive, a mass deletion) is not
//! applied. `--force` overrides these; a missing root is never overridden (see `sync`).

use crate::core::error::{Error, Result};
use crate::core::model::{Kind, Side, Snapshot, State};
use crate::core::plan::Plan;

/// Refuses `plan` when a side is empty while the state says it held files, or when it would
/// delete more than `max_delete` percent of a side's files. A run scoped to a few paths gives
/// `whole`, the pair's recorded files: its snapshots are partial, so "empty" means nothing and
/// percentages are of the whole pair.
pub fn check(plan: &Plan, state: &State, sides: [&Snapshot; 2], max_delete: u8, whole: Option<usize>) -> Result<()> {
    let recorded_files = state.values().filter(|r| r.kind == Kind::File).count();
    let files = match whole {
        Some(total) => [total; 2],
        None => sides.map(|snapshot| snapshot.values().filter(|e| e.kind == Kind::File).count()),
    };
    // An emptied side first: it explains the mass deletion it would cause on the other.
    for side in Side::BOTH {
        if whole.is_none() && files[side.index()] == 0 && recorded_files > 0 {
            return Err(Error::Safety(format!(
                "the {side} holds no files but the state says it held {recorded_files} (an unmounted drive?); \
                 use --force if that is intended"
            )));
        }
    }
    for side in Side::BOTH {
        let files = files[side.index()];
        let deletions = plan.deletions(side);
        if deletions > 0 && deletions * 100 > usize::from(max_delete) * files {
            return Err(Error::Safety(format!(
                "would delete {deletions} of {files} files on the {side} ({}%), above --max-delete {max_delete}%; \
                 use --force if that is intended",
                deletions * 100 / files.max(1)
            )));
        }
    }
    Ok(())
}
