//! FTP directory listings: MLSD lines (RFC 3659) and the LIST fallback (unix `ls -l` and DOS/IIS
//! styles), turned into entries. Pure: the ftp endpoint fetches the lines and passes them in.
//!
//! A line becomes an entry only when every part of it that is used parses; any other line is
//! kept in [`Listing::unparsed`] so the scan can treat the folder as not fully listed (never delete
//! on the strength of a line that did not parse). A name a server could use to leave the folder
//! (`..`, `a/b`, a line break) is never an entry: it goes to [`Listing::rejected`].

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Utc};

use crate::core::model::{Entry, Mtime};

/// One usable entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    /// `Entry::file(size, mtime)` or `Entry::dir()`, with `mode` when the server gave permissions.
    pub entry: Entry,
}

/// What a listing gave: entries, lines that were rejected (hostile names) or did not parse.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<Listed>,
    pub rejected: Vec<Rejected>,
    /// The raw lines, for the report.
    pub unparsed: Vec<String>,
    /// Names of symlinks, skipped.
    pub symlinks: Vec<String>,
}

/// A listed name that is not safe to use as a path component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The name with control characters escaped, for display.
    pub name_lossy: String,
    pub reason: &'static str,
}

/// What one line says, before its name is checked.
enum Line<'a> {
    Entry(&'a str, Entry),
    Symlink(&'a str),
    /// Says nothing about the folder's content: "total N", blank, cdir/pdir, "." in LIST.
    Skip,
}

impl Listing {
    fn take(&mut self, raw: &str, line: Option<Line<'_>>) {
        let (name, entry) = match line {
            None => return self.unparsed.push(raw.to_string()),
            Some(Line::Skip) => return,
            Some(Line::Entry(name, entry)) => (name, Some(entry)),
            Some(Line::Symlink(name)) => (name, None),
        };
        if let Some(reason) = name_problem(name) {
            return self.rejected.push(Rejected { name_lossy: escape_controls(name), reason });
        }
        match entry {
            Some(entry) => self.entries.push(Listed { name: name.to_string(), entry }),
            None => self.symlinks.push(name.to_string()),
        }
    }
}

/// MLSD lines (RFC 3659): "fact=value;fact=value; name".
///
/// Fact names are case-insensitive. `type` is file, dir, cdir or pdir (the last two are dropped),
/// or `OS.unix=slink[:target]` / `OS.unix=symlink` (recorded in `symlinks`). A file needs `size`
/// and `modify` (YYYYMMDDHHMMSS[.fraction], UTC, kept to the nanosecond); `unix.mode` (octal)
/// becomes the entry's mode. A line without type, of another type, a file without size or
/// modify, or any of those facts given twice or malformed, is unparsed. The name is everything
/// after the first "; ", so it may hold spaces and ';'. Blank lines are skipped.
pub fn parse_mlsd(lines: &[String]) -> Listing {
    let mut listing = Listing::default();
    for raw in lines {
        listing.take(raw, mlsd_line(raw));
    }
    listing
}

/// LIST lines, unix `ls -l` style or DOS/IIS style, in the server's local time taken as UTC.
///
/// Unix: "-rw-r--r-- 1 owner group 1234 Mar  5 14:02 name", the link count, owner and group
/// columns being optional (the size is the number right before the date); "d" is a folder, "l" a
/// symlink ("name -> target"). "Mmm dd HH:MM" is in `now`'s year unless that is more than six
/// months ahead of `now` (then the year before) or it is at most a day ahead in the next year (a
/// server ahead of UTC at New Year); "Mmm dd  YYYY" is midnight of that day.
/// DOS: "03-05-26  02:02PM  <DIR>  name" or "... 1234 name" (MM-DD-YY or MM-DD-YYYY, 12 or 24 hour
/// clock). Seconds are 0. "total N" and blank lines are skipped, "." and ".." dropped silently;
/// any other line that does not parse is unparsed.
pub fn parse_list(lines: &[String], now: DateTime<Utc>) -> Listing {
    let mut listing = Listing::default();
    for raw in lines {
        listing.take(raw, list_line(raw, now));
    }
    listing
}

/// The mtime an MFMT reply says the file now has: "213 Modify=YYYYMMDDHHMMSS[.fraction]; path"
/// (draft-somers-ftp-mfxx), in UTC like MLSD's `modify`, the fact name in any case. `None` for
/// anything else (another code, a multi-line reply, no Modify fact, a malformed time): the
/// caller then asks the server (MLST) instead of guessing.
pub fn mfmt_reply_time(reply: &[u8]) -> Option<Mtime> {
    let line = reply.strip_suffix(b"\n").unwrap_or(reply);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // One line: a multi-line reply ("213-") or a line break inside is not the draft's reply.
    let rest = line.strip_prefix(b"213 ")?;
    if rest.contains(&b'\n') || rest.contains(&b'\r') {
        return None;
    }
    // The path after "; " may be in any encoding; only the fact before it is read.
    let fact = rest.split(|&b| b == b';').next()?;
    let (key, value) = std::str::from_utf8(fact).ok()?.split_once('=')?;
    if !key.eq_ignore_ascii_case("modify") {
        return None;
    }
    mlsd_time(value)
}

/// True when the name is safe to use as one path component: not empty, not "." or "..", no '/',
/// '\\', NUL, CR or LF.
pub fn safe_name(name: &str) -> bool {
    name_problem(name).is_none()
}

/// What makes a name unsafe (see [`safe_name`]), or `None`.
pub fn name_problem(name: &str) -> Option<&'static str> {
    Some(match name {
        "" => "is empty",
        "." => "is '.'",
        ".." => "is '..'",
        _ if name.contains('/') => "contains '/'",
        _ if name.contains('\\') => "contains '\\'",
        _ if name.contains('\0') => "contains NUL",
        _ if name.contains(['\r', '\n']) => "contains a line break",
        _ => return None,
    })
}

