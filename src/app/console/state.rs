//! What `pairsync console` shows and what a key does to it: [`App`] is plain data (the items
//! with their last runs, the live state of the console's runs, the screen open, the filter),
//! and [`update`] is a pure function of it and a key. Whatever must happen outside (save the
//! config, run or stop items, open a log, leave) comes back as an [`Effect`] for the loop in
//! `mod.rs`; so every key is tested here without a terminal, a file or a thread.

use std::collections::BTreeMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::form::{Form, Outcome, Purpose};
use super::logs::{LogKey, LogView};
use crate::app::items::LastRun;
use crate::config::job::shown;
use crate::config::Item;
use crate::core::exit::ExitCode;

/// The two lists of the seed's tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Items,
    Groups,
}

/// An item as the lists show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub item: Item,
    pub last_run: Option<LastRun>,
    /// When its schedule runs it next ("2025-05-02 02:30"); `None` without a schedule.
    pub next_run: Option<String>,
}

/// Where a run started by the console stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the items before it in its Sync Now.
    Queued,
    /// Listing the sides: entries found so far on both.
    Scanning {
        entries: u64,
    },
    Planning,
    /// Carrying out the plan: copies by bytes, the other actions by count.
    Applying {
        bytes_done: u64,
        bytes_total: u64,
        actions_done: u64,
        actions_total: u64,
    },
    Done(ExitCode),
}

/// The live state of one item's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub phase: Phase,
    /// A stop was asked: it ends after the current file.
    pub stopping: bool,
}

impl Live {
    /// Queued or running.
    pub fn active(&self) -> bool {
        !matches!(self.phase, Phase::Done(_))
    }

    /// How far the run is, from 0 to 100.
    pub fn percent(&self) -> u16 {
        let share = |done: u64, total: u64| (done.min(total) * 100).checked_div(total).unwrap_or(0) as u16;
        match self.phase {
            Phase::Queued | Phase::Scanning { .. } | Phase::Planning => 0,
            Phase::Applying { bytes_total, bytes_done, .. } if bytes_total > 0 => share(bytes_done, bytes_total),
            Phase::Applying { actions_done, actions_total, .. } => share(actions_done, actions_total),
            Phase::Done(_) => 100,
        }
    }
}

/// The screen in front.
#[derive(Debug, Clone)]
pub enum Screen {
    List,
    /// The item dialog (Add, Edit, Copy).
    Form(Box<Form>),
    /// Delete asks first, and whether to purge the item's state too.
    Delete {
        name: String,
        purge: bool,
    },
    Logs(Box<LogView>),
}

/// The line above the keys: what was done, or what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Info(String),
    Error(String),
}

/// What the loop must do for a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Save the dialog's item, as its purpose says.
    Save {
        purpose: Purpose,
        item: Box<Item>,
    },
    Delete {
        name: String,
        purge: bool,
    },
    /// Sync Now: these items, one after another, with the first one's log opened following.
    Run(Vec<String>),
    /// Stop these items' runs after the current file; the queued ones do not start.
    Stop(Vec<String>),
    /// Open an item's log (Logs).
    OpenLog(String),
    /// Leave, stopping the runs first.
    Quit,
}

