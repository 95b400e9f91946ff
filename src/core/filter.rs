//! Ignore lists: regexes matched against the '/'-separated path relative to a side's root.
//!
//! A path ignored by the global list or by either side's list is invisible to the whole pair:
//! never scanned, copied or deleted, and its state record is hidden, so a path that becomes
//! ignored is not taken for deleted. A folder is tested both as `name` and as `name/`, so
//! `^cache/` and `^cache$` both hide the folder `cache` with everything inside it.

use regex::RegexSet;

use crate::core::check::FileCheck;
use crate::core::error::{Error, Result};
use crate::core::model::Kind;

#[derive(Debug, Clone)]
pub struct Filter {
    set: RegexSet,
    /// False: only the files directly in the root are synced (`--no-recursive`).
    recursive: bool,
}

impl Filter {
    /// Compiles the patterns; `flag` names where each came from, for the error message.
    pub fn new<F: AsRef<str>, P: AsRef<str>>(
        patterns: impl IntoIterator<Item = (F, P)>,
        recursive: bool,
    ) -> Result<Filter> {
        let mut all = Vec::new();
        for (flag, pattern) in patterns {
            let (flag, pattern) = (flag.as_ref(), pattern.as_ref());
            if let Err(err) = regex::Regex::new(pattern) {
                let first =
                    err.to_string().lines().last().unwrap_or_default().trim().trim_start_matches("error: ").to_string();
                return Err(Error::Usage(format!("{flag} {pattern:?}: invalid regex: {first}")));
            }
            all.push(pattern.to_string());
        }
        let set = RegexSet::new(&all).map_err(|e| Error::Usage(format!("ignore list: {e}")))?;
        Ok(Filter { set, recursive })
    }

    /// The filter of a pair: its ignore patterns (each with the flag or field it came from),
    /// and the check files inside its roots, which mark a drive and are never synced.
    pub fn for_pair<'a>(
        patterns: impl Iterator<Item = (&'a str, &'a str)>,
        checks: &[Option<FileCheck>; 2],
        recursive: bool,
    ) -> Result<Filter> {
        let markers = checks.iter().flatten().filter_map(FileCheck::ignore_pattern);
        Filter::new(patterns.map(|(f, p)| (f, p.to_string())).chain(markers.map(|m| ("file check", m))), recursive)
    }

    /// This filter plus more patterns (the state folder inside a root, say).
    pub fn with(&self, more: impl IntoIterator<Item = (&'static str, String)>) -> Result<Filter> {
        let current = self.set.patterns().iter().map(|p| ("ignore list", p.clone()));
        Filter::new(current.chain(more), self.recursive)
    }

    pub fn recursive(&self) -> bool {
        self.recursive
    }

    /// True when the scan must not report this path (its parents were already admitted).
    pub fn ignores(&self, path: &str, kind: Kind) -> bool {
        if !self.recursive && (kind == Kind::Dir || path.contains('/')) {
            return true;
        }
        if self.set.is_empty() {
            return false;
        }
        self.set.is_match(path) || (kind == Kind::Dir && self.set.is_match(&format!("{path}/")))
    }

    /// True when an ignore pattern (not --no-recursive) hides the path or a parent folder.
    pub fn hides_by_pattern(&self, path: &str, kind: Kind) -> bool {
        let matches = |p: &str, k: Kind| {
            !self.set.is_empty() && (self.set.is_match(p) || (k == Kind::Dir && self.set.is_match(&format!("{p}/"))))
        };
        matches(path, kind) || crate::core::model::ancestors(path).any(|dir| matches(dir, Kind::Dir))
    }

    /// True when the path or one of its parent folders is ignored: for state records, which
    /// were not found by a scan that pruned ignored folders.
    pub fn hides(&self, path: &str, kind: Kind) -> bool {
        self.ignores(path, kind) || crate::core::model::ancestors(path).any(|dir| self.ignores(dir, Kind::Dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str]) -> Filter {
        Filter::new(patterns.iter().map(|p| ("--ignore", *p)), true).unwrap()
    }

    #[test]
    fn suffix_pattern_ignores_files_everywhere() {
        let f = filter(&[r"\.db$"]);
        assert!(f.ignores("a.db", Kind::File));
        assert!(f.ignores("x/y/a.db", Kind::File));
        assert!(!f.ignores("a.dbx", Kind::File));
    }

    #[test]
    fn folder_pattern_hides_the_folder_and_its_content() {
        let f = filter(&["^cache/"]);
        assert!(f.ignores("cache", Kind::Dir));
        assert!(!f.ignores("cache", Kind::File));
        assert!(f.hides("cache/a/b.txt", Kind::File));
        assert!(!f.hides("cachet/b.txt", Kind::File));
    }

    #[test]
    fn not_recursive_keeps_only_top_level_files() {
        let f = Filter::new([("", ""); 0], false).unwrap();
        assert!(!f.ignores("a.txt", Kind::File));
        assert!(f.ignores("d", Kind::Dir));
        assert!(f.hides("d/a.txt", Kind::File));
    }

    #[test]
    fn bad_regex_names_flag_and_pattern() {
        let err = Filter::new([("--ignore-source", "a(")], true).unwrap_err().to_string();
        assert!(err.starts_with("--ignore-source \"a(\": invalid regex"), "{err}");
    }
}
