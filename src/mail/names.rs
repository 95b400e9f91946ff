//! Cyrus mailbox names <-> folders of a Maildir store, and finding a store's users and
//! mailboxes.
//!
//! Mailboxes carry the names Cyrus gives them whatever the layout on disk, so one sync log
//! drives a Cyrus spool and a Maildir store alike. With the default `user_dir` template
//! `{user}/Maildir` (paths are '/'-separated and relative to the store root):
//!
//! | Cyrus name                    | user                | folder                              |
//! |-------------------------------|---------------------|-------------------------------------|
//! | `user.alice`                  | `alice`             | `alice/Maildir` (INBOX)             |
//! | `user.alice.Sent`             | `alice`             | `alice/Maildir/.Sent`               |
//! | `user.alice.Work.2024`        | `alice`             | `alice/Maildir/.Work.2024`          |
//! | `user.alice.Work Stuff`       | `alice`             | `alice/Maildir/.Work Stuff`         |
//! | `user.john^doe`               | `john.doe`          | `john.doe/Maildir`                  |
//! | `example.com!user.alice`      | `alice@example.com` | `alice@example.com/Maildir`         |
//!
//! Maildir++ nests folders with dots exactly as Cyrus does, so a folder's components map one to
//! one; only a user name maps '.' <-> '^'. A '^' inside a folder name is kept as it is: Maildir++
//! cannot hold a '.' in a folder name, so there is nothing to map it to, and keeping it makes
//! every listed folder round-trip to the same directory.
//!
//! Names come from a sync log that anyone with delivery access may influence, so
//! [`Layout::mailbox`] is a gate: a name that could reach outside its user's Maildir ('/', a
//! control character, an empty component, a user that maps to '.' or '..') is refused with an
//! error naming it, and a name that is not a user's mailbox (`shared.x`, Cyrus's
//! `DELETED.user.alice.Trash.6B02`) is [`NameError::NotAUserMailbox`], which the caller skips
//! with a note: a Maildir store has no such folder.
//!
//! Owns: [`Layout`] (the `user_dir` and `sieve_dir` templates), [`Mailbox`], [`NameError`],
//! [`user_of`]. Listing ([`Layout::users`], [`Layout::mailboxes`]) is the only I/O here; it
//! never follows a symbolic link inside the store.

use std::fs;
use std::io;
use std::path::Path;

/// The `user_dir` template when the config names none.
pub const DEFAULT_USER_DIR: &str = "{user}/Maildir";

/// Why a name, a user or a template was refused. Every message names what it refuses; hostile
/// text is shown quoted and escaped (`{:?}`) so a control character cannot reach a terminal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A well-formed name outside `user.`: a shared folder (`shared.x`), Cyrus's delayed
    /// delete (`DELETED.user.alice.Trash.6B02`), a top-level `user`. A Maildir store has no
    /// such mailbox: skip it with a note, not as a failure.
    #[error("mailbox {name:?}: not a user's mailbox (a Maildir store holds only user.* mailboxes)")]
    NotAUserMailbox { name: String },
    /// A name that is malformed or would leave its user's Maildir.
    #[error("mailbox {name:?}: {reason}")]
    BadMailbox { name: String, reason: String },
    /// A user name (from `-u`, `-s`, a log line) that cannot be a folder of the store.
    #[error("user {user:?}: {reason}")]
    BadUser { user: String, reason: &'static str },
    /// A `user_dir` or `sieve_dir` template that could not place users safely.
    #[error("{which} template {template:?}: {reason}")]
    BadTemplate { which: &'static str, template: String, reason: String },
    /// The template places users by `{domain}` and this user has none.
    #[error("user {user:?} has no domain, but the {which} template {template:?} needs one")]
    NoDomain { user: String, which: &'static str, template: String },
}

/// One mailbox of a Maildir store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox {
    /// The Cyrus name: `user.alice.Sent`.
    pub name: String,
    /// Its owner as the store knows them: `alice`, `john.doe`, `alice@example.com`.
    pub user: String,
    /// The Maildir folder, relative to the store: `alice/Maildir/.Sent`.
    pub folder: String,
}

/// Where a store keeps each user's Maildir (and Sieve scripts): the config's `user_dir` and
/// `sieve_dir` templates, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    user_dir: Template,
    sieve_dir: Option<Template>,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            user_dir: Template::parse("user_dir", DEFAULT_USER_DIR).expect("the default is valid"),
            sieve_dir: None,
        }
    }
}

