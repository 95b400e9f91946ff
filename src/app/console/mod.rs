//! `pairsync console`: the seed's Synchronization tab as a terminal UI, for an admin on a
//! server over SSH: the Items and Groups lists with each item's last run and live state, the
//! item dialog (Add, Edit, Copy), Delete, Logs and Sync Now, in one screen.
//!
//! This file owns the terminal and the loop: raw mode and the alternate screen, given back on
//! every way out (a normal quit, a panic, SIGTERM, SIGHUP or SIGINT), and the effects of keys.
//! The rest is split by concern:
//! - `state`: the state and the pure `update(state, key) -> effect`;
//! - `view`: the state drawn to a ratatui frame, pure too;
//! - `form`: the item dialog, checked by the config module as `add` and `edit` check flags;
//! - `runner`: Sync Now on background threads, each item run as `pairsync run` runs it;
//! - `logs`: the log viewer (follow, scroll, search).
//!
//! The config file is read and written only through the config module (and the same locked,
//! atomic, comment-keeping save as `add` and `edit`), items run only through the engine.
//! Ctrl-C is a key in raw mode: it quits, as q does (asking first while runs go on). A signal
//! stops the runs after their current file, gives the terminal back and exits 128 + the signal;
//! a second one exits at once (the terminal given back first).

mod form;
mod logs;
mod runner;
mod state;
mod view;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::Terminal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::app::commands;
use crate::app::items::{self, config_error};
use crate::config::{Config, Item};
use crate::core::error::{Error, Result};
use crate::core::exit::ExitCode;
use form::Purpose;
use logs::LogView;
use runner::Runner;
use state::{update, App, Effect, Row, Screen, Status};
use view::Theme;

/// Whether the terminal is in raw mode on the alternate screen (so that it is given back once).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Gives the terminal back: the cursor shown, the main screen, cooked mode. Leaving the
/// alternate screen is the last thing written.
fn give_back() {
    if TAKEN.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(std::io::stdout(), Show, LeaveAlternateScreen);
    }
}

fn take() -> std::io::Result<()> {
    // A panic of the console gives the terminal back before its message is printed. One on
    // another thread prints nothing over the screen: a run's is caught and reported by the
    // runner, and sled's where the state opens a database.
    let console = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == console {
            give_back();
            previous(info);
        }
    }));
    enable_raw_mode()?;
    TAKEN.store(true, Ordering::SeqCst);
    execute!(std::io::stdout(), EnterAlternateScreen, Hide)
}

/// SIGTERM, SIGHUP and SIGINT: the first is left to the loop (stop the runs, then leave), a
/// second one ends the process at once, the terminal given back first. The handle ends it.
fn catch_signals() -> std::io::Result<(Arc<AtomicUsize>, Handle)> {
    let caught = Arc::new(AtomicUsize::new(0));
    let mut signals = Signals::new([SIGTERM, SIGHUP, SIGINT])?;
    let handle = signals.handle();
    let seen = caught.clone();
    std::thread::Builder::new().name("console-signals".into()).spawn(move || {
        for signal in signals.forever() {
            if seen.swap(signal as usize, Ordering::SeqCst) != 0 {
                give_back();
                std::process::exit(128 + signal);
            }
        }
    })?;
    Ok((caught, handle))
}

/// The config file as it is on disk, to notice a change made by someone else.
fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
}

/// The items with their last runs and next runs, as of now.
fn rows(items: &[Item], state_dir: &Path) -> Vec<Row> {
    let now = chrono::Local::now();
    items
        .iter()
        .map(|item| Row {
            last_run: items::last_run(state_dir, &item.name),
            next_run: commands::next_run(item, &now).map(|t| t.format("%Y-%m-%d %H:%M").to_string()),
            item: item.clone(),
        })
        .collect()
}

/// What the console works on.
struct Session {
    path: PathBuf,
    state_dir: PathBuf,
    items: Vec<Item>,
    stamp: Option<(std::time::SystemTime, u64)>,
    runner: Runner,
}

impl Session {
    /// Reads the config file again (a missing one has no items yet).
    fn load(&mut self) -> Result<Vec<String>> {
        self.stamp = stamp(&self.path);
        if !self.path.exists() {
            self.items = Vec::new();
            return Ok(Vec::new());
        }
        let config = commands::load(Some(self.path.clone()), true)?;
        self.items = config.items().map_err(config_error)?;
        Ok(config.warnings())
    }

    fn item(&self, name: &str) -> Option<&Item> {
        self.items.iter().find(|item| item.name == name)
    }

    fn log(&self, name: &str, batch: Vec<String>) -> Option<LogView> {
        let item = self.item(name)?;
        let mut view = LogView::new(name, items::log_path(item, &self.state_dir), true, batch);
        view.refresh();
        Some(view)
    }

