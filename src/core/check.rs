//! File checks: `<FilePath>=[<Regex Content>]`. A side is synced only when the file exists and,
//! if a regex is given, its content matches: how a USB or backup drive is recognized before
//! anything is written to it.

use std::fmt;

use regex::{Regex, RegexBuilder};

use crate::core::error::{Error, Result};
use crate::core::model::Side;

/// At most this much of a check file is read.
pub const CHECK_FILE_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct FileCheck {
    /// Absolute, or relative to the side's root.
    pub path: String,
    pub content: Option<Regex>,
}

impl FileCheck {
    /// Parses `PATH` or `PATH=REGEX` (split at the first '='; an empty regex means "exists").
    pub fn parse(flag: &str, spec: &str) -> Result<FileCheck> {
        let (path, pattern) = match spec.split_once('=') {
            Some((path, pattern)) => (path, Some(pattern)),
            None => (spec, None),
        };
        if path.is_empty() {
            return Err(Error::Usage(format!("{flag} {spec:?}: no file path before '='")));
        }
        let content = match pattern.filter(|p| !p.is_empty()) {
            None => None,
            // Multi-line: `echo disk-1 > marker` leaves a newline that `^disk-1$` must accept.
            Some(p) => Some(RegexBuilder::new(p).multi_line(true).build().map_err(|e| {
                let why =
                    e.to_string().lines().last().unwrap_or_default().trim().trim_start_matches("error: ").to_string();
                Error::Usage(format!("{flag} {spec:?}: invalid content regex: {why}"))
            })?),
        };
        Ok(FileCheck { path: path.to_string(), content })
    }

    /// For a check file inside the root: a pattern that hides exactly it from the pair.
    pub fn ignore_pattern(&self) -> Option<String> {
        let relative = self.path.trim_start_matches("./");
        (!std::path::Path::new(&self.path).is_absolute()).then(|| format!("^{}$", regex::escape(relative)))
    }

    /// Judges what was read of the check file (`None`: it does not exist).
    pub fn judge(&self, side: Side, found: Option<&[u8]>) -> Result<()> {
        let fail = |reason: String| Err(Error::Check { side, reason });
        match (found, &self.content) {
            (None, _) => fail(format!("{} does not exist", self.path)),
            (Some(_), None) => Ok(()),
            (Some(bytes), Some(re)) if re.is_match(&String::from_utf8_lossy(bytes)) => Ok(()),
            (Some(_), Some(re)) => fail(format!("content of {} does not match {:?}", self.path, re.as_str())),
        }
    }
}

impl fmt::Display for FileCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.content {
            Some(re) => write!(f, "{}={}", self.path, re.as_str()),
            None => f.write_str(&self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_and_regex() {
        let c = FileCheck::parse("--check-destination", "/mnt/usb/.marker=^disk-[0-9]+$").unwrap();
        assert_eq!(c.path, "/mnt/usb/.marker");
        assert!(c.judge(Side::Destination, Some(b"disk-42\n")).is_ok());
        assert!(c.judge(Side::Destination, Some(b"other")).is_err());
        assert!(c.judge(Side::Destination, None).is_err());
    }

    #[test]
    fn empty_regex_means_exists() {
        let c = FileCheck::parse("--check-source", ".marker=").unwrap();
        assert!(c.content.is_none());
        assert!(c.judge(Side::Source, Some(b"")).is_ok());
    }

    #[test]
    fn bad_specs_are_usage_errors() {
        assert!(matches!(FileCheck::parse("--check-source", "=x"), Err(Error::Usage(_))));
        let err = FileCheck::parse("--check-source", "m=(").unwrap_err().to_string();
        assert!(err.contains("--check-source") && err.contains("invalid content regex"), "{err}");
    }
}
