//! What a file in a Maildir mailbox is, from its name alone (pure).
//!
//! A Maildir message is one file, `cur/<unique>:2,<flags>` or `new/<unique>`; its unique name
//! never changes while its flags (and the new/ -> cur/ move) rename it, so the unique name is
//! what a replica and its state remember a message by. Dovecot writes names like
//! `1700000000.M123456P789.host,S=1234,W=1260:2,FS`, with keywords as letters a-z after the
//! standard flags (`:2,Fa`, mapped per folder in `dovecot-keywords`).
//!
//! Owns: [`unique_name`] and [`flags`] (the info separator `:2,`, and the `!2,` / `;2,` of
//! stores and replicas that cannot hold ':'), [`classify`] (message, control file, cache,
//! temporary, other), [`uidvalidity`] (the header of `dovecot-uidlist`), and
//! [`colon_to_replica`] / [`replica_to_colon`] for replicas on FAT/exFAT or Windows FTP
//! servers.

use regex::RegexSet;

/// The config's default `ignore`: Dovecot's index, list index and mailbox log, which Dovecot
/// rebuilds from the Maildir and rewrites on every access (copying them is most of what
/// `rsync` sends after one delivery).
pub const DEFAULT_IGNORE: &str = r"^dovecot\.(index|list\.index|mailbox\.log)";

/// The ignore set the config uses when it names none.
pub fn default_ignore() -> RegexSet {
    RegexSet::new([DEFAULT_IGNORE]).expect("the default ignore pattern is valid")
}

/// Where the info of `file` (a file name, not a path) starts: the first `:2,` (the Maildir
/// spec's separator: info begins at a ':', which no unique name holds), else the last `!2,`
/// or `;2,`. Those are ordinary characters that another writer's unique name might hold, but
/// flags (letters) never do, so the last marker is the separator.
fn info_at(file: &str) -> Option<usize> {
    file.find(":2,").or_else(|| file.rfind("!2,").max(file.rfind(";2,")))
}

/// The unique name of a message file: the name before its info separator (`:2,`, or `!2,` /
/// `;2,` on stores and replicas that cannot hold ':': Evolution's and Dovecot's Windows-safe
/// builds, mbsync's `InfoDelimiter`), or the whole name when there is no info (a message
/// delivered to new/).
///
/// Only version 2 info counts: `X:1,...` (experimental info, which nothing writes) is its own
/// unique name, so two such files are never taken for one message.
pub fn unique_name(file: &str) -> &str {
    match info_at(file) {
        Some(at) => &file[..at],
        None => file,
    }
}

/// The flags of a message file: what follows its info separator (`FS`, `Fa`), "" if none.
pub fn flags(file: &str) -> &str {
    match info_at(file) {
        Some(at) => &file[at + 3..],
        None => "",
    }
}

/// What a file of a Maildir mailbox is, and so what replication does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// A message in `cur/` or `new/`, known by its unique name: renamed on the replica when
    /// only its flags or its folder changed, copied once otherwise.
    Message { unique: String },
    /// A file Dovecot or Courier needs to serve the mailbox as it was: UIDs
    /// (`dovecot-uidlist`, `courierimapuiddb`), keyword letters (`dovecot-keywords`,
    /// `courierimapkeywords/`), subscriptions, the Maildir++ folder marker, the UIDVALIDITY
    /// files, ACLs. Copied whole when it changes.
    Control,
    /// A name the config's ignore set matches (by default Dovecot's indexes and mailbox log):
    /// rebuilt by the server, not worth replicating.
    Cache,
    /// Transient, never replicated: anything under `tmp/`, a dot-file in `cur/` or `new/`
    /// (every Maildir reader skips those: NFS silly-renames, editors' leftovers), Dovecot's
    /// dotlocks (`*.lock`) and its temporary files (`temp.<host>.<pid>.*`, `.temp.*`), which
    /// it renames over a control file or deletes. A restored lock would stall Dovecot for
    /// minutes.
    Temp,
    /// A file inside a `.Folder` directory of the folder: in the INBOX (the Maildir root)
    /// those are the other mailboxes of the user (Maildir++), each classified by its own
    /// listing. Not part of this mailbox.
    OtherMailbox,
    /// Anything else: replicate it as a control file (copied whole when it changes), so the
    /// replica stays a working copy of the store (`maildirsize`, `dovecot-acl-list`,
    /// `courierpop3dsizelist`, files of tools we do not know).
    Other,
}