/// What is selected in the list in front.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selected<'a> {
    Item(&'a Row),
    /// A group's header: its name and items.
    Group(&'a str),
    /// The header of the items without a group.
    Ungrouped,
}

/// A line of the Groups list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GroupLine<'a> {
    /// A group (`None`: the items without one) and how many of its items are shown.
    Header(Option<&'a str>, usize),
    Item(&'a Row),
}

/// Everything the console shows.
#[derive(Debug, Clone)]
pub struct App {
    /// The config file, as the title line shows it.
    pub config: String,
    pub rows: Vec<Row>,
    /// The console's runs by item name, finished ones included (until run again).
    pub runs: BTreeMap<String, Live>,
    pub tab: Tab,
    /// The selected line of each tab (Items, Groups), among those the filter shows.
    pub cursor: [usize; 2],
    pub filter: String,
    /// The filter is being typed.
    pub filtering: bool,
    pub screen: Screen,
    /// The help is shown over the screen.
    pub help: bool,
    /// Leaving was asked while runs are going on: "stop them and quit?" is shown.
    pub confirm_quit: bool,
    /// Leaving: the runs are being stopped, the console ends once they have.
    pub quitting: bool,
    pub status: Option<Status>,
    /// Lines of the screen (the log viewer pages by it); set by the loop.
    pub height: u16,
}

impl App {
    pub fn new(config: &str, rows: Vec<Row>) -> App {
        App {
            config: config.to_string(),
            rows,
            runs: BTreeMap::new(),
            tab: Tab::Items,
            cursor: [0, 0],
            filter: String::new(),
            filtering: false,
            screen: Screen::List,
            help: false,
            confirm_quit: false,
            quitting: false,
            status: None,
            height: 24,
        }
    }

    fn tab_index(&self) -> usize {
        match self.tab {
            Tab::Items => 0,
            Tab::Groups => 1,
        }
    }

    /// Whether the filter lets a row through: its name, group, description or either side
    /// holds the filter's text (case-insensitive).
    fn passes(&self, row: &Row) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let needle = self.filter.to_lowercase();
        let item = &row.item;
        [Some(&item.name), item.group.as_ref(), item.description.as_ref()]
            .into_iter()
            .flatten()
            .cloned()
            .chain([shown(&item.source), shown(&item.destination)])
            .any(|text| text.to_lowercase().contains(&needle))
    }

    /// The Items list: the rows the filter lets through.
    pub fn items(&self) -> Vec<&Row> {
        self.rows.iter().filter(|row| self.passes(row)).collect()
    }

    /// The Groups list: each group (by name) with its items, then the items without a group.
    /// A group whose name holds the filter shows all its items; any other only those that pass.
    pub fn group_lines(&self) -> Vec<GroupLine<'_>> {
        let mut groups: BTreeMap<Option<&str>, Vec<&Row>> = BTreeMap::new();
        for row in &self.rows {
            groups.entry(row.item.group.as_deref()).or_default().push(row);
        }
        // The items without a group come last.
        let ungrouped = groups.remove(&None);
        let named = groups.into_iter().chain(ungrouped.map(|rows| (None, rows)));
        let needle = self.filter.to_lowercase();
        let mut lines = Vec::new();
        for (group, rows) in named {
            let whole = group.is_some_and(|g| !needle.is_empty() && g.to_lowercase().contains(&needle));
            let shown: Vec<&Row> = rows.into_iter().filter(|row| whole || self.passes(row)).collect();
            if shown.is_empty() {
                continue;
            }
            lines.push(GroupLine::Header(group, shown.len()));
            lines.extend(shown.into_iter().map(GroupLine::Item));
        }
        lines
    }

    /// How many lines the list in front has.
    fn lines(&self) -> usize {
        match self.tab {
            Tab::Items => self.items().len(),
            Tab::Groups => self.group_lines().len(),
        }
    }

    /// The selected line of the list in front (kept within it).
    pub fn cursor(&self) -> usize {
        self.cursor[self.tab_index()].min(self.lines().saturating_sub(1))
    }

    pub fn selected(&self) -> Option<Selected<'_>> {
        let at = self.cursor();
        match self.tab {
            Tab::Items => self.items().get(at).map(|row| Selected::Item(row)),
            Tab::Groups => self.group_lines().get(at).map(|line| match line {
                GroupLine::Header(Some(group), _) => Selected::Group(group),
                GroupLine::Header(None, _) => Selected::Ungrouped,
                GroupLine::Item(row) => Selected::Item(row),
            }),
        }
    }

    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|row| row.item.name == name)
    }

    /// The items of a group, in file order.
    pub fn group(&self, group: &str) -> Vec<String> {
        self.rows.iter().filter(|r| r.item.group.as_deref() == Some(group)).map(|r| r.item.name.clone()).collect()
    }

    /// Whether any run is queued or going on.
    pub fn running(&self) -> bool {
        self.runs.values().any(Live::active)
    }

    /// The item whose log the log view should show: while its Sync Now goes on, the item of
    /// it that runs (or the last one that did).
    pub fn followed(&self) -> Option<&str> {
        let Screen::Logs(view) = &self.screen else { return None };
        let started = |name: &&String| self.runs.get(*name).is_some_and(|live| live.phase != Phase::Queued);
        view.batch.iter().rev().find(started).map(String::as_str)
    }

    /// The live state of an item, as the lists show it.
    pub fn state_of(&self, row: &Row) -> String {
        match self.runs.get(&row.item.name) {
            Some(live) if live.phase == Phase::Queued => "queued".to_string(),
            Some(live) if live.active() && live.stopping => "stopping".to_string(),
            Some(live) if live.active() => format!("running {}%", live.percent()),
            _ => match &row.last_run {
                // The daemon retries a watched item whose check does not hold: it is paused.
                Some(run) if run.exit_code == ExitCode::CheckFailed.code() && row.item.watch => "paused".to_string(),
                Some(run) if run.exit_code == ExitCode::CheckFailed.code() => "file check not met".to_string(),
                _ => "idle".to_string(),
            },
        }
    }

    fn move_cursor(&mut self, by: isize) {
        let last = self.lines().saturating_sub(1) as isize;
        let at = (self.cursor() as isize + by).clamp(0, last.max(0));
        let tab = self.tab_index();
        self.cursor[tab] = at as usize;
    }

    /// A name for a copy of `name` that no item has.
    fn copy_name(&self, name: &str) -> String {
        let free = |candidate: &String| self.row(candidate).is_none();
        std::iter::once(format!("{name}-copy"))
            .chain((2..).map(|n| format!("{name}-copy{n}")))
            .find(free)
            .expect("some name is free")
    }

    /// Leaving: at once, or after asking when runs are going on.
    fn leave(&mut self) -> Option<Effect> {
        if self.running() {
            self.confirm_quit = true;
            return None;
        }
        Some(Effect::Quit)
    }
}

