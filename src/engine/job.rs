//! A job: everything one run of a pair needs, resolved and validated by whoever built it (the
//! command line, a config item, the mail replicator), in plain types. The engine reads no
//! config file and no flag.

use std::path::{Path, PathBuf};

use crate::core::check::FileCheck;
use crate::core::filter::Filter;
use crate::core::plan::{Mode, PlanOptions};
use crate::core::safety::MaxDelete;
use crate::core::versions::Backup;
use crate::endpoint::credentials::Auth;
use crate::endpoint::spec::{self, EndpointSpec, PairError};
use crate::state::pair_id;

#[derive(Debug, Clone)]
pub struct Job {
    /// The source and the destination, in that order.
    pub sides: [EndpointSpec; 2],
    /// Where each FTP side gets its password (besides ~/.netrc), and whether its certificate is
    /// checked.
    pub auth: [Auth; 2],
    pub mode: Mode,
    pub options: PlanOptions,
    pub filter: Filter,
    pub checks: [Option<FileCheck>; 2],
    pub max_delete: MaxDelete,
    pub force: bool,
    pub dry_run: bool,
    pub state_dir: PathBuf,
    /// Connections to an FTP side at most (parallel transfers).
    pub connections: usize,
    /// Only these paths (relative, as a watcher saw them change) are rescanned and planned:
    /// the entries of their folders, and everything below those that are folders.
    pub scope: Option<Vec<String>>,
    /// Said as warnings when the run starts (e.g. that a URL held a password).
    pub notices: Vec<String>,
    /// Keep what a run overwrites or deletes (`--backup-dir`); `None`: nothing is kept.
    pub backup: Option<Backup>,
}

/// The sides with local paths canonical, refused if they would sync a folder with itself.
pub fn canonical_sides(sides: &[EndpointSpec; 2]) -> Result<[EndpointSpec; 2], PairError> {
    let sides = sides.clone().map(EndpointSpec::canonical);
    spec::check_pair(&sides[0], &sides[1])?;
    Ok(sides)
}

/// The id of the pair of these sides: its state database's name (and its lock's). A two-way
/// pair is the same pair in either order: `sync B A` after `sync A B` finds the state (and the
/// lock) `sync A B` made, whose records the state store reads with their sides exchanged.
pub fn pair_of(state_dir: &Path, mode: Mode, sides: &[EndpointSpec; 2]) -> Result<String, PairError> {
    let [source, destination] = canonical_sides(sides)?;
    Ok(pair_id_in(state_dir, mode, [&source.url(), &destination.url()]))
}

/// [`pair_of`] for sides already canonical.
pub fn pair_id_in(state_dir: &Path, mode: Mode, urls: [&str; 2]) -> String {
    let ordered = pair_id(urls[0], urls[1]);
    if mode != Mode::TwoWay {
        return ordered;
    }
    let reverse = pair_id(urls[1], urls[0]);
    let known = |id: &str| {
        let pairs = state_dir.join("pairs");
        pairs.join(id).exists() || pairs.join(format!("{id}.lock")).exists()
    };
    if !known(&ordered) && known(&reverse) {
        reverse
    } else {
        ordered
    }
}