impl Layout {
    /// Checks both templates: relative, '/'-separated, no '.' or '..' or empty component, only
    /// the placeholders `{user}` (`alice`, `alice@example.com`), `{domain}` and `{localpart}`,
    /// at most one per component, and enough of them to tell users apart: `{user}`, or both
    /// `{domain}` and `{localpart}` (`{localpart}` alone would put alice@a.com and alice@b.com
    /// in one folder).
    pub fn new(user_dir: &str, sieve_dir: Option<&str>) -> Result<Layout, NameError> {
        Ok(Layout {
            user_dir: Template::parse("user_dir", user_dir)?,
            sieve_dir: sieve_dir.map(|text| Template::parse("sieve_dir", text)).transpose()?,
        })
    }

    /// The `user_dir` template as written.
    pub fn user_dir(&self) -> &str {
        &self.user_dir.text
    }

    /// The `sieve_dir` template as written, if there is one.
    pub fn sieve_dir(&self) -> Option<&str> {
        self.sieve_dir.as_ref().map(|t| t.text.as_str())
    }

    /// Resolves a Cyrus mailbox name (hostile input) into its user and folder.
    ///
    /// Errors: [`NameError::NotAUserMailbox`] for a name outside `user.` (skip it);
    /// [`NameError::BadMailbox`] for anything that is malformed or could leave the user's
    /// Maildir, naming the mailbox and why.
    pub fn mailbox(&self, name: &str) -> Result<Mailbox, NameError> {
        let parsed = parse(name)?;
        let root = self
            .user_root(&parsed.user)
            .map_err(|e| NameError::BadMailbox { name: name.to_string(), reason: e.to_string() })?;
        let folder = match parsed.folder {
            Some(folder) => format!("{root}/.{folder}"),
            None => root,
        };
        Ok(Mailbox { name: name.to_string(), user: parsed.user, folder })
    }

    /// The Cyrus name of `user`'s INBOX (`folder` None) or of a Maildir++ folder (its name
    /// without the leading '.': `Work.2024`). The inverse of [`Layout::mailbox`] for a valid
    /// user and folder; it does not check them.
    pub fn name(&self, user: &str, folder: Option<&str>) -> String {
        let (local, domain) = split_user(user);
        let part = local.replace('.', "^");
        let mut name = match domain {
            Some(domain) => format!("{domain}!user.{part}"),
            None => format!("user.{part}"),
        };
        if let Some(folder) = folder {
            name.push('.');
            name.push_str(folder);
        }
        name
    }

    /// A user as the store knows them, from a Cyrus user (a mailbox name's user part, or a
    /// userid of a sync log line): a '^' in the local part is a '.' (`john^doe` -> `john.doe`,
    /// `john^doe@example.com` -> `john.doe@example.com`); a plain userid is unchanged. It does
    /// not check the user: [`Layout::user_root`] does.
    pub fn user_name(&self, cyrus_user: &str) -> String {
        let (local, domain) = split_user(cyrus_user);
        with_domain(&local.replace('^', "."), domain)
    }

    /// The inverse of [`Layout::user_name`]: `john.doe@example.com` -> `john^doe@example.com`.
    pub fn cyrus_user(&self, user: &str) -> String {
        let (local, domain) = split_user(user);
        with_domain(&local.replace('.', "^"), domain)
    }

    /// The folder of the store, relative to its root, that holds every user's Maildir: the
    /// literal components of `user_dir` before its first placeholder ("" for `{user}/Maildir`,
    /// `vhosts` for `vhosts/{domain}/{localpart}`).
    pub fn users_folder(&self) -> String {
        let literal = self.user_dir.components.iter().take_while(|c| c.var.is_none());
        literal.map(|c| c.prefix.as_str()).collect::<Vec<_>>().join("/")
    }

    /// `user`'s Maildir relative to the store (`alice/Maildir`), after checking the user.
    pub fn user_root(&self, user: &str) -> Result<String, NameError> {
        self.user_dir.expand(user)
    }

    /// `user`'s Sieve folder relative to the store, if the layout has a `sieve_dir`.
    pub fn sieve_root(&self, user: &str) -> Option<Result<String, NameError>> {
        self.sieve_dir.as_ref().map(|t| t.expand(user))
    }