    /// Saves the dialog's item through the config module, under the config's lock.
    fn save(&self, purpose: &Purpose, item: &Item) -> Result<String> {
        let create = *purpose == Purpose::Add;
        commands::edit_config(Some(self.path.clone()), true, create, |config: &mut Config| {
            match purpose {
                Purpose::Add => config.add(item),
                Purpose::Edit(original) => config.replace(original, item),
                // As `copy` writes it (its comments too), then changed as the dialog says.
                Purpose::Copy(original) => {
                    config.copy(original, &item.name).and_then(|()| config.replace(&item.name, item))
                }
            }
            .map_err(config_error)
        })?;
        let verb = match purpose {
            Purpose::Add => "added",
            Purpose::Edit(_) => "saved",
            Purpose::Copy(_) => "copied as",
        };
        Ok(format!("{verb} {} in {}", item.name, self.path.display()))
    }
}

/// Runs the console on the config file `config_flag` names (or the default one) until the user
/// leaves.
pub fn run(config_flag: Option<PathBuf>, state_dir: &Path) -> Result<ExitCode> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Error::Usage("console: needs a terminal (standard input and output)".into()));
    }
    let path = commands::config_path(config_flag)?;
    let mut session = Session {
        path,
        state_dir: state_dir.to_path_buf(),
        items: Vec::new(),
        stamp: None,
        runner: Runner::new(state_dir.to_path_buf()),
    };
    let warnings = session.load()?;
    let mut app = App::new(&session.path.display().to_string(), rows(&session.items, state_dir));
    app.status = match warnings.first() {
        Some(warning) => Some(Status::Error(format!("warning: {warning}"))),
        None if !session.path.exists() => {
            Some(Status::Info("no config file yet: a adds the first item and creates it".into()))
        }
        None => None,
    };
    let (signals, handle) =
        catch_signals().map_err(|e| Error::Usage(format!("console: cannot handle signals: {e}")))?;
    let terminal_error = |e: std::io::Error| Error::Usage(format!("console: the terminal: {e}"));
    if let Err(e) = take() {
        give_back();
        handle.close();
        return Err(terminal_error(e));
    }
    let backend = CrosstermBackend::new(std::io::BufWriter::new(std::io::stdout()));
    let result = Terminal::new(backend).map_err(terminal_error).and_then(|mut terminal| {
        let outcome = event_loop(&mut terminal, &mut app, &mut session, &signals).map_err(terminal_error);
        let _ = terminal.backend_mut().flush();
        outcome
    });
    give_back();
    handle.close();
    match signals.load(Ordering::SeqCst) {
        0 => result.map(|()| ExitCode::Synced),
        signal => std::process::exit(128 + signal as i32),
    }
}

/// Draws, reads a key, does what it says; refreshes the runs, the log and the lists meanwhile.
fn event_loop<W: Write>(
    terminal: &mut Terminal<CrosstermBackend<W>>,
    app: &mut App,
    session: &mut Session,
    signals: &AtomicUsize,
) -> std::io::Result<()> {
    let theme = Theme::from_env();
    let mut refreshed = Instant::now();
    let mut active = 0;
    loop {
        if signals.load(Ordering::SeqCst) != 0 && !app.quitting {
            session.runner.stop_all();
            app.quitting = true;
        }
        app.runs = session.runner.live();
        if let Some(failure) = session.runner.failures().pop() {
            app.status = Some(Status::Error(failure));
        }
        if app.quitting && !session.runner.busy() {
            return Ok(());
        }
        // A run that ended wrote its last-run record: show it now.
        let now_active = app.runs.values().filter(|live| live.active()).count();
        if refreshed.elapsed() >= Duration::from_secs(1) || now_active != active {
            if stamp(&session.path) != session.stamp {
                if let Err(e) = session.load() {
                    app.status = Some(Status::Error(e.chain()));
                }
            }
            app.rows = rows(&session.items, &session.state_dir);
            refreshed = Instant::now();
            active = now_active;
        }
        if let Some(name) = app.followed().map(str::to_string) {
            if let (Screen::Logs(view), Some(item)) = (&mut app.screen, session.item(&name)) {
                if view.name != name {
                    view.switch(&name, items::log_path(item, &session.state_dir));
                }
            }
        }
        if let Screen::Logs(view) = &mut app.screen {
            view.refresh();
        }
        app.height = terminal.size()?.height;
        terminal.draw(|frame| view::draw(frame, app, theme))?;
        // Ten frames a second while something moves, two while idle.
        let live = app.running() || matches!(app.screen, Screen::Logs(_));
        if !event::poll(Duration::from_millis(if live { 100 } else { 500 }))? {
            continue;
        }
        // A resize needs nothing more: the next draw fits the new size.
        let Event::Key(key) = event::read()? else { continue };
        if let Some(effect) = update(app, key) {
            if effect == Effect::Quit && !session.runner.busy() {
                return Ok(());
            }
            apply(effect, app, session);
        }
    }
}

