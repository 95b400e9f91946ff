//! What a replicator reads of a Cyrus mailbox's metadata (pure): the messages `cyrus.index`
//! names, and the name, uniqueid and keywords `cyrus.header` holds.
//!
//! `cyrus.index` (Cyrus 3.x, big-endian): a header whose first six 32-bit words are the
//! generation, the format, the minor version, the offset of the first record, the record size
//! and the number of records; then one record per message, the UID in its first word and the
//! system flags (the internal flags in the high bits) at byte 32. A record flagged UNLINKED
//! has no file any more; one flagged ARCHIVED has its file on the archive partition; an
//! EXPUNGED record keeps its file until `cyr_expire -X` removes record and file together.
//!
//! `cyrus.header`: a magic line, two quote lines, then a dlist such as
//! `%(T e N user.alice I hrnirh5lrm5eihduk7aqn6nb Q user.alice A %(alice lrs) U ($Work))`.

/// `\Deleted` and friends are the low bits; these are Cyrus's `FLAG_INTERNAL_*`.
pub const ARCHIVED: u32 = 1 << 29;
pub const UNLINKED: u32 = 1 << 30;
pub const EXPUNGED: u32 = 1 << 31;

/// The minor versions whose records put the UID at 0 and the flags at 32 (Cyrus 3.0 to 3.8).
const KNOWN_VERSIONS: std::ops::RangeInclusive<u32> = 13..=20;

/// One message as the index names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub uid: u32,
    pub flags: u32,
}

impl Record {
    /// Whether the message file is still there (on the data or the archive partition).
    pub fn has_file(&self) -> bool {
        self.flags & UNLINKED == 0
    }

    pub fn archived(&self) -> bool {
        self.flags & ARCHIVED != 0
    }

    /// The file's name: the UID and a dot.
    pub fn file_name(&self) -> String {
        format!("{}.", self.uid)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("cyrus.index is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("cyrus.index minor version {0} is not one pairsync reads (13 to 20: Cyrus 3.0 to 3.8)")]
    Version(u32),
    #[error("cyrus.index says {records} records of {size} bytes from byte {start}, but it has {len} bytes")]
    Truncated { records: u32, size: u32, start: u32, len: usize },
    #[error("cyrus.header: {0}")]
    Header(String),
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

/// The records of a `cyrus.index`.
pub fn records(index: &[u8]) -> Result<Vec<Record>, IndexError> {
    if index.len() < 24 {
        return Err(IndexError::Short(index.len()));
    }
    let (minor, start, size, count) = (word(index, 8), word(index, 12), word(index, 16), word(index, 20));
    if !KNOWN_VERSIONS.contains(&minor) || size < 36 {
        return Err(IndexError::Version(minor));
    }
    let end = u64::from(start) + u64::from(size) * u64::from(count);
    if end > index.len() as u64 || (start as usize) < 24 {
        return Err(IndexError::Truncated { records: count, size, start, len: index.len() });
    }
    Ok((0..count as usize)
        .map(|n| {
            let at = start as usize + n * size as usize;
            Record { uid: word(index, at), flags: word(index, at + 32) }
        })
        .collect())
}

/// What a `cyrus.header` says of its mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// `N`: the mailbox's name when the header was last written (a legacy-layout rename keeps
    /// the old one).
    pub name: String,
    /// `I`: the uniqueid (24 characters in 3.6, the IMAP MAILBOXID).
    pub uniqueid: String,
    /// `T`: the mailbox type (`e` mail, `f` a user's `#sieve`).
    pub mbtype: String,
}

/// A token of a dlist.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    Open,
    Close,
    Word(std::borrow::Cow<'a, str>),
}

fn tokens(text: &str) -> Result<Vec<Token<'_>>, IndexError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b' ' | b'\t' | b'\r' | b'\n' => at += 1,
            b'%' if bytes.get(at + 1) == Some(&b'(') => {
                out.push(Token::Open);
                at += 2;
            }
            b'(' => {
                out.push(Token::Open);
                at += 1;
            }
            b')' => {
                out.push(Token::Close);
                at += 1;
            }
            b'"' => {
                let mut word = String::new();
                at += 1;
                loop {
                    match bytes.get(at) {
                        None => return Err(IndexError::Header("a quoted string is not closed".into())),
                        Some(b'"') => break,
                        Some(b'\\') if at + 1 < bytes.len() => {
                            word.push(bytes[at + 1] as char);
                            at += 2;
                        }
                        Some(_) => {
                            let c = text[at..].chars().next().expect("in range");
                            word.push(c);
                            at += c.len_utf8();
                        }
                    }
                }
                at += 1;
                out.push(Token::Word(word.into()));
            }
            _ => {
                let start = at;
                while at < bytes.len() && !b" \t\r\n()\"".contains(&bytes[at]) {
                    at += 1;
                }
                out.push(Token::Word(text[start..at].into()));
            }
        }
    }
    Ok(out)
}