/// The control files of a Dovecot or Courier Maildir folder (see [`FileKind::Control`]).
const CONTROL: &[&str] = &[
    "dovecot-uidlist",
    "dovecot-keywords",
    "dovecot-uidvalidity",
    "dovecot-acl",
    "subscriptions",
    "maildirfolder",
    "courierimapuiddb",
    "courierimapacl",
    "courierimapsubscribed",
];

/// What the file at `rel`, a '/'-separated path relative to its mailbox folder, is. `ignore`
/// is matched against the file's name (its last component).
///
/// A path inside a `.Folder` directory is [`FileKind::OtherMailbox`], so a listing of the
/// INBOX may include the user's other mailboxes. Other deeper paths (not under `cur/`, `new/`,
/// `tmp/` or `courierimapkeywords/`) are not Maildir, and [`FileKind::Other`]: a backup errs
/// towards copying.
///
/// Precedence: temporary, another mailbox's, message, control, then the ignore set: an
/// ignore pattern never hides a message or a control file (a replica without
/// `dovecot-keywords` would show the wrong keywords).
pub fn classify(rel: &str, ignore: &RegexSet) -> FileKind {
    let (dir, name) = match rel.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, rel),
    };
    if rel == "tmp" || rel.starts_with("tmp/") {
        return FileKind::Temp;
    }
    if dir.is_some_and(|dir| dir.starts_with('.')) {
        return FileKind::OtherMailbox;
    }
    match dir {
        Some("cur" | "new") if !name.is_empty() => {
            if name.starts_with('.') {
                FileKind::Temp
            } else {
                // A flagged message may stay in new/ (`new/X:2,S`): Dovecot's flag changes do
                // not move it, so new/ and cur/ are read alike.
                FileKind::Message { unique: unique_name(name).to_string() }
            }
        }
        // Courier's keywords: a `:list` and one file per message with changed keywords.
        Some("courierimapkeywords") if !name.is_empty() => FileKind::Control,
        None if is_transient(name) => FileKind::Temp,
        None if is_control(name) => FileKind::Control,
        _ if ignore.is_match(name) => FileKind::Cache,
        _ => FileKind::Other,
    }
}

fn is_control(name: &str) -> bool {
    if CONTROL.contains(&name) {
        return true;
    }
    // Dovecot writes its UIDVALIDITY twice: in `dovecot-uidvalidity`, and as the name of an
    // empty `dovecot-uidvalidity.<hex>`.
    name.strip_prefix("dovecot-uidvalidity.")
        .is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Dovecot's dotlocks and temporary files directly in a folder (Maildir++ names them
/// `temp.<host>.<pid>.<random>` because a leading '.' would be a folder; other layouts
/// `.temp.`), and NFS silly-renames.
fn is_transient(name: &str) -> bool {
    name.ends_with(".lock") || name.starts_with("temp.") || name.starts_with(".temp.") || name.starts_with(".nfs")
}

/// The UIDVALIDITY in the header line of a `dovecot-uidlist` (the whole file, or its start).
///
/// Two formats, as Dovecot reads them (`maildir-uidlist.c`): version 3, `3 V1700000000 N42
/// G<guid>` (fields in any order, each a key letter and a value), and version 1 (Dovecot 1.0,
/// Courier's `courierimapuiddb`), `1 1700000000 42`. As for Dovecot, a header without a
/// non-zero UIDVALIDITY and next UID is broken: None, as for an empty file (being written), an
/// unknown version (2 was never released) or a number that is not plain decimal u32.
pub fn uidvalidity(uidlist: &[u8]) -> Option<u32> {
    let line = uidlist.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).ok()?;
    let (version, fields) = line.split_once(' ')?;
    let (validity, next_uid) = match version {
        "1" => {
            let mut numbers = fields.split_ascii_whitespace();
            (number(numbers.next()?)?, number(numbers.next()?)?)
        }
        "3" => {
            let (mut validity, mut next_uid) = (None, None);
            for field in fields.split(' ').filter(|f| !f.is_empty()) {
                let mut chars = field.chars();
                match (chars.next(), chars.as_str()) {
                    (Some('V'), value) => validity = Some(number(value)?),
                    (Some('N'), value) => next_uid = Some(number(value)?),
                    _ => {}
                }
            }
            (validity?, next_uid?)
        }
        _ => return None,
    };
    (validity != 0 && next_uid != 0).then_some(validity)
}

