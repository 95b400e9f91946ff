//! The log viewer of `pairsync console`: an item's log file read to its end and then followed
//! (as `pairsync logs --follow`: what is appended, across a rotation), scrolled, and searched.
//! [`LogView::refresh`] is the one place that reads the file; the keys only move over what was
//! read, so they are tested without one.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use ratatui::crossterm::event::{KeyCode, KeyEvent};

/// Lines kept in memory: the newest; a log is rotated at 4 MiB anyway.
const KEPT: usize = 20_000;

/// What a key asks of the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum LogKey {
    Nothing,
    /// Back to the lists.
    Back,
    /// Stop the runs this log follows.
    Stop,
}

#[derive(Debug, Clone)]
pub struct LogView {
    /// The item whose log this is.
    pub name: String,
    pub path: PathBuf,
    pub lines: Vec<String>,
    /// An unfinished last line, completed by the next read.
    partial: String,
    /// Bytes of the file read so far.
    offset: u64,
    /// Whether the file was there at the last read.
    pub exists: bool,
    /// Kept at the end, showing lines as they come.
    pub follow: bool,
    /// Lines between the last one shown and the end (0 while following).
    pub from_end: usize,
    pub search: String,
    /// The search is being typed.
    pub searching: bool,
    /// The items of the Sync Now this log belongs to (their gauges are shown above it); empty
    /// when it was opened by Logs.
    pub batch: Vec<String>,
}

impl LogView {
    /// A view of the log at `path`, empty until [`LogView::refresh`] reads it.
    pub fn new(name: &str, path: PathBuf, follow: bool, batch: Vec<String>) -> LogView {
        LogView {
            name: name.to_string(),
            path,
            lines: Vec::new(),
            partial: String::new(),
            offset: 0,
            exists: false,
            follow,
            from_end: 0,
            search: String::new(),
            searching: false,
            batch,
        }
    }

    /// Another item's log in the same view (the next item of a group's Sync Now).
    pub fn switch(&mut self, name: &str, path: PathBuf) {
        *self = LogView {
            search: std::mem::take(&mut self.search),
            ..LogView::new(name, path, true, std::mem::take(&mut self.batch))
        };
    }