    /// Every user with a Maildir (a folder with `cur/`) where the `user_dir` template puts one,
    /// sorted: `{user}/Maildir` finds each `store/X/Maildir`, `{domain}/{localpart}/Maildir`
    /// each `store/D/L/Maildir` as `L@D`.
    ///
    /// Skipped: symbolic links (an alias domain linked to its primary would be backed up twice,
    /// and a link may lead out of the store), names that cannot be a user (beginning with '.',
    /// holding '^' or '!', not UTF-8), and `lost+found`, which mkfs puts at a file system's
    /// root, readable by root only.
    ///
    /// Errors: the store root missing or not a directory; any other folder of the walk that
    /// cannot be read, with its path (rather than skip a user whose mail would then silently go
    /// unreplicated).
    pub fn users(&self, store: &Path) -> io::Result<Vec<String>> {
        // The root itself may be a link (/var/vmail -> /srv/vmail); only links below it are not
        // followed.
        let meta = fs::metadata(store).map_err(|e| at(store, e))?;
        if !meta.is_dir() {
            return Err(at(store, io::Error::new(io::ErrorKind::NotADirectory, "the mail store is not a folder")));
        }
        let mut found = Vec::new();
        self.walk(store, 0, &Bindings::default(), &mut found)?;
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// One level of [`Layout::users`]: `dir` matched the template's first `depth` components.
    fn walk(&self, dir: &Path, depth: usize, bound: &Bindings, found: &mut Vec<String>) -> io::Result<()> {
        let Some(component) = self.user_dir.components.get(depth) else {
            if is_real_dir(&dir.join("cur"))? {
                if let Some(user) = bound.user().filter(|user| check_user(user).is_ok()) {
                    found.push(user);
                }
            }
            return Ok(());
        };
        let Some(var) = component.var else {
            let next = dir.join(&component.prefix);
            if is_real_dir(&next)? {
                self.walk(&next, depth + 1, bound, found)?;
            }
            return Ok(());
        };
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            // Removed since its parent was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(at(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| at(dir, e))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if name == "lost+found" {
                continue;
            }
            let Some(value) =
                name.strip_prefix(&component.prefix).and_then(|rest| rest.strip_suffix(&component.suffix))
            else {
                continue;
            };
            let valid = match var {
                Var::User => check_user(value).is_ok(),
                Var::Domain | Var::Localpart => part_problem(value).is_none() && !value.contains('@'),
            };
            // DirEntry::file_type does not follow a link: a linked folder is not a directory here.
            if !valid || !entry.file_type().map_err(|e| at(&entry.path(), e))?.is_dir() {
                continue;
            }
            if let Some(next) = bound.bind(var, value) {
                self.walk(&entry.path(), depth + 1, &next, found)?;
            }
        }
        Ok(())
    }

    /// `user`'s mailboxes: the INBOX (the Maildir itself) and every `.Folder` directly in it
    /// that has `cur/`, sorted by name (the INBOX first).
    ///
    /// Skipped: a folder without `cur/` (not a mailbox, or one being created or deleted), a
    /// linked folder, and a folder no Cyrus name can express (`..a`, `.a..b`, a trailing '.', a
    /// control character, not UTF-8): Dovecot never creates those.
    ///
    /// Errors: `InvalidInput` for a user that cannot be in the store; `NotFound` when the user's
    /// Maildir is missing, reached through a symbolic link, or has no `cur/` (an unknown user);
    /// the path and cause of any folder that cannot be read.
    pub fn mailboxes(&self, store: &Path, user: &str) -> io::Result<Vec<Mailbox>> {
        let root = self.user_root(user).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // Every folder from the store down to the Maildir must be a real one: a link anywhere
        // on the way could lead out of the store.
        let mut dir = store.to_path_buf();
        for component in root.split('/') {
            dir.push(component);
            if !is_real_dir(&dir)? {
                return Err(at(
                    &dir,
                    io::Error::new(io::ErrorKind::NotFound, "no such folder (or a symbolic link, not followed)"),
                ));
            }
        }
        if !is_real_dir(&dir.join("cur"))? {
            return Err(at(&dir, io::Error::new(io::ErrorKind::NotFound, "not a Maildir (no cur/)")));
        }
        let mut mailboxes = vec![Mailbox { name: self.name(user, None), user: user.to_string(), folder: root.clone() }];
        for entry in fs::read_dir(&dir).map_err(|e| at(&dir, e))? {
            let entry = entry.map_err(|e| at(&dir, e))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            let Some(folder) = name.strip_prefix('.') else { continue };
            if !entry.file_type().map_err(|e| at(&entry.path(), e))?.is_dir()
                || !is_real_dir(&entry.path().join("cur"))?
            {
                continue;
            }
            // Round trip through the name: the folder is listed only if its name leads back to it.
            let expected = format!("{root}/{name}");
            if let Ok(mailbox) = self.mailbox(&self.name(user, Some(folder))) {
                if mailbox.folder == expected {
                    mailboxes.push(mailbox);
                }
            }
        }
        mailboxes.sort();
        Ok(mailboxes)
    }
}

/// The user a Cyrus mailbox name belongs to (`example.com!user.john^doe.Sent` ->
/// `john.doe@example.com`); None for a name that is not a valid user mailbox.
pub fn user_of(name: &str) -> Option<String> {
    parse(name).ok().map(|parsed| parsed.user)
}

/// A Cyrus name taken apart, after the checks every name must pass.
struct Parsed<'a> {
    user: String,
    /// The Maildir++ folder name without its leading '.', None for the INBOX.
    folder: Option<&'a str>,
}

