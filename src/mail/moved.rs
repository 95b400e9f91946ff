//! Mailboxes renamed on the master (pure): so that a renamed folder is one rename on the
//! replica rather than a rename per message.
//!
//! Dovecot renames a Maildir++ folder with one rename(2): its messages keep their unique names.
//! So a folder the state knows that is gone from the master, and a folder the state does not
//! know whose messages are (nearly all) the old one's, are one folder under a new name. New
//! deliveries since the last pass may have joined it, and a few messages may have been
//! expunged meanwhile: the test is that at least 9 in 10 of the old folder's recorded messages
//! are in the new one.

use std::collections::HashSet;

/// A mailbox gone from the master: its folder and the unique names the state recorded in it.
pub struct Gone<'a> {
    pub folder: &'a str,
    pub recorded: HashSet<&'a str>,
}

/// A mailbox new to the state: its folder and the unique names the master holds in it.
pub struct New<'a> {
    pub folder: &'a str,
    pub holds: HashSet<&'a str>,
}

/// The renames, (old folder, new folder), each folder at most once; the best match first.
pub fn renamed(gone: &[Gone], new: &[New]) -> Vec<(String, String)> {
    let mut candidates: Vec<(usize, usize, usize)> = Vec::new();
    for (g, old) in gone.iter().enumerate() {
        if old.recorded.is_empty() {
            continue;
        }
        for (n, fresh) in new.iter().enumerate() {
            let shared = old.recorded.iter().filter(|u| fresh.holds.contains(*u)).count();
            if shared * 10 >= old.recorded.len() * 9 {
                candidates.push((shared, g, n));
            }
        }
    }
    // The most shared first; ties in the order given, so the result does not depend on hashing.
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let (mut used_gone, mut used_new) = (HashSet::new(), HashSet::new());
    let mut renames = Vec::new();
    for (_, g, n) in candidates {
        if !used_gone.contains(&g) && !used_new.contains(&n) {
            used_gone.insert(g);
            used_new.insert(n);
            renames.push((gone[g].folder.to_string(), new[n].folder.to_string()));
        }
    }
    renames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone<'a>(folder: &'a str, recorded: &[&'a str]) -> Gone<'a> {
        Gone { folder, recorded: recorded.iter().copied().collect() }
    }

    fn new<'a>(folder: &'a str, holds: &[&'a str]) -> New<'a> {
        New { folder, holds: holds.iter().copied().collect() }
    }

    #[test]
    fn which_folders_are_renames() {
        let ten: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
        type Case<'a> = (&'a str, Vec<Gone<'a>>, Vec<New<'a>>, Vec<(&'a str, &'a str)>);
        let cases: Vec<Case> = vec![
            ("a plain rename", vec![gone("u/.A", &ten)], vec![new("u/.B", &ten)], vec![("u/.A", "u/.B")]),
            (
                "a rename with new deliveries since",
                vec![gone("u/.A", &ten[..5])],
                vec![new("u/.B", &ten)],
                vec![("u/.A", "u/.B")],
            ),
            (
                "one of ten expunged meanwhile is still a rename",
                vec![gone("u/.A", &ten)],
                vec![new("u/.B", &ten[1..])],
                vec![("u/.A", "u/.B")],
            ),
            (
                "two of ten gone is a move of messages, not a rename",
                vec![gone("u/.A", &ten)],
                vec![new("u/.B", &ten[2..])],
                vec![],
            ),
            ("an empty folder is never matched", vec![gone("u/.A", &[])], vec![new("u/.B", &[])], vec![]),
            ("nothing new", vec![gone("u/.A", &ten)], vec![], vec![]),
            (
                "two renames at once each find their own",
                vec![gone("u/.A", &ten[..5]), gone("u/.C", &ten[5..])],
                vec![new("u/.D", &ten[5..]), new("u/.B", &ten[..5])],
                vec![("u/.A", "u/.B"), ("u/.C", "u/.D")],
            ),
            (
                "of two candidates, the one holding more wins",
                vec![gone("u/.A", &ten[..1])],
                vec![new("u/.B", &ten[..1]), new("u/.C", &ten[..1])],
                vec![("u/.A", "u/.B")],
            ),
        ];
        for (name, gone, new, want) in cases {
            let got = renamed(&gone, &new);
            let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