/// What a key does to the console. Only key presses count (a terminal that reports releases
/// sends both).
pub fn update(app: &mut App, key: KeyEvent) -> Option<Effect> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    // Ctrl-C is a key in raw mode: it leaves, as q does from the lists, from any screen.
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return if app.confirm_quit { Some(Effect::Quit) } else { app.leave() };
    }
    if app.quitting {
        return None;
    }
    if app.help {
        app.help = false;
        return None;
    }
    if app.confirm_quit {
        app.confirm_quit = false;
        return matches!(key.code, KeyCode::Char('y' | 'Y') | KeyCode::Enter).then_some(Effect::Quit);
    }
    match &mut app.screen {
        Screen::List => list_key(app, key),
        Screen::Form(form) => {
            if key.code == KeyCode::F(1) {
                app.help = true;
                return None;
            }
            match form.key(key) {
                Outcome::Changed => None,
                Outcome::Cancel => {
                    app.screen = Screen::List;
                    None
                }
                Outcome::Save(item) => Some(Effect::Save { purpose: form.purpose.clone(), item }),
            }
        }
        Screen::Delete { name, purge } => match key.code {
            KeyCode::Char('y' | 'Y') | KeyCode::Enter => {
                let effect = Effect::Delete { name: name.clone(), purge: *purge };
                app.screen = Screen::List;
                Some(effect)
            }
            KeyCode::Char('p' | ' ') => {
                *purge = !*purge;
                None
            }
            _ => {
                app.screen = Screen::List;
                None
            }
        },
        Screen::Logs(view) => {
            if !view.searching && key.code == KeyCode::Char('?') {
                app.help = true;
                return None;
            }
            // The lines of the log: the screen less the title, the gauges and the footer.
            let page = usize::from(app.height).saturating_sub(4 + view.batch.len().min(4));
            match view.key(key, page) {
                LogKey::Nothing => None,
                LogKey::Back => {
                    app.screen = Screen::List;
                    None
                }
                LogKey::Stop => {
                    let names = if view.batch.is_empty() { vec![view.name.clone()] } else { view.batch.clone() };
                    Some(Effect::Stop(names))
                }
            }
        }
    }
}