    /// Reads what was appended since the last read; a file that shrank was rotated or
    /// truncated, and is read again from its start.
    pub fn refresh(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            self.exists = false;
            return;
        };
        self.exists = true;
        let len = file.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
            self.lines.push("--- the log was rotated ---".to_string());
        }
        if len == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            return;
        }
        self.offset += bytes.len() as u64;
        self.add(&String::from_utf8_lossy(&bytes));
    }

    /// Appends text read from the file.
    fn add(&mut self, text: &str) {
        let text = std::mem::take(&mut self.partial) + text;
        let mut parts: Vec<&str> = text.split('\n').collect();
        self.partial = parts.pop().unwrap_or_default().to_string();
        let added = parts.len();
        self.lines.extend(parts.into_iter().map(str::to_string));
        if !self.follow {
            // What is shown stays where it is.
            self.from_end += added;
        }
        if self.lines.len() > KEPT {
            self.lines.drain(..self.lines.len() - KEPT);
            self.from_end = self.from_end.min(self.lines.len());
        }
    }

    /// The lines holding the search (case-insensitive), by index.
    pub fn matches(&self) -> Vec<usize> {
        if self.search.is_empty() {
            return Vec::new();
        }
        let needle = self.search.to_lowercase();
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, line)| line.to_lowercase().contains(&needle))
            .map(|(i, _)| i)
            .collect()
    }

    /// The index of the last line shown.
    pub fn bottom(&self) -> usize {
        self.lines.len().saturating_sub(1 + self.from_end)
    }

    fn scroll(&mut self, up: isize) {
        let max = self.lines.len().saturating_sub(1) as isize;
        self.from_end = (self.from_end as isize + up).clamp(0, max) as usize;
        // Up leaves the end, and back down at the end follows again.
        self.follow = self.from_end == 0;
    }

    /// Shows the line `index` at the bottom.
    fn show(&mut self, index: usize) {
        self.follow = false;
        self.from_end = self.lines.len().saturating_sub(1 + index);
    }

    /// The nearest match above (`up`) or below the last line shown.
    fn next_match(&mut self, up: bool) {
        let bottom = self.bottom();
        let matches = self.matches();
        let found = if up {
            matches.iter().rev().find(|&&i| i < bottom).copied()
        } else {
            matches.iter().find(|&&i| i > bottom).copied()
        };
        if let Some(index) = found {
            self.show(index);
        }
    }

    /// What `key` does; `page` is the number of lines on the screen.
    pub fn key(&mut self, key: KeyEvent, page: usize) -> LogKey {
        if self.searching {
            match key.code {
                KeyCode::Enter => {
                    self.searching = false;
                    // The newest match first, which may be the line at the bottom.
                    if let Some(&last) = self.matches().iter().rev().find(|&&i| i <= self.bottom()) {
                        self.show(last);
                    }
                }
                KeyCode::Esc => {
                    self.searching = false;
                    self.search.clear();
                }
                KeyCode::Backspace => {
                    self.search.pop();
                }
                KeyCode::Char(c) => self.search.push(c),
                _ => {}
            }
            return LogKey::Nothing;
        }
        let page = page.max(1) as isize;
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => return LogKey::Back,
            KeyCode::Char('x') => return LogKey::Stop,
            KeyCode::Up | KeyCode::Char('k') => self.scroll(1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll(-1),
            KeyCode::PageUp => self.scroll(page),
            KeyCode::PageDown | KeyCode::Char(' ') => self.scroll(-page),
            KeyCode::Home | KeyCode::Char('g') => self.scroll(self.lines.len() as isize),
            KeyCode::End | KeyCode::Char('G') => {
                self.from_end = 0;
                self.follow = true;
            }
            KeyCode::Char('f') => {
                self.follow = !self.follow;
                if self.follow {
                    self.from_end = 0;
                }
            }
            KeyCode::Char('/') => {
                self.searching = true;
                self.search.clear();
            }
            KeyCode::Char('n') => self.next_match(true),
            KeyCode::Char('N') => self.next_match(false),
            _ => {}
        }
        LogKey::Nothing
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::KeyModifiers;

    use super::*;

    fn view(lines: usize) -> LogView {
        let mut view = LogView::new("docs", PathBuf::from("/var/log/docs.log"), true, Vec::new());
        let text: String = (0..lines).map(|i| format!("line {i}\n")).collect();
        view.add(&text);
        view
    }

    fn press(view: &mut LogView, code: KeyCode) -> LogKey {
        view.key(KeyEvent::new(code, KeyModifiers::NONE), 10)
    }

    #[test]
    fn lines_are_split_across_reads() {
        let mut view = view(0);
        view.add("2025-05-01 start item do");
        assert!(view.lines.is_empty());
        view.add("cs\nend\n");
        assert_eq!(view.lines, ["2025-05-01 start item docs", "end"]);
    }

    #[test]
    fn scrolling_up_stops_following_and_end_follows_again() {
        let mut view = view(100);
        assert_eq!(view.bottom(), 99);
        press(&mut view, KeyCode::PageUp);
        assert_eq!((view.bottom(), view.follow), (89, false));
        // Lines appended meanwhile do not move what is shown.
        view.add("new\n");
        assert_eq!(view.bottom(), 89);
        press(&mut view, KeyCode::Char('G'));
        assert_eq!((view.bottom(), view.follow), (100, true));
        press(&mut view, KeyCode::Home);
        assert_eq!(view.bottom(), 0);
    }

    #[test]
    fn search_jumps_to_the_newest_match_then_n_goes_up_and_shift_n_down() {
        let mut view = view(100);
        press(&mut view, KeyCode::Char('/'));
        for c in "LINE 5".chars() {
            press(&mut view, KeyCode::Char(c));
        }
        press(&mut view, KeyCode::Enter);
        assert_eq!(view.matches().len(), 11, "line 5 and 50..=59");
        assert_eq!(view.bottom(), 59);
        press(&mut view, KeyCode::Char('n'));
        assert_eq!(view.bottom(), 58);
        press(&mut view, KeyCode::Char('N'));
        assert_eq!(view.bottom(), 59);
        assert_eq!(press(&mut view, KeyCode::Char('x')), LogKey::Stop);
        assert_eq!(press(&mut view, KeyCode::Esc), LogKey::Back);
    }

    #[test]
    fn a_rotated_file_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs.log");
        let mut view = LogView::new("docs", path.clone(), true, Vec::new());
        view.refresh();
        assert!(!view.exists);
        std::fs::write(&path, "one\ntwo\n").unwrap();
        view.refresh();
        assert_eq!(view.lines, ["one", "two"]);
        std::fs::write(&path, "three\n").unwrap();
        view.refresh();
        assert_eq!(view.lines, ["one", "two", "--- the log was rotated ---", "three"]);
    }
}