fn parse(name: &str) -> Result<Parsed<'_>, NameError> {
    let bad = |reason: String| NameError::BadMailbox { name: name.to_string(), reason };
    if name.is_empty() {
        return Err(bad("empty".into()));
    }
    if name.contains('/') {
        return Err(bad("a '/' (a mailbox name never holds one: it would lead out of the store)".into()));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("a control character".into()));
    }
    let (domain, rest) = match name.split_once('!') {
        Some((domain, rest)) => (Some(domain), rest),
        None => (None, name),
    };
    if rest.contains('!') {
        return Err(bad("more than one '!' (only the domain is followed by one: example.com!user.alice)".into()));
    }
    if let Some(domain) = domain {
        if let Some(problem) = part_problem(domain).or(domain.contains('@').then_some("an '@'")) {
            return Err(bad(format!("the domain {domain:?}: {problem}")));
        }
    }
    let Some(after) = rest.strip_prefix("user.") else {
        return Err(NameError::NotAUserMailbox { name: name.to_string() });
    };
    let (part, folder) = match after.split_once('.') {
        Some((part, folder)) => (part, Some(folder)),
        None => (after, None),
    };
    if part.is_empty() {
        return Err(bad("no user after 'user.'".into()));
    }
    // '^' is how Cyrus writes a '.' in a user name; '@' never appears in a Cyrus user part (a
    // domain user is example.com!user.alice), so allowing it would give one folder two names.
    let user = part.replace('^', ".");
    if let Some(problem) = part_problem(&user).or(user.contains('@').then_some("an '@' (write example.com!user.alice)"))
    {
        return Err(bad(format!("the user {user:?}: {problem}")));
    }
    if let Some(folder) = folder {
        // The folder's directory is "." + folder; its components hold no '.', so with none empty
        // it is never "." or "..".
        if folder.split('.').any(str::is_empty) {
            return Err(bad("an empty component (two dots in a row, or a trailing dot)".into()));
        }
    }
    Ok(Parsed { user: with_domain(&user, domain), folder })
}

/// `alice`, `example.com` -> `alice@example.com`.
fn with_domain(local: &str, domain: Option<&str>) -> String {
    match domain {
        Some(domain) => format!("{local}@{domain}"),
        None => local.to_string(),
    }
}

/// `alice@example.com` -> (`alice`, `example.com`); `alice` -> (`alice`, None).
fn split_user(user: &str) -> (&str, Option<&str>) {
    match user.split_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (user, None),
    }
}

/// Checks a user (`alice`, `john.doe`, `alice@example.com`) can be one folder of the store and
/// has exactly one Cyrus name.
fn check_user(user: &str) -> Result<(), NameError> {
    let bad = |reason| Err(NameError::BadUser { user: user.to_string(), reason });
    let (local, domain) = split_user(user);
    if let Some(problem) = part_problem(local) {
        return bad(problem);
    }
    if let Some(domain) = domain {
        if domain.contains('@') {
            return bad("more than one '@'");
        }
        if let Some(problem) = part_problem(domain) {
            return bad(match problem {
                "empty" => "an empty domain",
                _ => problem,
            });
        }
    }
    Ok(())
}

/// What keeps a local part or a domain from being a single folder name of the store with one
/// Cyrus spelling.
fn part_problem(part: &str) -> Option<&'static str> {
    if part.is_empty() {
        Some("empty")
    } else if part.starts_with('.') {
        // Covers '.' and '..'; an address's local part or domain never begins with '.' (RFC 5321).
        Some("begins with '.' (it could name '.' or '..' and leave the store)")
    } else if part.contains('/') {
        Some("a '/'")
    } else if part.chars().any(char::is_control) {
        Some("a control character")
    } else if part.contains('!') {
        Some("a '!' (Cyrus's domain separator)")
    } else if part.contains('^') {
        // Cyrus writes a '.' in a user name as '^', so a real '^' would share its name.
        Some("a '^' (Cyrus writes a '.' in a user name as '^')")
    } else {
        None
    }
}

/// A placeholder of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    User,
    Domain,
    Localpart,
}

/// One '/'-separated component of a template: literal text around at most one placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Component {
    prefix: String,
    var: Option<Var>,
    suffix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    which: &'static str,
    text: String,
    components: Vec<Component>,
}