/// A key on the Items or Groups list.
fn list_key(app: &mut App, key: KeyEvent) -> Option<Effect> {
    if app.filtering {
        match key.code {
            KeyCode::Enter => app.filtering = false,
            KeyCode::Esc => {
                app.filtering = false;
                app.filter.clear();
            }
            KeyCode::Backspace => {
                app.filter.pop();
            }
            KeyCode::Char(c) => {
                app.filter.push(c);
                app.cursor = [0, 0];
            }
            KeyCode::Up => app.move_cursor(-1),
            KeyCode::Down => app.move_cursor(1),
            _ => {}
        }
        return None;
    }
    let page = app.height.saturating_sub(12).max(1) as isize;
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return app.leave(),
        KeyCode::Char('?') | KeyCode::F(1) => app.help = true,
        KeyCode::Tab | KeyCode::BackTab => {
            app.tab = if app.tab == Tab::Items { Tab::Groups } else { Tab::Items };
        }
        KeyCode::Up | KeyCode::Char('k') => app.move_cursor(-1),
        KeyCode::Down | KeyCode::Char('j') => app.move_cursor(1),
        KeyCode::PageUp => app.move_cursor(-page),
        KeyCode::PageDown => app.move_cursor(page),
        KeyCode::Home => app.move_cursor(isize::MIN / 2),
        KeyCode::End => app.move_cursor(isize::MAX / 2),
        KeyCode::Char('/') => {
            app.filtering = true;
            app.status = None;
        }
        KeyCode::Char('a') => {
            let group = match app.selected() {
                Some(Selected::Group(group)) => Some(group.to_string()),
                Some(Selected::Item(row)) if app.tab == Tab::Groups => row.item.group.clone(),
                _ => None,
            };
            app.screen = Screen::Form(Box::new(Form::add(group.as_deref())));
        }
        KeyCode::Char('e') | KeyCode::Enter => {
            if let Some(item) = selected_item(app, "edit") {
                app.screen = Screen::Form(Box::new(Form::edit(&item)));
            }
        }
        KeyCode::Char('c') => {
            if let Some(item) = selected_item(app, "copy") {
                let new = app.copy_name(&item.name);
                app.screen = Screen::Form(Box::new(Form::copy(&item, &new)));
            }
        }
        KeyCode::Char('d') | KeyCode::Delete => {
            if let Some(item) = selected_item(app, "delete") {
                app.screen = Screen::Delete { name: item.name, purge: false };
            }
        }
        KeyCode::Char('l') => {
            if let Some(item) = selected_item(app, "see the log of") {
                return Some(Effect::OpenLog(item.name));
            }
        }
        KeyCode::Char('s') => {
            let names = selected_names(app, "Sync Now")?;
            let busy: Vec<&String> = names.iter().filter(|n| app.runs.get(*n).is_some_and(Live::active)).collect();
            if !busy.is_empty() {
                let busy: Vec<&str> = busy.iter().map(|n| n.as_str()).collect();
                app.status = Some(Status::Error(format!("already running: {}", busy.join(", "))));
                return None;
            }
            return Some(Effect::Run(names));
        }
        KeyCode::Char('x') => {
            let names = selected_names(app, "stop")?;
            if !names.iter().any(|n| app.runs.get(n).is_some_and(Live::active)) {
                app.status = Some(Status::Info("nothing to stop: no run is going on there".into()));
                return None;
            }
            return Some(Effect::Stop(names));
        }
        _ => {}
    }
    None
}

/// The selected item, or why there is none to `verb`.
fn selected_item(app: &mut App, verb: &str) -> Option<Item> {
    match app.selected() {
        Some(Selected::Item(row)) => Some(row.item.clone()),
        Some(_) => {
            app.status = Some(Status::Error(format!("select an item to {verb}: a group holds several")));
            None
        }
        None => {
            app.status = Some(Status::Error(format!("no item to {verb} (a adds one)")));
            None
        }
    }
}

/// The items of the selection: an item, or a group's.
fn selected_names(app: &mut App, verb: &str) -> Option<Vec<String>> {
    let names = match app.selected() {
        Some(Selected::Item(row)) => vec![row.item.name.clone()],
        Some(Selected::Group(group)) => app.group(group),
        Some(Selected::Ungrouped) => {
            app.status =
                Some(Status::Error(format!("the items without a group are not a group: {verb} them one by one")));
            return None;
        }
        None => {
            app.status = Some(Status::Error(format!("nothing to {verb} (a adds an item)")));
            return None;
        }
    };
    Some(names)
}