/// Does what a key asked for.
fn apply(effect: Effect, app: &mut App, session: &mut Session) {
    match effect {
        Effect::Quit => {
            session.runner.stop_all();
            app.quitting = true;
        }
        Effect::Save { purpose, item } => match session.save(&purpose, &item) {
            Ok(said) => {
                app.screen = Screen::List;
                app.status = Some(Status::Info(said));
                reload(app, session);
                // The saved item is selected.
                if let Some(at) = app.items().iter().position(|row| row.item.name == item.name) {
                    app.tab = state::Tab::Items;
                    app.cursor[0] = at;
                }
            }
            Err(e) => {
                if let Screen::Form(form) = &mut app.screen {
                    form.refuse(e.chain());
                }
            }
        },
        Effect::Delete { name, purge } => {
            app.status =
                Some(match commands::delete_item(Some(session.path.clone()), &session.state_dir, &name, purge, true) {
                    Ok(said) => Status::Info(said),
                    Err(e) => Status::Error(e.chain()),
                });
            reload(app, session);
        }
        Effect::Run(names) => {
            let chosen: Vec<Item> = names.iter().filter_map(|name| session.item(name).cloned()).collect();
            session.runner.start(chosen);
            app.runs = session.runner.live();
            app.status = None;
            if let Some(view) = session.log(&names[0], names.clone()) {
                app.screen = Screen::Logs(Box::new(view));
            }
        }
        Effect::Stop(names) => {
            session.runner.stop(&names);
            app.status = Some(Status::Info(format!("stopping {} after the current file", names.join(", "))));
        }
        Effect::OpenLog(name) => {
            let batch = if app.runs.contains_key(&name) { vec![name.clone()] } else { Vec::new() };
            if let Some(view) = session.log(&name, batch) {
                app.screen = Screen::Logs(Box::new(view));
            }
        }
    }
}

/// The lists after an edit of the file.
fn reload(app: &mut App, session: &mut Session) {
    if let Err(e) = session.load() {
        app.status = Some(Status::Error(e.chain()));
    }
    app.rows = rows(&session.items, &session.state_dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SideConfig;

    /// A header, then an item with a comment above it and one beside its name.
    const CONFIG: &str = "# Items of this host.\n\n# The nightly jobs.\n[[item]]\nname = \"web\"  # the site\n\n\
                          [item.source]\ndirectory = \"/srv/www\"\n\n[item.destination]\ndirectory = \"/backup/www\"\n";

    fn session(dir: &Path) -> (App, Session) {
        let path = dir.join("pairsync.toml");
        std::fs::write(&path, CONFIG).unwrap();
        let state_dir = dir.join("state");
        let mut session = Session {
            path,
            state_dir: state_dir.clone(),
            items: Vec::new(),
            stamp: None,
            runner: Runner::new(state_dir),
        };
        session.load().unwrap();
        let app = App::new("pairsync.toml", rows(&session.items, &session.state_dir));
        (app, session)
    }

    #[test]
    fn the_dialog_saves_through_the_config_module_keeping_comments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut app, mut session) = session(dir.path());
        let mut web = session.item("web").unwrap().clone();
        web.schedule = Some("daily at 02:30".into());
        apply(Effect::Save { purpose: Purpose::Edit("web".into()), item: Box::new(web) }, &mut app, &mut session);
        assert!(
            matches!(&app.status, Some(Status::Info(said)) if said.starts_with("saved web in ")),
            "{:?}",
            app.status
        );
        let text = std::fs::read_to_string(&session.path).unwrap();
        assert!(text.contains("# The nightly jobs.") && text.contains("# the site"), "{text}");
        assert!(text.contains("schedule = \"daily at 02:30\""), "{text}");
        assert_eq!(app.rows[0].item.schedule.as_deref(), Some("daily at 02:30"));
    }

    #[test]
    fn a_refused_save_keeps_the_dialog_open_with_the_message_of_add() {
        let dir = tempfile::tempdir().unwrap();
        let (mut app, mut session) = session(dir.path());
        let web = Item::new("web", SideConfig::directory("/srv/a"), SideConfig::directory("/srv/b"));
        app.screen = Screen::Form(Box::new(form::Form::add(None)));
        apply(Effect::Save { purpose: Purpose::Add, item: Box::new(web.clone()) }, &mut app, &mut session);
        let mut config = Config::load(&session.path).unwrap();
        let cli = config.add(&web).unwrap_err().to_string();
        let Screen::Form(form) = &app.screen else { panic!("the dialog closed: {:?}", app.status) };
        assert_eq!(form.error.as_deref(), Some(cli.as_str()));
        assert!(cli.ends_with("an item named \"web\" already exists"), "{cli}");
    }

    #[test]
    fn delete_says_what_delete_says() {
        let dir = tempfile::tempdir().unwrap();
        let (mut app, mut session) = session(dir.path());
        apply(Effect::Delete { name: "web".into(), purge: false }, &mut app, &mut session);
        let said = Some(Status::Info("deleted web; its state is kept (--purge-state removes it)".into()));
        assert_eq!(app.status, said);
        assert!(app.rows.is_empty());
        // As `delete` does: the item's own comment goes, the file's header stays.
        let text = std::fs::read_to_string(&session.path).unwrap();
        assert!(text.contains("# Items of this host.") && !text.contains("# The nightly jobs."), "{text}");
    }
}
