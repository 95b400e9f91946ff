//! An item of the config file as the engine runs it: Item -> Job, here and nowhere else.

use std::path::Path;

use crate::config::{EndpointKind, Item, SideConfig};
use crate::core::check::FileCheck;
use crate::core::error::{Error, Result};
use crate::core::filter::Filter;
use crate::core::plan::PlanOptions;
use crate::core::versions::Backup;
use crate::endpoint::credentials::{Auth, Secret};
use crate::endpoint::spec::{EndpointSpec, FtpUrl, SpecError};
use crate::engine::job::{self, Job};

/// Where a side of an item is, parsed by the one parser of sides.
pub fn side_spec(side: &SideConfig) -> Result<EndpointSpec, SpecError> {
    match side.kind {
        EndpointKind::Directory => EndpointSpec::parse(&side.directory).map(|(spec, _)| spec),
        EndpointKind::Ftp => FtpUrl::from_fields(
            side.tls,
            side.username.as_deref(),
            side.server.as_deref().unwrap_or_default(),
            &side.directory,
        )
        .map(EndpointSpec::Ftp),
    }
}

/// A side for `list` and `show`: its URL, without a password (a local folder as written).
pub fn shown(side: &SideConfig) -> String {
    match (side.kind, side_spec(side)) {
        (EndpointKind::Ftp, Ok(spec)) => spec.url(),
        _ => side.directory.clone(),
    }
}

fn auth(side: &SideConfig) -> Auth {
    Auth {
        password: side.password.as_ref().map(Secret::new),
        password_env: side.password_env.clone(),
        insecure_tls: !side.tls_verify,
    }
}

/// The job that runs `item`: every field checked, each error naming the item and its field.
pub fn job(item: &Item, state_dir: &Path) -> Result<Job> {
    let field = |name: &str| format!("item {:?}: {name}", item.name);
    let spec =
        |side: &SideConfig, name: &str| side_spec(side).map_err(|e| Error::Usage(format!("{}: {e}", field(name))));
    let sides = [spec(&item.source, "source")?, spec(&item.destination, "destination")?];
    job::canonical_sides(&sides).map_err(|e| Error::Usage(format!("item {:?}: {e}", item.name)))?;
    let check =
        |side: &SideConfig, name: &str| side.check.as_deref().map(|s| FileCheck::parse(&field(name), s)).transpose();
    let checks = [check(&item.source, "source.check")?, check(&item.destination, "destination.check")?];
    let patterns = item
        .source
        .ignore
        .iter()
        .map(|p| ("source.ignore", p.as_str()))
        .chain(item.destination.ignore.iter().map(|p| ("destination.ignore", p.as_str())));
    let backup = item.backup_dir.as_deref().map(|dir| Backup::new(dir, item.backup_keep)).transpose();
    let backup = backup.map_err(|why| Error::Usage(format!("item {:?}: backup_dir {why}", item.name)))?;
    Ok(Job {
        sides,
        auth: [auth(&item.source), auth(&item.destination)],
        mode: item.mode,
        options: PlanOptions { conflict: item.conflict, ..PlanOptions::default() },
        filter: Filter::for_pair(patterns, &checks, item.recursive)?.with_globs(
            item.exclude.iter().map(|g| ("exclude", g.as_str())),
            item.include.iter().map(|g| ("include", g.as_str())),
        )?,
        checks,
        max_delete: item.max_delete,
        force: false,
        dry_run: false,
        state_dir: state_dir.to_path_buf(),
        connections: usize::from(item.connections.unwrap_or(4)),
        scope: None,
        notices: Vec::new(),
        backup,
    })
}