fn escape_controls(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn mlsd_line(line: &str) -> Option<Line<'_>> {
    if line.trim().is_empty() {
        return Some(Line::Skip);
    }
    let (facts, name) = line.split_once("; ")?;
    let (mut kind, mut size, mut modify, mut mode) = (None, None, None, None);
    for fact in facts.split(';').filter(|fact| !fact.is_empty()) {
        let (key, value) = fact.split_once('=')?;
        let slot = match key.to_ascii_lowercase().as_str() {
            "type" => &mut kind,
            "size" => &mut size,
            "modify" => &mut modify,
            "unix.mode" => &mut mode,
            _ => continue,
        };
        // A fact given twice is ambiguous: better unparsed than a guess.
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let kind = kind?.to_ascii_lowercase();
    if kind == "cdir" || kind == "pdir" {
        return Some(Line::Skip);
    }
    let size = present(size, digits::<u64>)?;
    let modify = present(modify, mlsd_time)?;
    let mode = present(mode, octal_mode)?;
    match kind.as_str() {
        "file" => Some(Line::Entry(name, Entry { mode, ..Entry::file(size?, modify?) })),
        "dir" => Some(Line::Entry(name, Entry { mode, ..Entry::dir() })),
        "os.unix=symlink" | "os.unix=slink" => Some(Line::Symlink(name)),
        _ if kind.starts_with("os.unix=slink:") => Some(Line::Symlink(name)),
        _ => None,
    }
}

/// `Some(None)` for an absent fact, `Some(Some(v))` for a good one, `None` for a bad one.
fn present<T>(value: Option<&str>, parse: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
    match value {
        None => Some(None),
        Some(value) => parse(value).map(Some),
    }
}

/// A number of ASCII digits only (`str::parse` would also take a sign).
fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn octal_mode(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    // Some servers include the file type bits; only the permissions are kept, as a local scan does.
    u32::from_str_radix(s, 8).ok().map(|mode| mode & 0o7777)
}

/// YYYYMMDDHHMMSS[.fraction] in UTC.
fn mlsd_time(value: &str) -> Option<Mtime> {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    if whole.len() != 14 || digits::<u64>(whole).is_none() {
        return None;
    }
    let field = |from: usize, to: usize| digits::<u32>(&whole[from..to]);
    let date = NaiveDate::from_ymd_opt(digits(&whole[..4])?, field(4, 6)?, field(6, 8)?)?;
    let nanos = match fraction {
        None => 0,
        Some(fraction) => {
            digits::<u64>(fraction)?;
            // Kept to the nanosecond; finer digits are dropped.
            let nine: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
            digits(&nine)?
        }
    };
    let time = NaiveTime::from_hms_nano_opt(field(8, 10)?, field(10, 12)?, field(12, 14)?, nanos)?;
    date.and_time(time).and_utc().timestamp_nanos_opt()
}

fn list_line(line: &str, now: DateTime<Utc>) -> Option<Line<'_>> {
    if line.trim().is_empty() || line.strip_prefix("total ").is_some_and(|n| digits::<u64>(n.trim()).is_some()) {
        return Some(Line::Skip);
    }
    let parsed = if line.starts_with(|c: char| c.is_ascii_digit()) { dos_line(line)? } else { unix_line(line, now)? };
    match parsed {
        // Many servers list the folder itself and its parent: not content, and not hostile.
        Line::Entry("." | "..", _) | Line::Symlink("." | "..") => Some(Line::Skip),
        parsed => Some(parsed),
    }
}

/// The first `n` space-separated words of `line`, each with what follows it.
fn words(line: &str, n: usize) -> Vec<(&str, &str)> {
    let mut words = Vec::with_capacity(n);
    let mut rest = line;
    while words.len() < n {
        let trimmed = rest.trim_start_matches(' ');
        if trimmed.is_empty() {
            break;
        }
        let (word, after) = trimmed.split_at(trimmed.find(' ').unwrap_or(trimmed.len()));
        words.push((word, after));
        rest = after;
    }
    words
}

fn unix_line(line: &str, now: DateTime<Utc>) -> Option<Line<'_>> {
    // perms [links] [owner] [group] size month day time|year, then the name.
    let words = words(line, 8);
    let (type_char, mode) = permissions(words.first()?.0)?;
    // The first place where size, month, day and time follow each other (an owner may be "may").
    let (size, mtime, name) = (2..words.len().saturating_sub(2)).find_map(|i| {
        let size = digits::<u64>(words[i - 1].0)?;
        let mtime = unix_time(month(words[i].0)?, digits(words[i + 1].0)?, words[i + 2].0, now)?;
        // ls puts one space before the name; more belong to the name.
        Some((size, mtime, words[i + 2].1.strip_prefix(' ')?))
    })?;
    match type_char {
        b'-' => Some(Line::Entry(name, Entry { mode: Some(mode), ..Entry::file(size, mtime) })),
        b'd' => Some(Line::Entry(name, Entry { mode: Some(mode), ..Entry::dir() })),
        b'l' => Some(Line::Symlink(name.split_once(" -> ").map_or(name, |(name, _target)| name))),
        _ => None,
    }
}

/// "-rwxr-sr-t" -> (b'-', 0o3755). A trailing '+' (ACL), '@' (extended attributes) or '.'
/// (SELinux context) is allowed.
fn permissions(perms: &str) -> Option<(u8, u32)> {
    let bytes = match perms.as_bytes() {
        [head @ .., b'+' | b'@' | b'.'] if perms.len() == 11 => head,
        bytes => bytes,
    };
    let [type_char, bits @ ..] = bytes else { return None };
    if bits.len() != 9 {
        return None;
    }
    let mut mode = 0;
    for (i, &c) in bits.iter().enumerate() {
        let bit = 1 << (8 - i);
        let special = [0o4000, 0o2000, 0o1000][i / 3];
        mode |= match (i % 3, c) {
            (_, b'-') => 0,
            (0, b'r') | (1, b'w') | (2, b'x') => bit,
            (2, b's') if i < 6 => bit | special,
            (2, b'S') if i < 6 => special,
            // Old Solaris: setgid without group execute means mandatory locking.
            (2, b'l') if i == 5 => special,
            (2, b't') if i == 8 => bit | special,
            (2, b'T') if i == 8 => special,
            _ => return None,
        };
    }
    Some((*type_char, mode))
}

