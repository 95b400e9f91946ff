//! `mail -r --watch` (or `[mail] watch = true`): inotify on the store feeds the rolling loop's
//! queue with the mailboxes whose files changed, so a store whose server writes no sync log
//! (Dovecot) is replicated live. The log, when there is one, is read as well.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecursiveMode, Watcher};

use crate::mail::names::Layout;

/// The mailboxes seen changing since the last drain, by Cyrus name.
pub struct StoreWatch {
    seen: Arc<Mutex<BTreeSet<String>>>,
    _watcher: notify::RecommendedWatcher,
}

impl StoreWatch {
    /// Watches the whole store. The users are found once now; a new user's first mail is
    /// learned by the next `-u`/`-A` pass (or a log line naming it).
    pub fn start(store: &Path, layout: &Layout) -> notify::Result<StoreWatch> {
        let store = store.canonicalize().unwrap_or_else(|_| store.to_path_buf());
        let roots: HashMap<PathBuf, String> = layout
            .users(&store)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|user| Some((store.join(layout.user_root(&user).ok()?), user)))
            .collect();
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let (into, layout) = (seen.clone(), layout.clone());
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            for path in &event.paths {
                if let Some(name) = mailbox_of(path, &roots, &layout) {
                    into.lock().expect("not poisoned").insert(name);
                }
            }
        })?;
        watcher.watch(&store, RecursiveMode::Recursive)?;
        Ok(StoreWatch { seen, _watcher: watcher })
    }

    /// The mailboxes seen changing since the last call.
    pub fn drain(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().expect("not poisoned")).into_iter().collect()
    }
}

/// The Cyrus name of the mailbox a changed path belongs to: a file in `<root>/cur`, `new` or
/// directly in a mailbox folder; `tmp/` and paths outside every user's Maildir are none.
fn mailbox_of(path: &Path, roots: &HashMap<PathBuf, String>, layout: &Layout) -> Option<String> {
    let (root, user) = roots.iter().find(|(root, _)| path.starts_with(root))?;
    let rel = path.strip_prefix(root).ok()?.to_str()?;
    let mut parts = rel.split('/').filter(|p| !p.is_empty());
    let first = parts.next()?;
    let folder = first.strip_prefix('.').filter(|name| !name.is_empty());
    let next = if folder.is_some() { parts.next() } else { Some(first) };
    if next == Some("tmp") {
        return None;
    }
    Some(layout.name(user, folder))
}