impl Template {
    fn parse(which: &'static str, text: &str) -> Result<Template, NameError> {
        let bad = |reason: String| NameError::BadTemplate { which, template: text.to_string(), reason };
        if text.is_empty() {
            return Err(bad("empty".into()));
        }
        if text.starts_with('/') {
            return Err(bad("absolute: give a path relative to the store".into()));
        }
        if text.chars().any(char::is_control) {
            return Err(bad("a control character".into()));
        }
        let mut components = Vec::new();
        for part in text.split('/') {
            if part.is_empty() {
                return Err(bad("an empty component ('//' or a trailing '/')".into()));
            }
            if part == "." || part == ".." {
                return Err(bad("a '.' or '..' component: a user's folder must stay inside the store".into()));
            }
            components.push(Component::parse(part).map_err(bad)?);
        }
        let has = |var| components.iter().any(|c| c.var == Some(var));
        let tells_users_apart = has(Var::User) || (has(Var::Domain) && has(Var::Localpart));
        if !tells_users_apart {
            return Err(bad("no {user} (nor both {domain} and {localpart}): users would share a folder".into()));
        }
        Ok(Template { which, text: text.to_string(), components })
    }

    /// The template for `user`, after checking the user.
    fn expand(&self, user: &str) -> Result<String, NameError> {
        check_user(user)?;
        let (local, domain) = split_user(user);
        let mut out = String::new();
        for (i, component) in self.components.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(&component.prefix);
            match component.var {
                None => {}
                Some(Var::User) => out.push_str(user),
                Some(Var::Localpart) => out.push_str(local),
                Some(Var::Domain) => out.push_str(domain.ok_or_else(|| NameError::NoDomain {
                    user: user.to_string(),
                    which: self.which,
                    template: self.text.clone(),
                })?),
            }
            out.push_str(&component.suffix);
        }
        Ok(out)
    }
}

impl Component {
    fn parse(part: &str) -> Result<Component, String> {
        let Some(open) = part.find('{') else {
            if part.contains('}') {
                return Err(format!("a '}}' without '{{' in {part:?}"));
            }
            return Ok(Component { prefix: part.to_string(), var: None, suffix: String::new() });
        };
        let Some(close) = part[open..].find('}').map(|at| open + at) else {
            return Err(format!("a '{{' without '}}' in {part:?}"));
        };
        let var = match &part[open + 1..close] {
            "user" => Var::User,
            "domain" => Var::Domain,
            "localpart" => Var::Localpart,
            other => return Err(format!("unknown placeholder {{{other}}}: use {{user}}, {{domain}} or {{localpart}}")),
        };
        let (prefix, suffix) = (&part[..open], &part[close + 1..]);
        if prefix.contains('}') || suffix.contains(['{', '}']) {
            // Two placeholders in one folder name could not be told apart when listing the store.
            return Err(format!(
                "more than one placeholder (or a stray brace) in {part:?}: use {{user}} for local@domain"
            ));
        }
        Ok(Component { prefix: prefix.to_string(), var: Some(var), suffix: suffix.to_string() })
    }
}

/// The placeholder values met on the way down a store while listing users.
#[derive(Debug, Clone, Default)]
struct Bindings {
    user: Option<String>,
    domain: Option<String>,
    localpart: Option<String>,
}

impl Bindings {
    /// These bindings plus `var` = `value`; None when `var` already holds another value (a
    /// template naming a placeholder twice).
    fn bind(&self, var: Var, value: &str) -> Option<Bindings> {
        let mut next = self.clone();
        let slot = match var {
            Var::User => &mut next.user,
            Var::Domain => &mut next.domain,
            Var::Localpart => &mut next.localpart,
        };
        match slot {
            Some(old) if old != value => return None,
            _ => *slot = Some(value.to_string()),
        }
        Some(next)
    }

    /// The user these bindings name, when they agree with each other.
    fn user(&self) -> Option<String> {
        match &self.user {
            Some(user) => {
                let (local, domain) = split_user(user);
                let agrees = self.localpart.as_deref().is_none_or(|l| l == local)
                    && self.domain.as_deref().is_none_or(|d| Some(d) == domain);
                agrees.then(|| user.clone())
            }
            None => Some(format!("{}@{}", self.localpart.as_deref()?, self.domain.as_deref()?)),
        }
    }
}

/// Whether `path` is a directory, without following a link. Missing is `false`, not an error.
fn is_real_dir(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(meta.is_dir()),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(false),
        Err(e) => Err(at(path, e)),
    }
}

