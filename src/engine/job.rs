//! A job: everything one run of a pair needs, resolved and validated by whoever built it (the
//! command line, a config item, the mail replicator), in plain types. The engine reads no
//! config file and no flag.

use std::path::PathBuf;

use crate::core::check::FileCheck;
use crate::core::filter::Filter;
use crate::core::plan::{Mode, PlanOptions};
use crate::core::safety::MaxDelete;
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
}

/// The sides with local paths canonical, refused if they would sync a folder with itself.
pub fn canonical_sides(sides: &[EndpointSpec; 2]) -> Result<[EndpointSpec; 2], PairError> {
    let sides = sides.clone().map(EndpointSpec::canonical);
    spec::check_pair(&sides[0], &sides[1])?;
    Ok(sides)
}

/// The id of the pair of these sides: its state database's name.
pub fn pair_of(sides: &[EndpointSpec; 2]) -> Result<String, PairError> {
    let [source, destination] = canonical_sides(sides)?;
    Ok(pair_id(&source.url(), &destination.url()))
}