/// The name, uniqueid and type in a `cyrus.header`.
pub fn header(bytes: &[u8]) -> Result<Header, IndexError> {
    let text = String::from_utf8_lossy(bytes);
    let start = text.find("%(").ok_or_else(|| IndexError::Header("no %( record (an old header format?)".into()))?;
    let tokens = tokens(&text[start..])?;
    let mut header = Header::default();
    // Top-level pairs only: KEY VALUE, where VALUE may be a list (skipped).
    let mut depth = 0usize;
    let mut key: Option<String> = None;
    for token in tokens {
        match token {
            Token::Open => {
                depth += 1;
                if depth > 1 {
                    key = None;
                }
            }
            Token::Close => depth = depth.saturating_sub(1),
            Token::Word(word) if depth == 1 => match key.take() {
                None => key = Some(word.into_owned()),
                Some(k) => match k.as_str() {
                    "N" => header.name = word.into_owned(),
                    "I" => header.uniqueid = word.into_owned(),
                    "T" => header.mbtype = word.into_owned(),
                    _ => {}
                },
            },
            Token::Word(_) => {}
        }
    }
    if header.name.is_empty() || header.uniqueid.is_empty() {
        return Err(IndexError::Header("no N (name) or I (uniqueid)".into()));
    }
    Ok(header)
}

/// The header with its `N` set to `name` (a legacy-layout folder restored under the name its
/// path means: Cyrus keeps the old name there after a rename).
pub fn with_name(bytes: &[u8], name: &str) -> Result<Vec<u8>, IndexError> {
    let find = |from: usize, what: &[u8]| bytes[from..].windows(what.len()).position(|w| w == what).map(|p| p + from);
    let start = find(0, b"%(").ok_or_else(|| IndexError::Header("no %( record".into()))?;
    let at = find(start, b" N ").ok_or_else(|| IndexError::Header("no N".into()))? + 3;
    let rest = &bytes[at..];
    // The old value: a quoted string (escapes skipped) or an atom.
    let old_len = if rest.first() == Some(&b'"') {
        let mut n = 1;
        while n < rest.len() && rest[n] != b'"' {
            n += if rest[n] == b'\\' { 2 } else { 1 };
        }
        n + 1
    } else {
        rest.iter().position(|b| b" \t\r\n()".contains(b)).unwrap_or(rest.len())
    };
    let quoted = if name.bytes().any(|b| b" ()\"\\%{}*".contains(&b)) {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        name.to_string()
    };
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&rest[old_len.min(rest.len())..]);
    header(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index of minor version 17 with these (uid, flags).
    pub fn index(records: &[(u32, u32)]) -> Vec<u8> {
        let mut bytes = vec![0u8; 160];
        for (at, value) in [(0, 1u32), (4, 0), (8, 17), (12, 160), (16, 112), (20, records.len() as u32)] {
            bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        for (uid, flags) in records {
            let mut record = vec![0u8; 112];
            record[0..4].copy_from_slice(&uid.to_be_bytes());
            record[32..36].copy_from_slice(&flags.to_be_bytes());
            bytes.extend(record);
        }
        bytes
    }

    #[test]
    fn records_are_read_with_their_flags() {
        let bytes = index(&[(1, 1 << 4), (2, EXPUNGED), (3, EXPUNGED | UNLINKED), (4, ARCHIVED)]);
        let records = records(&bytes).unwrap();
        assert_eq!(records.iter().map(|r| r.uid).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert!(records[0].has_file() && records[1].has_file());
        assert!(!records[2].has_file());
        assert!(records[3].archived() && !records[0].archived());
        assert_eq!(records[0].file_name(), "1.");
        assert!(super::records(&index(&[])).unwrap().is_empty());
    }

    #[test]
    fn a_broken_index_is_an_error_not_a_guess() {
        assert_eq!(records(&[0; 10]), Err(IndexError::Short(10)));
        let mut bytes = index(&[(1, 0)]);
        bytes[8..12].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(records(&bytes), Err(IndexError::Version(9)));
        let bytes = index(&[(1, 0), (2, 0)]);
        assert!(matches!(records(&bytes[..200]), Err(IndexError::Truncated { .. })));
    }

    const HEADER: &[u8] = b"\xa1\x02\x8b\x0dCyrus mailbox header\n\"The best thing about this system was that it had lots of goals.\"\n\t--Jim Morris on Andrew\n%(T e N user.alice I hrnirh5lrm5eihduk7aqn6nb Q user.alice A %(alice lrswipkxtecdan) U ($Work))\n";

    #[test]
    fn the_header_gives_name_uniqueid_and_type() {
        let h = header(HEADER).unwrap();
        assert_eq!(
            h,
            Header { name: "user.alice".into(), uniqueid: "hrnirh5lrm5eihduk7aqn6nb".into(), mbtype: "e".into() }
        );
        let quoted = b"magic\n%(T e N \"user.alice.My Folder\" I abc A %(alice lrs))\n";
        assert_eq!(header(quoted).unwrap().name, "user.alice.My Folder");
        assert!(header(b"%(T e A %(alice lrs))").is_err());
        assert!(header(b"no record").is_err());
        assert!(header(b"%(N \"open").is_err());
    }

    #[test]
    fn the_name_is_rewritten_and_nothing_else() {
        let renamed = with_name(HEADER, "user.alice.Old Stuff").unwrap();
        let h = header(&renamed).unwrap();
        assert_eq!(h.name, "user.alice.Old Stuff");
        assert_eq!(h.uniqueid, "hrnirh5lrm5eihduk7aqn6nb");
        assert_eq!(&renamed[..30], &HEADER[..30], "the magic line is kept byte for byte");
        let back = with_name(&renamed, "user.alice").unwrap();
        assert_eq!(header(&back).unwrap().name, "user.alice");
        assert_eq!(back, HEADER);
    }
}