fn month(word: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    MONTHS.iter().position(|m| word.eq_ignore_ascii_case(m)).map(|i| i as u32 + 1)
}

/// "HH:MM" (the year inferred from `now`) or "YYYY" (midnight).
fn unix_time(month: u32, day: u32, clock_or_year: &str, now: DateTime<Utc>) -> Option<Mtime> {
    let Some((hour, minute)) = clock_or_year.split_once(':') else {
        if clock_or_year.len() != 4 {
            return None;
        }
        let date = NaiveDate::from_ymd_opt(digits(clock_or_year)?, month, day)?;
        return date.and_time(NaiveTime::MIN).and_utc().timestamp_nanos_opt();
    };
    if minute.len() != 2 {
        return None;
    }
    let time = NaiveTime::from_hms_opt(digits(hour)?, digits(minute)?, 0)?;
    let in_year = |year| NaiveDate::from_ymd_opt(year, month, day).map(|date| date.and_time(time).and_utc());
    // ls shows a clock for recent times, a year otherwise, so a clock more than six months ahead
    // is from last year. A server in a zone ahead of UTC (or with a fast clock) shows a file
    // written just after its New Year as up to a day ahead of us, in our next year.
    let next = in_year(now.year() + 1).filter(|t| *t <= now + TimeDelta::days(1));
    let this = in_year(now.year()).filter(|t| *t <= now + TimeDelta::days(183));
    next.or(this).or_else(|| in_year(now.year() - 1))?.timestamp_nanos_opt()
}

fn dos_line(line: &str) -> Option<Line<'_>> {
    let words = words(line, 3);
    let [(date, _), (clock, _), (size, rest)] = words[..] else { return None };
    let date = dos_date(date)?;
    let mtime = date.and_time(dos_clock(clock)?).and_utc().timestamp_nanos_opt()?;
    if size.eq_ignore_ascii_case("<DIR>") {
        // The name column is padded after <DIR>: leading spaces of a folder name cannot be told apart.
        return Some(Line::Entry(rest.trim_start_matches(' '), Entry::dir()));
    }
    Some(Line::Entry(rest.strip_prefix(' ')?, Entry::file(digits(size)?, mtime)))
}

/// MM-DD-YY (70..99 are 19xx) or MM-DD-YYYY.
fn dos_date(word: &str) -> Option<NaiveDate> {
    let mut parts = word.split('-');
    let (month, day, year) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let year = match (year.len(), digits::<i32>(year)?) {
        (2, yy) if yy >= 70 => 1900 + yy,
        (2, yy) => 2000 + yy,
        (4, yyyy) => yyyy,
        _ => return None,
    };
    NaiveDate::from_ymd_opt(year, digits(month)?, digits(day)?)
}

