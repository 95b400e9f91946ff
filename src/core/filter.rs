//! Ignore lists: regexes matched against the '/'-separated path relative to a side's root.
//!
//! A path ignored by the global list or by either side's list is invisible to the whole pair:
//! never scanned, copied or deleted, and its state record is hidden, so a path that becomes
//! ignored is not taken for deleted. A folder is tested both as `name` and as `name/`, so
//! `^cache/` and `^cache$` both hide the folder `cache` with everything inside it.
//!
//! Beside the regexes, globs as rsync and rclone users write them (`--exclude '*.tmp'`,
//! `--include '*.jpg'`): a glob without '/' at its start matches at any depth (`*.tmp` hides
//! `a/b/x.tmp`), one starting with '/' only from the root, one ending in '/' only folders; `*`
//! stays within a name, `**` crosses folders. An excluded path is hidden like an ignored one;
//! with includes given, a file no include matches is hidden too (folders are always walked).
//! An exclude wins over an include.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::RegexSet;

use crate::core::check::FileCheck;
use crate::core::error::{Error, Result};
use crate::core::model::Kind;

#[derive(Debug, Clone)]
pub struct Filter {
    set: RegexSet,
    /// `--exclude` globs: for any entry, and for folders only.
    exclude: Option<(GlobSet, GlobSet)>,
    /// `--include` globs: a file none matches is hidden.
    include: Option<GlobSet>,
    /// False: only the files directly in the root are synced (`--no-recursive`).
    recursive: bool,
}

/// The globs of one list: those for any entry, and those (ending in '/') for folders only.
fn globs<'a>(list: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Option<(GlobSet, GlobSet)>> {
    let (mut any, mut dirs, mut count) = (GlobSetBuilder::new(), GlobSetBuilder::new(), 0);
    for (flag, pattern) in list {
        let dir_only = pattern.ends_with('/');
        let trimmed = pattern.trim_end_matches('/');
        let glob = match trimmed.strip_prefix('/') {
            Some(anchored) => anchored.to_string(),
            None => format!("**/{trimmed}"),
        };
        if trimmed.is_empty() {
            return Err(Error::Usage(format!("{flag} {pattern:?}: an empty glob")));
        }
        let built = GlobBuilder::new(&glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| Error::Usage(format!("{flag} {pattern:?}: invalid glob: {}", e.kind())))?;
        if dir_only {
            dirs.add(built);
        } else {
            any.add(built);
        }
        count += 1;
    }
    if count == 0 {
        return Ok(None);
    }
    let build = |b: GlobSetBuilder| b.build().map_err(|e| Error::Usage(format!("glob list: {e}")));
    Ok(Some((build(any)?, build(dirs)?)))
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
                // `*.tmp` is a glob an rsync user meant: say which flag takes it.
                let hint = if pattern.starts_with('*') || pattern.starts_with("?") {
                    format!(" (a glob? --exclude {pattern:?} takes globs)")
                } else {
                    String::new()
                };
                return Err(Error::Usage(format!("{flag} {pattern:?}: invalid regex: {first}{hint}")));
            }
            all.push(pattern.to_string());
        }
        let set = RegexSet::new(&all).map_err(|e| Error::Usage(format!("ignore list: {e}")))?;
        Ok(Filter { set, exclude: None, include: None, recursive })
    }

    /// This filter with `--exclude` and `--include` globs (each with the flag or field it came
    /// from).
    pub fn with_globs<'a>(
        mut self,
        exclude: impl IntoIterator<Item = (&'a str, &'a str)>,
        include: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Filter> {
        self.exclude = globs(exclude)?;
        // Includes select files: a folder-only include (`photos/`) selects none, so only the
        // globs for any entry count.
        self.include = globs(include)?.map(|(any, _)| any);
        Ok(self)
    }

    /// True when a pattern or a glob hides this entry itself (its parents aside).
    fn pattern_hides(&self, path: &str, kind: Kind) -> bool {
        let regex = !self.set.is_empty()
            && (self.set.is_match(path) || (kind == Kind::Dir && self.set.is_match(&format!("{path}/"))));
        let excluded = self
            .exclude
            .as_ref()
            .is_some_and(|(any, dirs)| any.is_match(path) || (kind == Kind::Dir && dirs.is_match(path)));
        let not_included = kind == Kind::File && self.include.as_ref().is_some_and(|include| !include.is_match(path));
        regex || excluded || not_included
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
        let set = Filter::new(current.chain(more), self.recursive)?.set;
        Ok(Filter { set, ..self.clone() })
    }

    pub fn recursive(&self) -> bool {
        self.recursive
    }

    /// True when the scan must not report this path (its parents were already admitted).
    pub fn ignores(&self, path: &str, kind: Kind) -> bool {
        if !self.recursive && (kind == Kind::Dir || path.contains('/')) {
            return true;
        }
        self.pattern_hides(path, kind)
    }

    /// True when an ignore pattern or glob (not --no-recursive) hides the path or a parent
    /// folder.
    pub fn hides_by_pattern(&self, path: &str, kind: Kind) -> bool {
        self.pattern_hides(path, kind)
            || crate::core::model::ancestors(path).any(|dir| self.pattern_hides(dir, Kind::Dir))
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
    fn globs_as_rsync_and_rclone_users_write_them() {
        let f = |exclude: &[&str], include: &[&str]| {
            Filter::new([("", ""); 0], true)
                .unwrap()
                .with_globs(exclude.iter().map(|g| ("--exclude", *g)), include.iter().map(|g| ("--include", *g)))
                .unwrap()
        };
        for (name, filter, path, kind, hidden) in [
            ("a name glob matches at any depth", f(&["*.tmp"], &[]), "a/b/x.tmp", Kind::File, true),
            ("* does not cross a folder", f(&["a*b"], &[]), "a/b", Kind::File, false),
            ("* stays within a name, below", f(&["*.tmp"], &[]), "x.tmp/keep", Kind::File, false),
            ("an anchored glob only from the root", f(&["/build"], &[]), "src/build", Kind::Dir, false),
            ("an anchored glob at the root", f(&["/build"], &[]), "build", Kind::Dir, true),
            ("a folder glob leaves files of that name", f(&["cache/"], &[]), "cache", Kind::File, false),
            ("a folder glob hides the folder", f(&["cache/"], &[]), "x/cache", Kind::Dir, true),
            ("** crosses folders", f(&["/a/**/z"], &[]), "a/b/c/z", Kind::File, true),
            ("a file no include matches is hidden", f(&[], &["*.jpg"]), "a/b.png", Kind::File, true),
            ("an included file is kept", f(&[], &["*.jpg"]), "a/b.jpg", Kind::File, false),
            ("folders are walked whatever the includes", f(&[], &["*.jpg"]), "a", Kind::Dir, false),
            ("an exclude wins over an include", f(&["secret*"], &["*.jpg"]), "secret.jpg", Kind::File, true),
        ] {
            assert_eq!(filter.ignores(path, kind), hidden, "{name}");
        }
        // The contents of an excluded folder are hidden with it (state records included).
        assert!(f(&["cache/"], &[]).hides_by_pattern("x/cache/y/z", Kind::File));
        let err = Filter::new([("--ignore", "*.tmp")], true).unwrap_err().to_string();
        assert!(err.contains("(a glob? --exclude \"*.tmp\" takes globs)"), "{err}");
        assert!(Filter::new([("", ""); 0], true).unwrap().with_globs([("--exclude", "[")], []).is_err());
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
