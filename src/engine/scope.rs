//! Which part of a pair a scoped run (a watcher's batch of changed paths) lists and plans.

use std::collections::HashSet;

use crate::core::model::{ancestors, parent};

/// What a scoped run lists: folders to list shallowly (the changed paths' parents), paths to
/// list deeply (the changed paths, where they are folders).
pub fn scope_parts(paths: &[String]) -> (Vec<String>, Vec<String>) {
    let mut shallow: Vec<String> = paths.iter().map(|p| parent(p).unwrap_or("").to_string()).collect();
    shallow.sort();
    shallow.dedup();
    let mut deep = paths.to_vec();
    deep.sort();
    deep.dedup();
    (shallow, deep)
}

/// The paths a scoped run plans: entries of a shallow folder, the deep paths and everything
/// below them, and the folders on the way to either. Set lookups only: a batch of thousands of
/// paths must not cost thousands of comparisons per record.
pub struct Scope<'a> {
    shallow: HashSet<&'a str>,
    deep: HashSet<&'a str>,
    on_the_way: HashSet<&'a str>,
}

impl<'a> Scope<'a> {
    pub fn new(shallow: &'a [String], deep: &'a [String]) -> Scope<'a> {
        let on_the_way =
            shallow.iter().chain(deep).flat_map(|p| ancestors(p).chain(std::iter::once(p.as_str()))).collect();
        Scope {
            shallow: shallow.iter().map(String::as_str).collect(),
            deep: deep.iter().map(String::as_str).collect(),
            on_the_way,
        }
    }

    pub fn contains(&self, path: &str) -> bool {
        self.shallow.contains(parent(path).unwrap_or(""))
            || self.on_the_way.contains(path)
            || std::iter::once(path).chain(ancestors(path)).any(|p| self.deep.contains(p))
    }
}