/// "02:02PM", "12:05AM" (00:05) or "14:02".
fn dos_clock(word: &str) -> Option<NaiveTime> {
    let upper = word.to_ascii_uppercase();
    let (clock, pm) = match (upper.strip_suffix("AM"), upper.strip_suffix("PM")) {
        (Some(clock), _) => (clock, Some(false)),
        (_, Some(clock)) => (clock, Some(true)),
        _ => (upper.as_str(), None),
    };
    let (hour, minute) = clock.split_once(':')?;
    if minute.len() != 2 || hour.len() > 2 {
        return None;
    }
    let hour: u32 = digits(hour)?;
    let hour = match pm {
        None => hour,
        Some(_) if !(1..=12).contains(&hour) => return None,
        Some(pm) => hour % 12 + if pm { 12 } else { 0 },
    };
    NaiveTime::from_hms_opt(hour, digits(minute)?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;
    use proptest::prelude::*;

    /// Nanoseconds since the epoch of a UTC "YYYY-MM-DD HH:MM:SS[.fff]".
    fn at(s: &str) -> Mtime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap().and_utc().timestamp_nanos_opt().unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(at(s))
    }

    fn file(size: u64, time: &str, mode: Option<u32>) -> Entry {
        Entry { mode, ..Entry::file(size, at(time)) }
    }

    fn dir(mode: Option<u32>) -> Entry {
        Entry { mode, ..Entry::dir() }
    }

    fn strings(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|line| line.to_string()).collect()
    }

    /// What one line should give.
    enum Want {
        Entry(&'static str, Entry),
        Symlink(&'static str),
        Rejected(&'static str, &'static str),
        Unparsed,
        Nothing,
    }

    fn check(listing: Listing, line: &str, want: Want) {
        let mut expected = Listing::default();
        match want {
            Want::Entry(name, entry) => expected.entries.push(Listed { name: name.to_string(), entry }),
            Want::Symlink(name) => expected.symlinks.push(name.to_string()),
            Want::Rejected(name_lossy, reason) => {
                expected.rejected.push(Rejected { name_lossy: name_lossy.to_string(), reason })
            }
            Want::Unparsed => expected.unparsed.push(line.to_string()),
            Want::Nothing => {}
        }
        assert_eq!(listing, expected, "line {line:?}");
    }

    /// One test per row, so that a failure names the case.
    macro_rules! cases {
        ($parse:expr; $($case:ident: $line:expr => $want:expr,)*) => {
            $(
                #[test]
                fn $case() {
                    let line: &str = $line;
                    check($parse(&[line.to_string()]), line, $want);
                }
            )*
        };
    }

    mod mlsd {
        use super::*;
        use Want::*;

        cases! { parse_mlsd;
            pyftpdlib_file_with_space:
                "type=file;size=1024;modify=20261122101500;unix.mode=0644;unix.uid=0;unix.gid=0; a b.txt"
                => Entry("a b.txt", file(1024, "2026-11-22 10:15:00", Some(0o644))),
            pyftpdlib_dir: "type=dir;size=4096;modify=20261122101500;unix.mode=0755;unix.uid=0;unix.gid=0; sub"
                => Entry("sub", dir(Some(0o755))),
            proftpd_file_keeps_milliseconds:
                "modify=20261122101500.123;perm=adfr;size=5;type=file;unique=FD00U2A6A4;UNIX.mode=0600; name"
                => Entry("name", file(5, "2026-11-22 10:15:00.123", Some(0o600))),
            proftpd_cdir_full_path_dropped:
                "modify=20261122101500;perm=flcdmpe;type=cdir;unique=FD00U2A6A2;UNIX.mode=0755; /home/u"
                => Nothing,
            proftpd_pdir_dropped: "modify=20261122101500;perm=flcdmpe;type=pdir;unique=FD00U2;UNIX.mode=0755; .."
                => Nothing,
            proftpd_slink_with_target:
                "modify=20261122101500;perm=adfr;size=7;type=OS.unix=slink:/etc/passwd;unique=FD00U3; link"
                => Symlink("link"),
            proftpd_symlink: "modify=20261122101500;perm=adfr;size=7;type=OS.unix=symlink;unique=FD00U3; link"
                => Symlink("link"),
            slink_without_target: "type=OS.unix=slink;modify=20261122101500; link" => Symlink("link"),
            symlink_with_hostile_name_rejected: "type=OS.unix=symlink; ../x" => Rejected("../x", "contains '/'"),
            pureftpd_file:
                "type=file;size=5;modify=20261122101500;UNIX.mode=0644;UNIX.uid=1000;unique=803g1a0a; f.txt"
                => Entry("f.txt", file(5, "2026-11-22 10:15:00", Some(0o644))),
            pureftpd_dir_with_sizd:
                "type=dir;sizd=4096;modify=20261122101500;UNIX.mode=0755;UNIX.uid=1000;UNIX.gid=1000;unique=803g1a0b; d"
                => Entry("d", dir(Some(0o755))),
            pureftpd_cdir_dropped: "type=cdir;sizd=4096;modify=20261122101500;UNIX.mode=0755;unique=803g1a09; ."
                => Nothing,
            iis_capitalized_facts: "Type=file;Size=5;Modify=20261122101500.000; x"
                => Entry("x", file(5, "2026-11-22 10:15:00", None)),
            iis_dir: "Type=dir;Modify=20261122101500.000; My Documents" => Entry("My Documents", dir(None)),
            type_value_case_insensitive: "type=FILE;size=1;modify=20261122101500; x"
                => Entry("x", file(1, "2026-11-22 10:15:00", None)),
            dir_without_modify: "type=dir; d" => Entry("d", dir(None)),
            name_with_semicolons: "type=file;size=1;modify=20261122101500; a;b; c;"
                => Entry("a;b; c;", file(1, "2026-11-22 10:15:00", None)),
            name_with_leading_and_trailing_spaces: "type=file;size=1;modify=20261122101500;  a  "
                => Entry(" a  ", file(1, "2026-11-22 10:15:00", None)),
            unicode_name: "type=file;size=3;modify=20261122101500; Übersicht 日本語 ✓.txt"
                => Entry("Übersicht 日本語 ✓.txt", file(3, "2026-11-22 10:15:00", None)),
            fraction_to_nanoseconds: "type=file;size=1;modify=20261122101500.123456789123; x"
                => Entry("x", file(1, "2026-11-22 10:15:00.123456789", None)),
            fraction_one_digit: "type=file;size=1;modify=20261122101500.5; x"
                => Entry("x", file(1, "2026-11-22 10:15:00.5", None)),
            size_zero: "type=file;size=0;modify=19700101000000; empty"
                => Entry("empty", file(0, "1970-01-01 00:00:00", None)),
            largest_size: "type=file;size=18446744073709551615;modify=20261122101500; big"
                => Entry("big", file(u64::MAX, "2026-11-22 10:15:00", None)),
            before_the_epoch: "type=file;size=1;modify=19691231235959; old"
                => Entry("old", file(1, "1969-12-31 23:59:59", None)),
            mode_with_type_bits: "type=file;size=1;modify=20261122101500;unix.mode=100755; x"
                => Entry("x", file(1, "2026-11-22 10:15:00", Some(0o755))),
            mode_with_setuid: "type=file;size=1;modify=20261122101500;unix.mode=4755; x"
                => Entry("x", file(1, "2026-11-22 10:15:00", Some(0o4755))),
            unknown_facts_ignored:
                "type=file;size=1;modify=20261122101500;create=20200101000000;lang=en;media-type=text/plain; x"
                => Entry("x", file(1, "2026-11-22 10:15:00", None)),

            hostile_parent_escape: "type=file;size=1;modify=20261122101500; ../escape"
                => Rejected("../escape", "contains '/'"),
            hostile_slash: "type=dir; a/b" => Rejected("a/b", "contains '/'"),
            hostile_absolute: "type=file;size=1;modify=20261122101500; /etc/passwd"
                => Rejected("/etc/passwd", "contains '/'"),
            hostile_backslash: "type=file;size=1;modify=20261122101500; a\\b" => Rejected("a\\b", "contains '\\'"),
            hostile_carriage_return: "type=file;size=1;modify=20261122101500; x\r"
                => Rejected("x\\r", "contains a line break"),
            hostile_line_feed: "type=file;size=1;modify=20261122101500; x\ny"
                => Rejected("x\\ny", "contains a line break"),
            hostile_nul: "type=file;size=1;modify=20261122101500; a\0b" => Rejected("a\\u{0}b", "contains NUL"),
            hostile_dot_file: "type=file;size=1;modify=20261122101500; ." => Rejected(".", "is '.'"),
            hostile_dot_dot_dir: "type=dir;modify=20261122101500; .." => Rejected("..", "is '..'"),
            hostile_dot_dir: "type=dir; ." => Rejected(".", "is '.'"),
            hostile_empty_name: "type=file;size=1;modify=20261122101500; " => Rejected("", "is empty"),

            missing_type: "size=1;modify=20261122101500; x" => Unparsed,
            file_missing_size: "type=file;modify=20261122101500; x" => Unparsed,
            file_missing_modify: "type=file;size=1; x" => Unparsed,
            file_with_only_sizd: "type=file;sizd=1;modify=20261122101500; x" => Unparsed,
            unknown_type: "type=OS.unix=chr-13/29;modify=20261122101500; tty" => Unparsed,
            bad_modify_month: "type=file;size=1;modify=20261322101500; x" => Unparsed,
            bad_modify_length: "type=file;size=1;modify=2026112210150; x" => Unparsed,
            bad_modify_empty_fraction: "type=file;size=1;modify=20261122101500.; x" => Unparsed,
            bad_modify_sign: "type=file;size=1;modify=+0261122101500; x" => Unparsed,
            bad_modify_on_dir: "type=dir;modify=yesterday; d" => Unparsed,
            modify_beyond_nanosecond_range: "type=file;size=1;modify=99991231235959; x" => Unparsed,
            size_overflow: "type=file;size=18446744073709551616;modify=20261122101500; x" => Unparsed,
            size_negative: "type=file;size=-1;modify=20261122101500; x" => Unparsed,
            size_with_plus: "type=file;size=+1;modify=20261122101500; x" => Unparsed,
            bad_mode: "type=file;size=1;modify=20261122101500;unix.mode=0854; x" => Unparsed,
            fact_given_twice: "type=file;size=1;size=2;modify=20261122101500; x" => Unparsed,
            fact_without_value: "type=file;size;modify=20261122101500; x" => Unparsed,
            no_space_before_name: "type=file;size=1;modify=20261122101500;x" => Unparsed,
            no_facts: " x" => Unparsed,
            garbage: "550 Permission denied." => Unparsed,
            unix_list_line_given_to_mlsd: "-rw-r--r-- 1 o g 5 Mar  5 14:02 x" => Unparsed,
            blank_skipped: "" => Nothing,
        }
    }

    mod mfmt_reply {
        use super::*;

        /// One test per row: the reply as the server sent it, the time it should give.
        macro_rules! replies {
            ($($case:ident: $reply:expr => $want:expr,)*) => {
                $(
                    #[test]
                    fn $case() {
                        let reply: &[u8] = $reply;
                        let want: Option<&str> = $want;
                        assert_eq!(mfmt_reply_time(reply), want.map(at), "reply {:?}", String::from_utf8_lossy(reply));
                    }
                )*
            };
        }

        replies! {
            draft_example: b"213 Modify=20020717210715; file.txt\r\n" => Some("2002-07-17 21:07:15"),
            pyftpdlib_with_trailing_dot: b"213 Modify=20261122101500; /ps/.pairsync-1-2-3.tmp/f.bin.\r\n"
                => Some("2026-11-22 10:15:00"),
            lower_case_fact: b"213 modify=20261122101500; f\r\n" => Some("2026-11-22 10:15:00"),
            fraction: b"213 Modify=20261122101500.123; f\r\n" => Some("2026-11-22 10:15:00.123"),
            without_path: b"213 Modify=20261122101500\r\n" => Some("2026-11-22 10:15:00"),
            without_line_end: b"213 Modify=20261122101500; f" => Some("2026-11-22 10:15:00"),
            path_not_utf8: b"213 Modify=20261122101500; \xff\xfe.bin\r\n" => Some("2026-11-22 10:15:00"),
            path_with_semicolons_and_equals: b"213 Modify=20261122101500; a;b=c; d\r\n" => Some("2026-11-22 10:15:00"),
            only_the_first_fact_is_read: b"213 Modify=20261122101500;Modify=20000101000000; f\r\n"
                => Some("2026-11-22 10:15:00"),
            before_the_epoch: b"213 Modify=19691231235959; f\r\n" => Some("1969-12-31 23:59:59"),

            mdtm_style_bare_time: b"213 20261122101500\r\n" => None,
            success_with_another_code: b"200 Modify=20261122101500; f\r\n" => None,
            refused: b"550 f: No such file or directory.\r\n" => None,
            not_implemented: b"502 Command not implemented.\r\n" => None,
            multi_line: b"213-Modify=20261122101500; f\r\n213 End\r\n" => None,
            two_replies_in_one: b"213 Modify=20261122101500; f\r\n213 Modify=20000101000000; g\r\n" => None,
            bare_carriage_return_inside: b"213 Modify=20261122101500\rjunk; f" => None,
            another_fact: b"213 Create=20261122101500; f\r\n" => None,
            prose: b"213 File modification time set\r\n" => None,
            space_before_equals: b"213 Modify =20261122101500; f\r\n" => None,
            space_after_equals: b"213 Modify= 20261122101500; f\r\n" => None,
            empty_value: b"213 Modify=; f\r\n" => None,
            short_time: b"213 Modify=2026112210150; f\r\n" => None,
            long_time: b"213 Modify=202611221015001; f\r\n" => None,
            bad_month: b"213 Modify=20261322101500; f\r\n" => None,
            bad_second: b"213 Modify=20261122101561; f\r\n" => None,
            signed_time: b"213 Modify=+0261122101500; f\r\n" => None,
            empty_fraction: b"213 Modify=20261122101500.; f\r\n" => None,
            beyond_nanosecond_range: b"213 Modify=99991231235959; f\r\n" => None,
            nul_in_time: b"213 Modify=2026112210\x0015; f\r\n" => None,
            not_utf8_time: b"213 Modify=2026\xff1122101500; f\r\n" => None,
            leading_space: b" 213 Modify=20261122101500; f\r\n" => None,
            code_only: b"213 \r\n" => None,
            empty: b"" => None,
        }
    }

    /// 2026-03-10 12:00 UTC; 183 days later is 2026-09-09 12:00.
    fn spring(lines: &[String]) -> Listing {
        parse_list(lines, utc("2026-03-10 12:00:00"))
    }

    mod list_unix {
        use super::*;
        use Want::*;

        cases! { spring;
            proftpd_file: "-rw-r--r--   1 ftp      ftp          1234 Mar  5 14:02 name"
                => Entry("name", file(1234, "2026-03-05 14:02:00", Some(0o644))),
            vsftpd_numeric_owner_padded_day: "-rw-r--r--    1 1000     1000         1234 Mar 05 14:02 report.pdf"
                => Entry("report.pdf", file(1234, "2026-03-05 14:02:00", Some(0o644))),
            pureftpd_file: "-rw-r--r--    1 1000       1000             5 Jan 20 09:30 a.txt"
                => Entry("a.txt", file(5, "2026-01-20 09:30:00", Some(0o644))),
            no_group_column: "-rw-r--r--   1 owner    1234 Mar  5 14:02 name"
                => Entry("name", file(1234, "2026-03-05 14:02:00", Some(0o644))),
            no_link_count: "-rw-r--r-- owner group 1234 Mar  5 14:02 name"
                => Entry("name", file(1234, "2026-03-05 14:02:00", Some(0o644))),
            no_owner_or_group: "-rw-r--r-- 1 1234 Mar 5 14:02 name"
                => Entry("name", file(1234, "2026-03-05 14:02:00", Some(0o644))),
            folder: "drwxr-xr-x   2 ftp      ftp          4096 Feb 28 23:59 sub dir"
                => Entry("sub dir", dir(Some(0o755))),
            acl_marker: "-rw-r--r--+  1 ftp      ftp             7 Mar  5 14:02 acl"
                => Entry("acl", file(7, "2026-03-05 14:02:00", Some(0o644))),
            special_bits: "-rwsr-sr-t   1 root     root            7 Mar  5 14:02 s"
                => Entry("s", file(7, "2026-03-05 14:02:00", Some(0o7755))),
            special_bits_without_execute: "-rwSr-Sr-T   1 root     root            7 Mar  5 14:02 s"
                => Entry("s", file(7, "2026-03-05 14:02:00", Some(0o7644))),
            name_with_spaces: "-rw-r--r--   1 ftp      ftp             1 Mar  5 14:02 a  b c "
                => Entry("a  b c ", file(1, "2026-03-05 14:02:00", Some(0o644))),
            name_with_leading_space: "-rw-r--r--   1 ftp      ftp             1 Mar  5 14:02  lead"
                => Entry(" lead", file(1, "2026-03-05 14:02:00", Some(0o644))),
            name_looking_like_a_date: "-rw-r--r--   1 ftp      ftp             1 Mar  5 14:02 Apr 1 10:00 x"
                => Entry("Apr 1 10:00 x", file(1, "2026-03-05 14:02:00", Some(0o644))),
            unicode_name: "-rw-r--r--   1 ftp      ftp             1 Mar  5 14:02 naïve 日本"
                => Entry("naïve 日本", file(1, "2026-03-05 14:02:00", Some(0o644))),
            lowercase_month: "-rw-r--r-- 1 o g 1 mar 5 14:02 x"
                => Entry("x", file(1, "2026-03-05 14:02:00", Some(0o644))),
            year_form: "-rw-r--r--   1 ftp      ftp          1234 Nov 22  2019 old.tar"
                => Entry("old.tar", file(1234, "2019-11-22 00:00:00", Some(0o644))),
            clock_later_this_year_is_last_year: "-rw-r--r-- 1 o g 1 Dec 24 18:00 x"
                => Entry("x", file(1, "2025-12-24 18:00:00", Some(0o644))),
            clock_up_to_six_months_ahead: "-rw-r--r-- 1 o g 1 Sep  9 08:00 x"
                => Entry("x", file(1, "2026-09-09 08:00:00", Some(0o644))),
            clock_more_than_six_months_ahead: "-rw-r--r-- 1 o g 1 Sep 10 08:00 x"
                => Entry("x", file(1, "2025-09-10 08:00:00", Some(0o644))),
            clock_earlier_this_year: "-rw-r--r-- 1 o g 1 Jan  2 08:00 x"
                => Entry("x", file(1, "2026-01-02 08:00:00", Some(0o644))),
            owner_named_like_a_month: "-rw-r--r-- 1 may staff 5 Mar  5 14:02 x"
                => Entry("x", file(5, "2026-03-05 14:02:00", Some(0o644))),
            clock_today_slightly_ahead: "-rw-r--r-- 1 o g 1 Mar 10 12:30 x"
                => Entry("x", file(1, "2026-03-10 12:30:00", Some(0o644))),
            leap_day_of_an_earlier_year: "-rw-r--r-- 1 o g 1 Feb 29 10:00 x" => Unparsed,
            symlink_with_target: "lrwxrwxrwx   1 ftp      ftp            11 Mar  5 14:02 link name -> ../target"
                => Symlink("link name"),
            symlink_without_target: "lrwxrwxrwx   1 ftp      ftp            11 Mar  5 14:02 link" => Symlink("link"),
            dot_dropped: "drwxr-xr-x   2 ftp      ftp          4096 Mar  5 14:02 ." => Nothing,
            dot_dot_dropped: "drwxr-xr-x   9 ftp      ftp          4096 Mar  5 14:02 .." => Nothing,
            dot_file_kept: "-rw-r--r--   1 ftp      ftp             1 Mar  5 14:02 .hidden"
                => Entry(".hidden", file(1, "2026-03-05 14:02:00", Some(0o644))),
            total_skipped: "total 12" => Nothing,
            blank_skipped: "   " => Nothing,

            hostile_slash: "-rw-r--r-- 1 o g 1 Mar  5 14:02 ../../etc/passwd"
                => Rejected("../../etc/passwd", "contains '/'"),
            hostile_backslash: "-rw-r--r-- 1 o g 1 Mar  5 14:02 ..\\x" => Rejected("..\\x", "contains '\\'"),
            hostile_carriage_return: "-rw-r--r-- 1 o g 1 Mar  5 14:02 x\r" => Rejected("x\\r", "contains a line break"),
            hostile_empty_name: "-rw-r--r-- 1 o g 1 Mar  5 14:02 " => Rejected("", "is empty"),

            no_name: "-rw-r--r-- 1 o g 1 Mar  5 14:02" => Unparsed,
            character_device: "crw-rw-rw-   1 root     root       1,   3 Mar  5 14:02 null" => Unparsed,
            fifo: "prw-r--r--   1 root     root            0 Mar  5 14:02 pipe" => Unparsed,
            bad_permission_letter: "-rwxrwxrwq 1 o g 1 Mar  5 14:02 x" => Unparsed,
            short_permissions: "-rw-r--r 1 o g 1 Mar  5 14:02 x" => Unparsed,
            localized_month: "-rw-r--r-- 1 o g 1 Mär  5 14:02 x" => Unparsed,
            bad_clock: "-rw-r--r-- 1 o g 1 Mar  5 25:02 x" => Unparsed,
            bad_day: "-rw-r--r-- 1 o g 1 Feb 30 14:02 x" => Unparsed,
            size_overflow: "-rw-r--r-- 1 o g 18446744073709551616 Mar  5 14:02 x" => Unparsed,
            total_without_number: "total" => Unparsed,
            garbage: "ls: cannot access '/x': Permission denied" => Unparsed,
            server_reply: "226 Transfer complete." => Unparsed,
        }
    }

    /// 2026-12-31 20:00 UTC: a server in UTC+10 is already at 06:00 on New Year's Day.
    fn new_years_eve(lines: &[String]) -> Listing {
        parse_list(lines, utc("2026-12-31 20:00:00"))
    }

    mod list_new_years_eve {
        use super::*;
        use Want::*;

        cases! { new_years_eve;
            earlier_today: "-rw-r--r-- 1 o g 1 Dec 31 19:00 x"
                => Entry("x", file(1, "2026-12-31 19:00:00", Some(0o644))),
            server_ahead_of_utc: "-rw-r--r-- 1 o g 1 Jan  1 05:59 x"
                => Entry("x", file(1, "2027-01-01 05:59:00", Some(0o644))),
            january_3_is_more_than_a_day_ahead: "-rw-r--r-- 1 o g 1 Jan  3 10:00 x"
                => Entry("x", file(1, "2026-01-03 10:00:00", Some(0o644))),
            july: "-rw-r--r-- 1 o g 1 Jul  1 10:00 x" => Entry("x", file(1, "2026-07-01 10:00:00", Some(0o644))),
        }
    }

    /// 2027-01-01 01:00 UTC: a server in UTC-5 still shows the old year.
    fn new_years_day(lines: &[String]) -> Listing {
        parse_list(lines, utc("2027-01-01 01:00:00"))
    }

    mod list_new_years_day {
        use super::*;
        use Want::*;

        cases! { new_years_day;
            server_behind_utc: "-rw-r--r-- 1 o g 1 Dec 31 19:30 x"
                => Entry("x", file(1, "2026-12-31 19:30:00", Some(0o644))),
            just_now: "-rw-r--r-- 1 o g 1 Jan  1 00:59 x" => Entry("x", file(1, "2027-01-01 00:59:00", Some(0o644))),
            last_august: "-rw-r--r-- 1 o g 1 Aug 15 10:00 x" => Entry("x", file(1, "2026-08-15 10:00:00", Some(0o644))),
            leap_day_last_year: "-rw-r--r-- 1 o g 1 Feb 29 10:00 x" => Unparsed,
        }
    }

    #[test]
    fn leap_day_with_a_clock_in_a_leap_year() {
        let listing = parse_list(&strings(&["-rw-r--r-- 1 o g 1 Feb 29 10:00 x"]), utc("2028-03-10 12:00:00"));
        assert_eq!(listing.entries, [Listed { name: "x".into(), entry: file(1, "2028-02-29 10:00:00", Some(0o644)) }]);
    }

    mod list_dos {
        use super::*;
        use Want::*;

        cases! { spring;
            iis_dir: "03-05-26  02:02PM       <DIR>          name" => Entry("name", dir(None)),
            iis_file: "03-05-26  02:02PM               1234 name"
                => Entry("name", file(1234, "2026-03-05 14:02:00", None)),
            iis_morning: "04-27-00  09:09AM                  589 DOS file 1"
                => Entry("DOS file 1", file(589, "2000-04-27 09:09:00", None)),
            noon_is_pm_12: "03-05-26  12:05PM                  1 x" => Entry("x", file(1, "2026-03-05 12:05:00", None)),
            midnight_is_am_12: "03-05-26  12:05AM                  1 x"
                => Entry("x", file(1, "2026-03-05 00:05:00", None)),
            eleven_pm: "03-05-26  11:59PM                  1 x" => Entry("x", file(1, "2026-03-05 23:59:00", None)),
            lowercase_pm: "03-05-26  02:02pm                  1 x" => Entry("x", file(1, "2026-03-05 14:02:00", None)),
            twenty_four_hour_clock: "03-05-26  14:02                    1 x"
                => Entry("x", file(1, "2026-03-05 14:02:00", None)),
            four_digit_year: "03-05-2026  02:02PM                1 x"
                => Entry("x", file(1, "2026-03-05 14:02:00", None)),
            last_century: "12-31-99  11:59PM                  1 y2k"
                => Entry("y2k", file(1, "1999-12-31 23:59:00", None)),
            dir_with_spaces: "03-05-26  02:02PM       <DIR>          My Documents" => Entry("My Documents", dir(None)),
            file_with_spaces: "03-05-26  02:02PM                  1 a  b "
                => Entry("a  b ", file(1, "2026-03-05 14:02:00", None)),
            dot_dir_dropped: "03-05-26  02:02PM       <DIR>          ." => Nothing,
            dot_dot_dir_dropped: "03-05-26  02:02PM       <DIR>          .." => Nothing,
            hostile_backslash: "03-05-26  02:02PM                  1 ..\\..\\boot.ini"
                => Rejected("..\\..\\boot.ini", "contains '\\'"),
            hostile_empty_dir_name: "03-05-26  02:02PM       <DIR>          " => Rejected("", "is empty"),

            am_13: "03-05-26  13:05PM                  1 x" => Unparsed,
            am_0: "03-05-26  00:05AM                  1 x" => Unparsed,
            hour_24: "03-05-26  24:00                    1 x" => Unparsed,
            one_digit_minute: "03-05-26  02:2PM                   1 x" => Unparsed,
            bad_date: "02-30-26  02:02PM                  1 x" => Unparsed,
            slash_date: "03/05/26  02:02PM                  1 x" => Unparsed,
            three_digit_year: "03-05-260  02:02PM                 1 x" => Unparsed,
            comma_size: "03-05-26  02:02PM              1,234 x" => Unparsed,
            junction: "03-05-26  02:02PM    <JUNCTION>     x [C:\\y]" => Unparsed,
            no_name: "03-05-26  02:02PM                  1" => Unparsed,
            date_only: "03-05-26" => Unparsed,
        }
    }

    #[test]
    fn mlsd_listing_keeps_order_and_sorts_lines_out() {
        let listing = parse_mlsd(&strings(&[
            "type=cdir;modify=20261122101500;unix.mode=0755; /pub",
            "type=pdir;modify=20261122101500;unix.mode=0755; ..",
            "type=file;size=1;modify=20261122101500; b",
            "type=dir;modify=20261122101500; a",
            "type=OS.unix=symlink; l",
            "type=file;size=1;modify=20261122101500; a/b",
            "type=file;size=1; c",
        ]));
        assert_eq!(
            listing,
            Listing {
                entries: vec![
                    Listed { name: "b".into(), entry: file(1, "2026-11-22 10:15:00", None) },
                    Listed { name: "a".into(), entry: dir(None) },
                ],
                rejected: vec![Rejected { name_lossy: "a/b".into(), reason: "contains '/'" }],
                unparsed: strings(&["type=file;size=1; c"]),
                symlinks: strings(&["l"]),
            }
        );
    }

    #[test]
    fn mlsd_name_with_a_line_break_split_by_the_reader_is_never_an_entry() {
        // A server listing "x\r\ny" reaches us as two lines when the reader splits on LF only.
        let listing = parse_mlsd(&strings(&["type=file;size=1;modify=20261122101500; x\r", "y"]));
        assert!(listing.entries.is_empty());
        assert_eq!(listing.rejected, [Rejected { name_lossy: "x\\r".into(), reason: "contains a line break" }]);
        assert_eq!(listing.unparsed, ["y"]);
    }

    #[test]
    fn list_listing_mixes_styles_and_skips_noise() {
        let listing = spring(&strings(&[
            "total 12",
            "drwxr-xr-x   3 ftp      ftp          4096 Mar  5 14:02 .",
            "drwxr-xr-x   9 ftp      ftp          4096 Mar  5 14:02 ..",
            "-rw-r--r--   1 ftp      ftp             3 Mar  5 14:02 one",
            "lrwxrwxrwx   1 ftp      ftp             3 Mar  5 14:02 two -> one",
            "03-05-26  02:02PM       <DIR>          three",
            "what is this",
        ]));
        assert_eq!(
            listing,
            Listing {
                entries: vec![
                    Listed { name: "one".into(), entry: file(3, "2026-03-05 14:02:00", Some(0o644)) },
                    Listed { name: "three".into(), entry: dir(None) },
                ],
                rejected: vec![],
                unparsed: strings(&["what is this"]),
                symlinks: strings(&["two"]),
            }
        );
    }

    #[test]
    fn safe_names() {
        for name in ["a", "a b", ".hidden", "...", "a..b", "日本", "a;b", " "] {
            assert!(safe_name(name), "{name:?}");
        }
        for name in ["", ".", "..", "a/b", "/", "a\\b", "a\0", "a\r", "\nb"] {
            assert!(!safe_name(name), "{name:?}");
        }
    }

    fn assert_all_safe(listing: &Listing) -> Result<(), TestCaseError> {
        for listed in &listing.entries {
            prop_assert!(safe_name(&listed.name), "{:?}", listed.name);
        }
        for name in &listing.symlinks {
            prop_assert!(safe_name(name), "{name:?}");
        }
        Ok(())
    }

    /// Lines close enough to the real thing to reach the name checks, and anything at all.
    const MLSD_LINE: &str = concat!(
        "((type=(file|dir|cdir|OS.unix=symlink)|size=[0-9]{1,3}|modify=2026[0-9]{10}(\\.[0-9]{1,4})?);){0,4}",
        " [a-z./\\\\\r\n\0 ;]{0,6}|.{0,40}"
    );
    const LIST_LINE: &str = concat!(
        "(-|d|l)rw-r--r-- (1 )?(o )?(g )?[0-9]{1,3} (Jan|Dec) [0-9]{1,2} ([0-9]{2}:[0-9]{2}|2025)",
        " [-a-z./\\\\\r\n\0 >]{0,8}",
        "|[0-9]{2}-[0-9]{2}-2[0-5]  [0-9]{2}:[0-9]{2}(AM|PM) +(<DIR>|[0-9]{1,3}) [a-z./\\\\\r\n\0 ]{0,6}|.{0,40}"
    );

    proptest! {
        #[test]
        fn mlsd_never_yields_an_unsafe_name(line in MLSD_LINE) {
            assert_all_safe(&parse_mlsd(&[line]))?;
        }

        #[test]
        fn list_never_yields_an_unsafe_name(
            line in LIST_LINE,
            hours in 0i64..24 * 366,
        ) {
            let now = utc("2026-01-01 00:00:00") + TimeDelta::hours(hours);
            let listing = parse_list(&[line], now);
            assert_all_safe(&listing)?;
            for listed in &listing.entries {
                prop_assert!(listed.entry.mtime <= (now + TimeDelta::days(183)).timestamp_nanos_opt().unwrap());
            }
        }
    }
}