/// What an exit code means, as DESIGN.md "Command line" says.
pub fn meaning(exit_code: u8) -> &'static str {
    match exit_code {
        0 => "in sync",
        1 => "finished with problems on some paths",
        2 => "usage or configuration error",
        3 => "a file check was not satisfied; nothing done",
        4 => "safety stop; nothing done",
        5 => "another run of the pair was in progress",
        6 => "an endpoint was unreachable or refused the login",
        _ => "unknown exit code",
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::config::SideConfig;

    /// Three items: two in group "nightly", one without a group; fixed paths and times.
    pub fn app() -> App {
        let row = |name: &str, group: Option<&str>, source: &str, destination: &str| {
            let mut item = Item::new(name, SideConfig::directory(source), SideConfig::directory(destination));
            item.group = group.map(str::to_string);
            Row { item, last_run: None, next_run: None }
        };
        let mut web = row("web", Some("nightly"), "/srv/www", "/backup/www");
        web.item.mode = crate::core::plan::Mode::Clone;
        web.item.schedule = Some("daily at 02:30".into());
        web.item.description = Some("The web site, mirrored".into());
        web.next_run = Some("2025-05-02 02:30".into());
        web.last_run = Some(LastRun {
            started: "2025-05-01T02:30:00+02:00".into(),
            seconds: 3.2,
            exit_code: 0,
            result: "/srv/www -> /backup/www (clone): copied 3 (1.20 KiB), deleted 0, renamed 0, 0 conflicts, 0 \
                     problems in 3.20 s"
                .into(),
        });
        let mut mail = row("mail", Some("nightly"), "/var/mail", "/backup/mail");
        mail.last_run = Some(LastRun {
            started: "2025-05-01T02:35:00+02:00".into(),
            seconds: 0.1,
            exit_code: 3,
            result: "file check of the destination not satisfied: /backup/.disk-id: no such file; nothing done".into(),
        });
        let mut usb = row("usb", None, "/home/ann", "/media/usb/ann");
        usb.item.mode = crate::core::plan::Mode::Simple;
        usb.item.watch = true;
        usb.last_run = mail.last_run.clone();
        App::new("/etc/pairsync/pairsync.toml", vec![web, mail, usb])
    }

    pub fn press(app: &mut App, code: KeyCode) -> Option<Effect> {
        update(app, KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            press(app, KeyCode::Char(c));
        }
    }

    fn selected_name(app: &App) -> Option<String> {
        match app.selected()? {
            Selected::Item(row) => Some(row.item.name.clone()),
            Selected::Group(group) => Some(format!("group {group}")),
            Selected::Ungrouped => Some("ungrouped".into()),
        }
    }

    #[test]
    fn the_cursor_moves_within_the_list_and_tab_switches_lists() {
        let mut app = app();
        assert_eq!(selected_name(&app).as_deref(), Some("web"));
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        assert_eq!(selected_name(&app).as_deref(), Some("usb"));
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.tab, Tab::Groups);
        assert_eq!(selected_name(&app).as_deref(), Some("group nightly"));
        press(&mut app, KeyCode::End);
        assert_eq!(selected_name(&app).as_deref(), Some("usb"));
        press(&mut app, KeyCode::Up);
        assert_eq!(selected_name(&app).as_deref(), Some("ungrouped"));
        press(&mut app, KeyCode::Tab);
        assert_eq!(selected_name(&app).as_deref(), Some("usb"), "each list keeps its own selection");
    }

    #[test]
    fn slash_filters_both_lists_and_esc_clears_the_filter() {
        let mut app = app();
        press(&mut app, KeyCode::Char('/'));
        typed(&mut app, "BACKUP/M");
        assert_eq!(app.items().iter().map(|r| r.item.name.as_str()).collect::<Vec<_>>(), ["mail"]);
        press(&mut app, KeyCode::Enter);
        assert!(!app.filtering);
        assert_eq!(app.filter, "BACKUP/M", "the filter stays after Enter");
        // Keys are commands again: q would leave.
        press(&mut app, KeyCode::Tab);
        assert_eq!(
            app.group_lines(),
            [GroupLine::Header(Some("nightly"), 1), GroupLine::Item(app.row("mail").unwrap())]
        );
        press(&mut app, KeyCode::Char('/'));
        typed(&mut app, "x");
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.filter, "");
        // A group's name shows the whole group.
        app.filter = "night".into();
        assert_eq!(app.group_lines().len(), 3);
    }

    #[test]
    fn add_edit_copy_and_delete_open_their_screens() {
        let mut app = app();
        press(&mut app, KeyCode::Char('e'));
        let Screen::Form(form) = &app.screen else { panic!("{:?}", app.screen) };
        assert_eq!(form.purpose, Purpose::Edit("web".into()));
        press(&mut app, KeyCode::Esc);
        assert!(matches!(app.screen, Screen::List));
        press(&mut app, KeyCode::Char('c'));
        let Screen::Form(form) = &app.screen else { panic!() };
        assert_eq!(form.purpose, Purpose::Copy("web".into()));
        assert_eq!(form.item().unwrap().name, "web-copy");
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Char('d'));
        press(&mut app, KeyCode::Char('p'));
        assert_eq!(press(&mut app, KeyCode::Char('y')), Some(Effect::Delete { name: "web".into(), purge: true }));
        press(&mut app, KeyCode::Char('d'));
        assert_eq!(press(&mut app, KeyCode::Char('n')), None, "anything else cancels");
        assert!(matches!(app.screen, Screen::List));
        // In the Groups list, Add starts in the selected group.
        press(&mut app, KeyCode::Tab);
        press(&mut app, KeyCode::Char('a'));
        let Screen::Form(form) = &app.screen else { panic!() };
        assert_eq!(form.value(super::super::form::FieldId::Group).shown(false), "nightly");
    }

    #[test]
    fn a_group_runs_its_items_and_the_ungrouped_header_is_not_a_group() {
        let mut app = app();
        press(&mut app, KeyCode::Tab);
        assert_eq!(press(&mut app, KeyCode::Char('s')), Some(Effect::Run(vec!["web".into(), "mail".into()])));
        assert_eq!(press(&mut app, KeyCode::Char('e')), None);
        assert!(matches!(app.status, Some(Status::Error(_))), "a group cannot be edited");
        press(&mut app, KeyCode::End);
        press(&mut app, KeyCode::Up);
        assert_eq!(press(&mut app, KeyCode::Char('s')), None);
    }

    #[test]
    fn a_running_item_is_not_started_twice_and_can_be_stopped() {
        let mut app = app();
        assert_eq!(press(&mut app, KeyCode::Char('x')), None, "nothing to stop");
        app.runs.insert("web".into(), Live { phase: Phase::Planning, stopping: false });
        assert_eq!(press(&mut app, KeyCode::Char('s')), None);
        assert_eq!(app.status, Some(Status::Error("already running: web".into())));
        assert_eq!(press(&mut app, KeyCode::Char('x')), Some(Effect::Stop(vec!["web".into()])));
    }

    #[test]
    fn leaving_asks_first_while_runs_go_on() {
        let mut app = app();
        assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Effect::Quit));
        app.runs.insert("web".into(), Live { phase: Phase::Queued, stopping: false });
        assert_eq!(press(&mut app, KeyCode::Char('q')), None);
        assert!(app.confirm_quit);
        assert_eq!(press(&mut app, KeyCode::Char('n')), None);
        assert!(!app.confirm_quit);
        assert_eq!(update(&mut app, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), None);
        assert_eq!(press(&mut app, KeyCode::Char('y')), Some(Effect::Quit));
    }

    #[test]
    fn the_live_state_shows_runs_then_the_last_run() {
        let mut app = app();
        let state = |app: &App, name: &str| app.state_of(app.row(name).unwrap());
        assert_eq!(state(&app, "web"), "idle");
        assert_eq!(state(&app, "mail"), "file check not met");
        assert_eq!(state(&app, "usb"), "paused", "a watched item the daemon retries");
        let applying = Phase::Applying { bytes_done: 512, bytes_total: 2048, actions_done: 1, actions_total: 9 };
        app.runs.insert("web".into(), Live { phase: applying, stopping: false });
        assert_eq!(state(&app, "web"), "running 25%");
        app.runs.get_mut("web").unwrap().stopping = true;
        assert_eq!(state(&app, "web"), "stopping");
        app.runs.insert("web".into(), Live { phase: Phase::Done(ExitCode::Synced), stopping: false });
        assert_eq!(state(&app, "web"), "idle");
    }

    #[test]
    fn the_log_of_a_group_run_follows_the_item_that_runs() {
        let mut app = app();
        app.screen = Screen::Logs(Box::new(LogView::new(
            "web",
            "/var/log/web.log".into(),
            true,
            vec!["web".into(), "mail".into()],
        )));
        app.runs.insert("web".into(), Live { phase: Phase::Planning, stopping: false });
        app.runs.insert("mail".into(), Live { phase: Phase::Queued, stopping: false });
        assert_eq!(app.followed(), Some("web"));
        app.runs.insert("web".into(), Live { phase: Phase::Done(ExitCode::Synced), stopping: false });
        app.runs.insert("mail".into(), Live { phase: Phase::Planning, stopping: false });
        assert_eq!(app.followed(), Some("mail"));
        assert_eq!(press(&mut app, KeyCode::Char('x')), Some(Effect::Stop(vec!["web".into(), "mail".into()])));
    }
}
