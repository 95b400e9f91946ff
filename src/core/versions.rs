//! Versions kept (`--backup-dir`, an item's `backup_dir`): the names only. A file a run would
//! overwrite or delete on a side is first moved, by a rename on that side, to
//! `<folder>/<run>/<path>`, where `<folder>` is relative to the side's root and `<run>` is the
//! run's start as `YYYY-MM-DD_HHMMSS` (`-2`, `-3`... for another run of the same second).
//! `--backup-keep N` leaves the newest N run folders. The moves and deletions themselves are
//! the engine's (`engine::versions`); here are the rules, as functions of their arguments.

/// What a job keeps: the versions folder (as [`folder`] writes it) and how many run folders
/// stay after a run that kept versions (`None`: all, as rclone's `--backup-dir` keeps all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub dir: String,
    pub keep: Option<usize>,
}

impl Backup {
    /// The versions folder `dir` as given (checked by [`folder`]), keeping `keep` run folders.
    pub fn new(dir: &str, keep: Option<u32>) -> Result<Backup, String> {
        Ok(Backup { dir: folder(dir)?, keep: keep.map(|n| n as usize) })
    }
}

/// `--backup-keep`: how many run folders stay, `N` (from 1) or `all` (`None`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep(pub Option<u32>);

impl std::str::FromStr for Keep {
    type Err = String;

    fn from_str(text: &str) -> Result<Keep, String> {
        match text.trim() {
            "all" => Ok(Keep(None)),
            n => match n.parse::<u32>() {
                Ok(0) => Err("0 would keep no run's versions: give N from 1, or all".into()),
                Ok(n) => Ok(Keep(Some(n))),
                Err(_) => Err(format!("{n:?} is neither a number of runs N nor all")),
            },
        }
    }
}

/// The `chrono` format of a run folder's name: the run's start, local time.
pub const STAMP_FORMAT: &str = "%Y-%m-%d_%H%M%S";

/// The versions folder as given, checked and written as a relative '/'-separated path with no
/// `.` or empty parts. It must lie inside each side's root, since a rename cannot leave an
/// endpoint: an absolute path, a `..` part or the root itself is refused, with the reason.
pub fn folder(given: &str) -> Result<String, String> {
    if given.starts_with('/') {
        return Err(format!(
            "{given:?} is absolute; give a folder relative to each side's root (old versions are moved by a \
             rename, which cannot leave the side), e.g. .versions"
        ));
    }
    if given.contains('\\') || given.contains('\0') {
        return Err(format!("{given:?}: a folder relative to each side's root, with '/' between names"));
    }
    let parts: Vec<&str> = given.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err(format!(
            "{given:?} leaves the side's root; old versions are moved by a rename, which cannot leave the side"
        ));
    }
    if parts.is_empty() {
        return Err(format!("{given:?} is the root itself; name a folder inside it, e.g. .versions"));
    }
    Ok(parts.join("/"))
}

/// The name of the `n`th run folder of the stamp (from 1): a second run in the same second
/// (a watched item) gets a folder of its own, so that each folder is one run.
pub fn run_folder(stamp: &str, n: u32) -> String {
    if n <= 1 {
        stamp.to_string()
    } else {
        format!("{stamp}-{n}")
    }
}

/// The stamp and number of a run folder's name; `None` for any other name, which pruning never
/// touches (whatever else a user keeps in the versions folder stays).
fn run_key(name: &str) -> Option<(&str, u32)> {
    let (stamp, n) = match name.get(17..) {
        Some("") => (name, 1),
        Some(rest) => (&name[..17], rest.strip_prefix('-')?.parse::<u32>().ok().filter(|n| *n >= 2)?),
        None => return None,
    };
    let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'_',
        _ => b.is_ascii_digit(),
    });
    shape.then_some((stamp, n))
}

/// True for a name [`run_folder`] makes.
pub fn is_run_folder(name: &str) -> bool {
    run_key(name).is_some()
}

/// The run folders among `names` to remove so that the newest `keep` remain, oldest first.
/// Names that are not run folders are neither counted nor returned.
pub fn to_prune<'a>(names: impl IntoIterator<Item = &'a str>, keep: usize) -> Vec<&'a str> {
    let mut runs: Vec<((&str, u32), &str)> = names.into_iter().filter_map(|n| Some((run_key(n)?, n))).collect();
    runs.sort_unstable();
    let old = runs.len().saturating_sub(keep);
    runs.into_iter().take(old).map(|(_, name)| name).collect()
}

/// Where the old file at `path` is kept: `<folder>/<run>/<path>`.
pub fn version_path(folder: &str, run: &str, path: &str) -> String {
    format!("{folder}/{run}/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_relative_and_inside_the_root() {
        for (given, want) in [
            (".versions", Ok(".versions")),
            ("./old//versions/", Ok("old/versions")),
            ("a/./b", Ok("a/b")),
            ("/srv/versions", Err("is absolute")),
            ("../versions", Err("leaves the side's root")),
            ("a/../../b", Err("leaves the side's root")),
            ("", Err("the root itself")),
            ("./", Err("the root itself")),
            ("a\\b", Err("with '/' between names")),
        ] {
            match (folder(given), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{given:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{given:?}: {got}"),
                (got, want) => panic!("{given:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn run_folders_are_the_stamp_then_numbered() {
        assert_eq!(run_folder("2024-05-01_120000", 1), "2024-05-01_120000");
        assert_eq!(run_folder("2024-05-01_120000", 2), "2024-05-01_120000-2");
        for name in ["2024-05-01_120000", "2024-05-01_120000-2", "2024-05-01_120000-11"] {
            assert!(is_run_folder(name), "{name}");
        }
        for name in [
            "2024-05-01_12000",
            "2024-05-01-120000",
            "2024-05-01_120000-",
            "2024-05-01_120000-1",
            "2024-05-01_120000-x",
            "2024-05-01_120000.bak",
            "notes",
            "2024-05-01_1200é0",
        ] {
            assert!(!is_run_folder(name), "{name}");
        }
    }

    #[test]
    fn pruning_keeps_the_newest_runs_and_nothing_else_is_touched() {
        let names = [
            "2024-05-02_080000",
            "2024-05-01_120000-10",
            "README",
            "2024-05-01_120000",
            "2024-05-01_120000-2",
            "2023-12-31_235959",
        ];
        assert_eq!(
            to_prune(names, 2),
            ["2023-12-31_235959", "2024-05-01_120000", "2024-05-01_120000-2"],
            "-10 is newer than -2"
        );
        assert_eq!(to_prune(names, 5), Vec::<&str>::new());
        assert_eq!(to_prune(names, 0).len(), 5);
    }

    #[test]
    fn keep_is_a_number_of_runs_or_all() {
        assert_eq!("3".parse(), Ok(Keep(Some(3))));
        assert_eq!("all".parse(), Ok(Keep(None)));
        assert!("0".parse::<Keep>().unwrap_err().contains("no run's versions"));
        assert!("-1".parse::<Keep>().is_err());
    }

    #[test]
    fn versions_keep_the_path_under_the_run() {
        assert_eq!(
            version_path(".versions", "2024-05-01_120000", "docs/a.txt"),
            ".versions/2024-05-01_120000/docs/a.txt"
        );
    }
}