/// `e` with the path it happened at, keeping its kind for the caller's decisions.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn default_layout() -> Layout {
        Layout::new(DEFAULT_USER_DIR, Some("{user}/sieve")).unwrap()
    }

    /// (Cyrus name, user, Maildir++ folder without '.', store-relative folder) with the default
    /// layout; each row is checked both ways.
    const MAPPINGS: &[(&str, &str, Option<&str>, &str)] = &[
        ("user.alice", "alice", None, "alice/Maildir"),
        ("user.alice.Sent", "alice", Some("Sent"), "alice/Maildir/.Sent"),
        ("user.alice.Work.2024", "alice", Some("Work.2024"), "alice/Maildir/.Work.2024"),
        ("user.alice.Work Stuff", "alice", Some("Work Stuff"), "alice/Maildir/.Work Stuff"),
        ("user.alice.INBOX", "alice", Some("INBOX"), "alice/Maildir/.INBOX"),
        ("user.alice.a^b", "alice", Some("a^b"), "alice/Maildir/.a^b"),
        ("user.alice.&AMk-t&AOk-", "alice", Some("&AMk-t&AOk-"), "alice/Maildir/.&AMk-t&AOk-"),
        ("user.john^doe", "john.doe", None, "john.doe/Maildir"),
        ("user.john^doe.Sent", "john.doe", Some("Sent"), "john.doe/Maildir/.Sent"),
        ("example.com!user.alice", "alice@example.com", None, "alice@example.com/Maildir"),
        ("example.com!user.alice.Sent", "alice@example.com", Some("Sent"), "alice@example.com/Maildir/.Sent"),
        ("example.com!user.j^d.x.y", "j.d@example.com", Some("x.y"), "j.d@example.com/Maildir/.x.y"),
    ];

    #[test]
    fn names_map_both_ways() {
        let layout = default_layout();
        for &(name, user, folder, path) in MAPPINGS {
            let mailbox = layout.mailbox(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(mailbox, Mailbox { name: name.into(), user: user.into(), folder: path.into() }, "{name}");
            assert_eq!(layout.name(user, folder), name, "{name}: the inverse");
            assert_eq!(user_of(name).as_deref(), Some(user), "{name}: user_of");
        }
    }

    #[test]
    fn cyrus_users_map_dots_and_keep_domains() {
        let layout = default_layout();
        for (cyrus, user) in [
            ("alice", "alice"),
            ("john^doe", "john.doe"),
            ("john^doe@example.com", "john.doe@example.com"),
            ("alice@example.com", "alice@example.com"),
        ] {
            assert_eq!(layout.user_name(cyrus), user);
            assert_eq!(layout.cyrus_user(user), cyrus, "{user}");
        }
        // A log's USER line carries the userid as Cyrus spells it outside names: unchanged.
        assert_eq!(layout.user_name("john.doe"), "john.doe");
    }

    #[test]
    fn users_folder_is_the_literal_start_of_the_template() {
        for (template, folder) in [
            ("{user}/Maildir", ""),
            ("{domain}/{localpart}", ""),
            ("vhosts/{domain}/{localpart}/Maildir", "vhosts"),
            ("srv/mail/{user}", "srv/mail"),
            ("srv/u-{user}", "srv"),
        ] {
            assert_eq!(Layout::new(template, None).unwrap().users_folder(), folder, "{template}");
        }
    }

    #[derive(Debug, PartialEq)]
    enum Refusal {
        NotUser,
        Bad,
    }

    /// Names a sync log may carry that must never resolve to a folder.
    const HOSTILE: &[(&str, &str, Refusal)] = &[
        ("empty", "", Refusal::Bad),
        ("slash in folder", "user.alice.a/b", Refusal::Bad),
        ("slash climbing out", "user.alice.x/../../../etc", Refusal::Bad),
        ("slash in user", "user.al/ice", Refusal::Bad),
        ("slash in domain", "ex/ample.com!user.alice", Refusal::Bad),
        ("NUL", "user.alice.a\0b", Refusal::Bad),
        ("newline", "user.alice.a\nb", Refusal::Bad),
        ("escape", "user.alice.\u{1b}[2J", Refusal::Bad),
        ("C1 control", "user.alice.\u{85}", Refusal::Bad),
        ("empty component", "user.alice..x", Refusal::Bad),
        ("two dots only", "user.alice..", Refusal::Bad),
        ("three dots", "user.alice...", Refusal::Bad),
        ("trailing dot", "user.alice.", Refusal::Bad),
        ("trailing dot after folder", "user.alice.Sent.", Refusal::Bad),
        ("no user", "user.", Refusal::Bad),
        ("no user then folder", "user..Sent", Refusal::Bad),
        ("user is '.'", "user.^", Refusal::Bad),
        ("user is '..'", "user.^^", Refusal::Bad),
        ("user is '..' with a folder", "user.^^.x", Refusal::Bad),
        ("user begins with '.'", "user.^alice", Refusal::Bad),
        ("user with '@'", "user.alice@example.com", Refusal::Bad),
        ("empty domain", "!user.alice", Refusal::Bad),
        ("domain '..'", "..!user.alice", Refusal::Bad),
        ("domain with '@'", "a@b!user.alice", Refusal::Bad),
        ("two '!'", "a!b!user.alice", Refusal::Bad),
        ("shared", "shared.x", Refusal::NotUser),
        ("delayed delete", "DELETED.user.alice.Trash.6B026207", Refusal::NotUser),
        ("top-level user", "user", Refusal::NotUser),
        ("upper case", "User.alice", Refusal::NotUser),
        ("INBOX", "INBOX", Refusal::NotUser),
        ("domain shared", "example.com!shared.x", Refusal::NotUser),
    ];

    #[test]
    fn hostile_names_are_refused() {
        let layout = default_layout();
        for (case, name, expected) in HOSTILE {
            let refusal = match layout.mailbox(name) {
                Ok(mailbox) => panic!("{case}: {name:?} resolved to {mailbox:?}"),
                Err(NameError::NotAUserMailbox { name: named }) => {
                    assert_eq!(&named, name, "{case}");
                    Refusal::NotUser
                }
                Err(NameError::BadMailbox { name: named, .. }) => {
                    assert_eq!(&named, name, "{case}");
                    Refusal::Bad
                }
                Err(other) => panic!("{case}: unexpected {other:?}"),
            };
            assert_eq!(&refusal, expected, "{case}: {name:?}");
            assert_eq!(user_of(name), None, "{case}: user_of");
        }
    }

    #[test]
    fn errors_name_the_mailbox_escaped() {
        let e = default_layout().mailbox("user.alice.\u{1b}x").unwrap_err().to_string();
        assert_eq!(e, "mailbox \"user.alice.\\u{1b}x\": a control character");
        let e = default_layout().mailbox("user.alice..x").unwrap_err().to_string();
        assert!(e.starts_with("mailbox \"user.alice..x\": an empty component"), "{e}");
    }

    #[test]
    fn templates() {
        // (template, user, expected root or error fragment)
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("{user}/Maildir", "alice", Ok("alice/Maildir")),
            ("{user}/Maildir", "alice@example.com", Ok("alice@example.com/Maildir")),
            ("{user}", "alice", Ok("alice")),
            ("{domain}/{localpart}/Maildir", "alice@example.com", Ok("example.com/alice/Maildir")),
            ("{domain}/{localpart}/Maildir", "alice", Err("has no domain")),
            ("{domain}/{user}", "alice@example.com", Ok("example.com/alice@example.com")),
            ("vhosts/{domain}/{localpart}.d/mail", "bob@b.org", Ok("vhosts/b.org/bob.d/mail")),
            ("home/u-{user}/Maildir", "john.doe", Ok("home/u-john.doe/Maildir")),
            ("{user}/Maildir", "..", Err("begins with '.'")),
            ("{user}/Maildir", "a/b", Err("a '/'")),
            ("{user}/Maildir", "a^b", Err("a '^'")),
            ("{user}/Maildir", "a@b@c", Err("more than one '@'")),
            ("{user}/Maildir", "a@", Err("an empty domain")),
            ("{user}/Maildir", "", Err("empty")),
        ];
        for (template, user, expected) in cases {
            let layout = Layout::new(template, None).unwrap();
            match (layout.user_root(user), expected) {
                (Ok(root), Ok(want)) => assert_eq!(&root, want, "{template} {user}"),
                (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{template} {user}: {e}"),
                (got, want) => panic!("{template} {user}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bad_templates_are_refused() {
        for (template, fragment) in [
            ("", "empty"),
            ("/var/vmail/{user}", "absolute"),
            ("{user}/../x", "'..'"),
            ("../{user}", "'..'"),
            ("./{user}", "'.'"),
            ("{user}//Maildir", "empty component"),
            ("{user}/Maildir/", "empty component"),
            ("Maildir", "no {user}"),
            ("{localpart}/Maildir", "no {user}"),
            ("{domain}/Maildir", "no {user}"),
            ("{home}/Maildir", "unknown placeholder {home}"),
            ("{user/Maildir", "without '}'"),
            ("user}/{user}", "without '{'"),
            ("{localpart}@{domain}/Maildir", "more than one placeholder"),
            ("{user}\n/Maildir", "control"),
        ] {
            let e = Layout::new(template, None).unwrap_err();
            assert!(matches!(e, NameError::BadTemplate { which: "user_dir", .. }), "{template:?}: {e:?}");
            assert!(e.to_string().contains(fragment), "{template:?}: {e}");
        }
        let e = Layout::new(DEFAULT_USER_DIR, Some("/sieve/{user}")).unwrap_err();
        assert!(e.to_string().starts_with("sieve_dir template"), "{e}");
    }

    #[test]
    fn sieve_roots() {
        assert_eq!(default_layout().sieve_root("alice"), Some(Ok("alice/sieve".into())));
        assert_eq!(Layout::default().sieve_root("alice"), None);
        assert!(matches!(default_layout().sieve_root(".."), Some(Err(NameError::BadUser { .. }))));
    }

    #[test]
    fn mailbox_errors_name_the_mailbox_for_a_domain_template() {
        let layout = Layout::new("{domain}/{localpart}/Maildir", None).unwrap();
        assert_eq!(layout.mailbox("example.com!user.alice.Sent").unwrap().folder, "example.com/alice/Maildir/.Sent");
        let e = layout.mailbox("user.alice").unwrap_err().to_string();
        assert!(e.starts_with("mailbox \"user.alice\": user \"alice\" has no domain"), "{e}");
    }

    /// A scratch store: `dirs` are created (with parents), `links` are (link, target).
    fn store(dirs: &[&str], links: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("store");
        fs::create_dir(&root).unwrap();
        for dir in dirs {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (link, target) in links {
            std::os::unix::fs::symlink(target, root.join(link)).unwrap();
        }
        (temp, root)
    }

    fn maildir(at: &str) -> [String; 3] {
        ["cur", "new", "tmp"].map(|sub| format!("{at}/{sub}"))
    }

    #[test]
    fn listing_users_and_mailboxes() {
        let mut dirs: Vec<String> = Vec::new();
        for at in [
            "alice/Maildir",
            "alice/Maildir/.Sent",
            "alice/Maildir/.Work.2024",
            "alice/Maildir/.Work Stuff",
            "alice/Maildir/.a..b",
            "john.doe/Maildir",
            "bob@example.com/Maildir",
            "a^b/Maildir",
            ".hidden/Maildir",
            "lost+found/Maildir",
            "outside/Maildir",
            "outside/Maildir/.Elsewhere",
        ] {
            dirs.extend(maildir(at));
        }
        // Not mailboxes: no cur/, a file, a user without a Maildir.
        dirs.extend(["alice/Maildir/.Half/new".into(), "carol/mail/cur".into(), "dave".into()]);
        let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let (_temp, root) = store(&dirs, &[("linked", "outside"), ("alice/Maildir/.Linked", "../../outside/Maildir")]);
        fs::write(root.join("alice/Maildir/.File"), "").unwrap();
        fs::write(root.join("alice/Maildir/dovecot-uidlist"), "").unwrap();

        let layout = Layout::default();
        assert_eq!(layout.users(&root).unwrap(), ["alice", "bob@example.com", "john.doe", "outside"]);

        let names: Vec<(String, String)> =
            layout.mailboxes(&root, "alice").unwrap().into_iter().map(|m| (m.name, m.folder)).collect();
        let want = [
            ("user.alice", "alice/Maildir"),
            ("user.alice.Sent", "alice/Maildir/.Sent"),
            ("user.alice.Work Stuff", "alice/Maildir/.Work Stuff"),
            ("user.alice.Work.2024", "alice/Maildir/.Work.2024"),
        ];
        assert_eq!(names, want.map(|(n, f)| (n.to_string(), f.to_string())));
        let bob = layout.mailboxes(&root, "bob@example.com").unwrap();
        assert_eq!(bob[0].name, "example.com!user.bob");
        assert_eq!(layout.mailboxes(&root, "john.doe").unwrap()[0].name, "user.john^doe");

        for (user, kind) in [
            ("nobody", io::ErrorKind::NotFound),
            ("dave", io::ErrorKind::NotFound),
            ("linked", io::ErrorKind::NotFound),
            ("..", io::ErrorKind::InvalidInput),
        ] {
            let e = layout.mailboxes(&root, user).unwrap_err();
            assert_eq!(e.kind(), kind, "{user}: {e}");
        }
        let e = layout.users(&root.join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn listing_users_by_domain() {
        let mut dirs: Vec<String> = Vec::new();
        for at in ["example.com/alice/Maildir", "example.com/bob/Maildir", "b.org/alice/Maildir", "b.org/x/other"] {
            dirs.extend(maildir(at));
        }
        let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let (_temp, root) = store(&dirs, &[("alias.org", "example.com")]);
        let layout = Layout::new("{domain}/{localpart}/Maildir", None).unwrap();
        assert_eq!(layout.users(&root).unwrap(), ["alice@b.org", "alice@example.com", "bob@example.com"]);
        let boxes = layout.mailboxes(&root, "alice@example.com").unwrap();
        assert_eq!(boxes[0].folder, "example.com/alice/Maildir");
        assert_eq!(boxes[0].name, "example.com!user.alice");

        // {domain} and {user} must agree with each other.
        let mut dirs: Vec<String> = Vec::new();
        for at in ["example.com/alice@example.com", "example.com/bob@b.org", "example.com/carol"] {
            dirs.extend(maildir(at));
        }
        let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let (_temp, root) = store(&dirs, &[]);
        let layout = Layout::new("{domain}/{user}", None).unwrap();
        assert_eq!(layout.users(&root).unwrap(), ["alice@example.com"]);
    }
}