/// A plain decimal u32 (Dovecot writes nothing else).
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A master file name as a replica that cannot hold ':' stores it: the info separator `:2,`
/// written `<sep>2,` (`!2,` for `colon = "!"`). Only the info separator changes; a name
/// without one, or `sep` ':', is unchanged. Another ':' (Dovecot escapes those in host names,
/// so it never writes one) stays, and the replica refuses the name: a problem for that file.
pub fn colon_to_replica(name: &str, sep: char) -> String {
    match name.find(":2,") {
        Some(at) if sep != ':' => format!("{}{sep}{}", &name[..at], &name[at + 1..]),
        _ => name.to_string(),
    }
}

/// The inverse of [`colon_to_replica`]: a replica's `<sep>2,` back to `:2,` (for
/// `--restore`). The last `<sep>2,` is the separator, as in [`unique_name`]; a name that
/// already has `:2,` or has no `<sep>2,` is unchanged.
pub fn replica_to_colon(name: &str, sep: char) -> String {
    if sep == ':' || name.contains(":2,") {
        return name.to_string();
    }
    let marker = format!("{sep}2,");
    match name.rfind(&marker) {
        Some(at) => format!("{}:{}", &name[..at], &name[at + sep.len_utf8()..]),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOVECOT: &str = "1700000000.M123456P789.host,S=1234,W=1260";

    #[test]
    fn unique_names_and_flags() {
        // (case, file name, unique name, flags)
        let cases: &[(&str, String, &str, &str)] = &[
            ("new/ without info", DOVECOT.into(), DOVECOT, ""),
            ("flags", format!("{DOVECOT}:2,FS"), DOVECOT, "FS"),
            ("keywords", format!("{DOVECOT}:2,Fa"), DOVECOT, "Fa"),
            ("no flags yet", format!("{DOVECOT}:2,"), DOVECOT, ""),
            ("all flags and keywords", format!("{DOVECOT}:2,DFPRSTabz"), DOVECOT, "DFPRSTabz"),
            ("bang replica", format!("{DOVECOT}!2,S"), DOVECOT, "S"),
            ("semicolon store", format!("{DOVECOT};2,RS"), DOVECOT, "RS"),
            ("courier", "1700000000.M1P2V3I4_1.mx,S=99:2,S".into(), "1700000000.M1P2V3I4_1.mx,S=99", "S"),
            ("postfix", "1700000000.V801I2M3.mx".into(), "1700000000.V801I2M3.mx", ""),
            ("experimental info", "X:1,foo".into(), "X:1,foo", ""),
            ("colon wins over bang", "a!2,b:2,S".into(), "a!2,b", "S"),
            ("last bang", "a!2,b!2,S".into(), "a!2,b", "S"),
            ("last of bang and semicolon", "a;2,b!2,S".into(), "a;2,b", "S"),
            ("comma without marker", "a,2,S".into(), "a,2,S", ""),
        ];
        for (case, file, unique, flag_text) in cases {
            assert_eq!(unique_name(file), *unique, "{case}");
            assert_eq!(flags(file), *flag_text, "{case}");
        }
    }

    #[test]
    fn classify_table() {
        let ignore = default_ignore();
        let message = |unique: &str| FileKind::Message { unique: unique.to_string() };
        let cases: &[(&str, String, FileKind)] = &[
            ("cur message", format!("cur/{DOVECOT}:2,FS"), message(DOVECOT)),
            ("new message", format!("new/{DOVECOT}"), message(DOVECOT)),
            ("flagged in new/", format!("new/{DOVECOT}:2,S"), message(DOVECOT)),
            ("bang replica", format!("cur/{DOVECOT}!2,S"), message(DOVECOT)),
            ("tmp file", format!("tmp/{DOVECOT}"), FileKind::Temp),
            ("tmp deeper", "tmp/x/y".into(), FileKind::Temp),
            ("tmp itself", "tmp".into(), FileKind::Temp),
            ("dovecot temp in tmp/", "tmp/temp.mx.123.abc".into(), FileKind::Temp),
            ("dot-file in cur", "cur/.nfs0001".into(), FileKind::Temp),
            ("dot-file in new", "new/.x".into(), FileKind::Temp),
            ("uidlist", "dovecot-uidlist".into(), FileKind::Control),
            ("uidlist lock", "dovecot-uidlist.lock".into(), FileKind::Temp),
            ("keywords", "dovecot-keywords".into(), FileKind::Control),
            ("subscriptions", "subscriptions".into(), FileKind::Control),
            ("subscriptions lock", "subscriptions.lock".into(), FileKind::Temp),
            ("maildirfolder", "maildirfolder".into(), FileKind::Control),
            ("uidvalidity", "dovecot-uidvalidity".into(), FileKind::Control),
            ("uidvalidity hex", "dovecot-uidvalidity.6553f100".into(), FileKind::Control),
            ("uidvalidity not hex", "dovecot-uidvalidity.tmp".into(), FileKind::Other),
            ("uidvalidity empty hex", "dovecot-uidvalidity.".into(), FileKind::Other),
            ("acl", "dovecot-acl".into(), FileKind::Control),
            ("courier uiddb", "courierimapuiddb".into(), FileKind::Control),
            ("courier keywords", "courierimapkeywords/:list".into(), FileKind::Control),
            ("courier keyword file", format!("courierimapkeywords/{DOVECOT}"), FileKind::Control),
            ("courier subscribed", "courierimapsubscribed".into(), FileKind::Control),
            ("dovecot temp", "temp.mx.123.abcdef".into(), FileKind::Temp),
            ("imapdir temp", ".temp.mx.123.abcdef".into(), FileKind::Temp),
            ("index", "dovecot.index".into(), FileKind::Cache),
            ("index log", "dovecot.index.log".into(), FileKind::Cache),
            ("index log 2", "dovecot.index.log.2".into(), FileKind::Cache),
            ("index cache", "dovecot.index.cache".into(), FileKind::Cache),
            ("list index", "dovecot.list.index.log".into(), FileKind::Cache),
            ("mailbox log", "dovecot.mailbox.log".into(), FileKind::Cache),
            ("quota", "maildirsize".into(), FileKind::Other),
            ("acl list", "dovecot-acl-list".into(), FileKind::Other),
            ("unknown", "notes.txt".into(), FileKind::Other),
            ("deeper in cur", "cur/sub/x".into(), FileKind::Other),
            ("deeper cache name", "x/dovecot.index".into(), FileKind::Cache),
            ("a sub-mailbox's message", format!(".Sent/cur/{DOVECOT}:2,S"), FileKind::OtherMailbox),
            ("a sub-mailbox's control file", ".Sent/maildirfolder".into(), FileKind::OtherMailbox),
            ("a sub-mailbox's uidlist", ".Work.2024/dovecot-uidlist".into(), FileKind::OtherMailbox),
            ("a sub-mailbox's index", ".Sent/dovecot.index".into(), FileKind::OtherMailbox),
            ("a top-level dot-file", ".hidden".into(), FileKind::Other),
        ];
        for (case, rel, kind) in cases {
            assert_eq!(&classify(rel, &ignore), kind, "{case}: {rel}");
        }
    }

    #[test]
    fn ignore_set_is_matched_on_the_name_and_never_hides_messages_or_control() {
        let ignore = RegexSet::new([r"^notes", r"^dovecot-", r"^1700"]).unwrap();
        assert_eq!(classify("notes.txt", &ignore), FileKind::Cache);
        assert_eq!(classify("x/notes.txt", &ignore), FileKind::Cache);
        assert_eq!(classify("dovecot-keywords", &ignore), FileKind::Control);
        assert_eq!(classify("cur/1700:2,S", &ignore), FileKind::Message { unique: "1700".into() });
        assert_eq!(classify("dovecot.index", &RegexSet::empty()), FileKind::Other);
    }

    #[test]
    fn uidvalidity_headers() {
        let cases: &[(&str, &[u8], Option<u32>)] = &[
            ("version 3", b"3 V1700000000 N42 G3085f01b7f11094c501100008c4a11c1\n1 :x\n", Some(1700000000)),
            ("version 3 any order", b"3 N42 G00 V1275660208\n", Some(1275660208)),
            ("version 3 unknown field", b"3 V7 N1 Zfoo\n", Some(7)),
            ("version 3 no newline", b"3 V7 N1", Some(7)),
            ("version 3 CRLF", b"3 V7 N1\r\n", Some(7)),
            ("version 1", b"1 1700000000 42\n1 1700000000.M1P2.h:2,S\n", Some(1700000000)),
            ("version 1 courier", b"1 1062540000 3\n", Some(1062540000)),
            ("empty", b"", None),
            ("version 3 without V", b"3 N42\n", None),
            ("version 3 without N", b"3 V7\n", None),
            ("uidvalidity 0", b"3 V0 N1\n", None),
            ("next uid 0", b"1 7 0\n", None),
            ("version 1 short", b"1 7\n", None),
            ("version 2", b"2 7 1\n", None),
            ("not a number", b"3 Vx N1\n", None),
            ("signed", b"3 V+7 N1\n", None),
            ("overflow", b"3 V4294967296 N1\n", None),
            ("max", b"3 V4294967295 N1\n", Some(u32::MAX)),
            ("no version", b"V7 N1\n", None),
            ("not utf-8", b"3 V7 N1 G\xff\n", None),
            ("multibyte key", "3 \u{e9}x V7 N1\n".as_bytes(), Some(7)),
        ];
        for (case, text, want) in cases {
            assert_eq!(uidvalidity(text), *want, "{case}");
        }
    }

    #[test]
    fn colon_mapping() {
        // (case, master name, replica name with '!')
        let cases: &[(&str, String, String)] = &[
            ("flags", format!("{DOVECOT}:2,FS"), format!("{DOVECOT}!2,FS")),
            ("keywords", format!("{DOVECOT}:2,Fa"), format!("{DOVECOT}!2,Fa")),
            ("empty flags", format!("{DOVECOT}:2,"), format!("{DOVECOT}!2,")),
            ("no info", DOVECOT.into(), DOVECOT.into()),
            ("only the info separator", "a:b:2,S".into(), "a:b!2,S".into()),
            ("a bang in the unique name", "a!2,b:2,S".into(), "a!2,b!2,S".into()),
            ("experimental info kept", "X:1,foo".into(), "X:1,foo".into()),
        ];
        for (case, master, replica) in cases {
            assert_eq!(&colon_to_replica(master, '!'), replica, "{case}");
            assert_eq!(&replica_to_colon(replica, '!'), master, "{case}: back");
            assert_eq!(unique_name(replica), unique_name(master), "{case}: same unique name");
            assert_eq!(&colon_to_replica(master, ':'), master, "{case}: ':' is unchanged");
            assert_eq!(&replica_to_colon(master, ':'), master, "{case}: ':' is unchanged back");
        }
        assert_eq!(colon_to_replica("a:2,S", ';'), "a;2,S");
        assert_eq!(replica_to_colon("a;2,S", ';'), "a:2,S");
        // Only the configured separator maps back.
        assert_eq!(replica_to_colon("a;2,S", '!'), "a;2,S");
    }
}
