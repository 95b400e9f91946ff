//! How `pairsync console` looks: [`draw`] renders an [`App`] to a ratatui frame and nothing
//! else, so a screen is a function of the state (no clock, no file): the lists with the
//! selected item's details, the gauges of the runs, the item dialog, the delete question, the
//! log viewer and the help. Without colour (NO_COLOR, or a monochrome terminal, which ignores
//! it) everything reads the same: the selection and the focused field are reversed, errors bold.

use indicatif::HumanBytes;
use ratatui::layout::{Alignment, Constraint, Layout, Margin, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Gauge, Padding, Paragraph, Row as TableRow, Table, TableState, Tabs, Wrap};
use ratatui::Frame;

use super::form::{FieldId, Form, SideField};
use super::logs::LogView;
use super::state::{meaning, App, GroupLine, Live, Phase, Row, Screen, Selected, Status, Tab};
use crate::app::progress::count;
use crate::config::job::shown;
use crate::core::model::Side;
use crate::core::names::Named;

/// The styles, with or without colour.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// NO_COLOR set (to anything) means no colour (https://no-color.org).
    pub fn from_env() -> Theme {
        Theme { color: std::env::var_os("NO_COLOR").is_none() }
    }

    /// `color` as the foreground, when colours are used.
    fn paint(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// The selected line, the focused field, the tab in front, a key cap: visible in any
    /// terminal.
    fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    fn ok(self) -> Style {
        self.paint(Color::Green)
    }

    fn bad(self) -> Style {
        self.paint(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn busy(self) -> Style {
        self.paint(Color::Yellow)
    }

    fn gauge(self) -> Style {
        self.paint(Color::Cyan)
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App, theme: Theme) {
    let area = frame.area();
    match &app.screen {
        Screen::Logs(view) => draw_log(frame, area, app, view, theme),
        _ => draw_lists(frame, area, app, theme),
    }
    match &app.screen {
        Screen::Form(form) => draw_form(frame, area, form, theme),
        Screen::Delete { name, purge } => draw_delete(frame, area, app, name, *purge, theme),
        Screen::List | Screen::Logs(_) => {}
    }
    if app.help {
        draw_help(frame, area, theme);
    }
    if app.confirm_quit || app.quitting {
        draw_quit(frame, area, app.quitting, theme);
    }
}

/// A last run in a table cell: "05-01 02:30 ok", "05-01 02:35 exit 3", "never".
fn last_run_cell(row: &Row) -> String {
    match &row.last_run {
        None => "never".to_string(),
        Some(run) => {
            // In the offset it was recorded in: the local time of the run.
            let when = chrono::DateTime::parse_from_rfc3339(&run.started)
                .map(|t| t.format("%m-%d %H:%M").to_string())
                .unwrap_or_else(|_| run.started.clone());
            match run.exit_code {
                0 => format!("{when} ok"),
                code => format!("{when} exit {code}"),
            }
        }
    }
}

fn state_style(state: &str, theme: Theme) -> Style {
    match state {
        "idle" => Style::new(),
        s if s.starts_with("running") || s == "queued" || s == "stopping" => theme.busy(),
        _ => theme.bad(),
    }
}

fn draw_lists(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let gauges = app.runs.values().filter(|live| live.active()).count().min(4) as u16;
    let [title, list, details, runs, status, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(8),
        Constraint::Length(gauges),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_title(frame, title, app, theme);
    match app.tab {
        Tab::Items => draw_items(frame, list, app, theme),
        Tab::Groups => draw_groups(frame, list, app, theme),
    }
    draw_details(frame, details, app, theme);
    let mut active: Vec<(&String, &Live)> = app.runs.iter().filter(|(_, live)| live.active()).collect();
    // The runs going on first, then those waiting their turn.
    active.sort_by_key(|(_, live)| live.phase == Phase::Queued);
    draw_gauges(frame, runs, &active, theme);
    draw_status(frame, status, app, theme);
    let list_keys: &[(&str, &str)] = if app.filtering {
        &[("Enter", "keep the filter"), ("Esc", "clear it"), ("↑↓", "select")]
    } else {
        &[
            ("a", "add"),
            ("e", "edit"),
            ("c", "copy"),
            ("d", "delete"),
            ("l", "logs"),
            ("s", "sync now"),
            ("x", "stop"),
            ("/", "filter"),
            ("?", "help"),
            ("q", "quit"),
        ]
    };
    draw_keys(frame, keys, list_keys, theme);
}

/// "pairsync  Items │ Groups", and the config file on the right.
fn draw_title(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let [name, tabs, file] =
        Layout::horizontal([Constraint::Length(9), Constraint::Length(17), Constraint::Min(0)]).areas(area);
    frame.render_widget(Paragraph::new(Span::styled("pairsync", theme.bold())), name);
    let selected = match app.tab {
        Tab::Items => 0,
        Tab::Groups => 1,
    };
    let tabs_widget = Tabs::new(["Items", "Groups"]).select(selected).highlight_style(theme.selected()).divider("│");
    frame.render_widget(tabs_widget, tabs);
    // The end of a long path is what tells files apart.
    let path = &app.config;
    let room = usize::from(file.width.saturating_sub(1));
    let chars = path.chars().count();
    let shown_path = if chars > room {
        format!("…{}", path.chars().skip(chars + 1 - room).collect::<String>())
    } else {
        path.clone()
    };
    frame.render_widget(Paragraph::new(Span::styled(shown_path, theme.dim())).alignment(Alignment::Right), file);
}

/// `text` in at most `width` columns: cut with an ellipsis.
fn fit(text: &str, width: u16) -> String {
    let width = usize::from(width);
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Widths for cells: the widest, at least the header's, at most `cap`.
fn width(header: &str, cells: impl Iterator<Item = String>, cap: usize) -> u16 {
    cells.map(|c| c.chars().count()).chain([header.len()]).max().unwrap_or(0).min(cap) as u16
}

fn draw_items(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let rows = app.items();
    if rows.is_empty() {
        let text = if app.rows.is_empty() {
            "No items yet: press a to add one (the config file is created on save)."
        } else {
            "No item matches the filter."
        };
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), area.inner(Margin::new(1, 1)));
        return;
    }
    let states: Vec<String> = rows.iter().map(|row| app.state_of(row)).collect();
    let name_w = width("NAME", rows.iter().map(|r| r.item.name.clone()), 16);
    let group_w = width("GROUP", rows.iter().map(|r| r.item.group.clone().unwrap_or_default()), 12);
    let mode_w = width("MODE", rows.iter().map(|r| r.item.mode.name().to_string()), 8);
    let last_w = width("LAST RUN", rows.iter().map(|r| last_run_cell(r)), 20);
    let state_w = width("STATE", states.iter().cloned(), 18);
    let schedule_w = width("SCHEDULE", rows.iter().map(|r| r.item.schedule.clone().unwrap_or_default()), 20);
    let next_w = width("NEXT RUN", rows.iter().map(|r| r.next_run.clone().unwrap_or_default()), 16);
    let fixed = name_w + group_w + mode_w + last_w + state_w + 5;
    // The schedule and next run have their columns where 30 columns are left for the sides;
    // else they are in the details below.
    let wide = area.width >= fixed + schedule_w + next_w + 2 + 30;
    let sides_w = area.width.saturating_sub(if wide { fixed + schedule_w + next_w + 2 } else { fixed });
    let mut widths =
        vec![Constraint::Length(name_w), Constraint::Length(group_w), Constraint::Length(mode_w), Constraint::Fill(1)];
    let sides = fit("SOURCE -> DESTINATION", sides_w);
    let mut header = vec!["NAME", "GROUP", "MODE", &sides];
    if wide {
        widths.extend([Constraint::Length(schedule_w), Constraint::Length(next_w)]);
        header.extend(["SCHEDULE", "NEXT RUN"]);
    }
    widths.extend([Constraint::Length(last_w), Constraint::Length(state_w)]);
    header.extend(["LAST RUN", "STATE"]);
    let lines = rows.iter().zip(&states).map(|(row, state)| {
        let item = &row.item;
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
        let mut cells = vec![
            Cell::from(item.name.clone()),
            Cell::from(dash(&item.group)),
            Cell::from(item.mode.name()),
            Cell::from(fit(&format!("{} -> {}", shown(&item.source), shown(&item.destination)), sides_w)),
        ];
        if wide {
            cells.extend([Cell::from(dash(&item.schedule)), Cell::from(dash(&row.next_run))]);
        }
        let last_style = match &row.last_run {
            Some(run) if run.exit_code == 0 => theme.ok(),
            Some(_) => theme.bad(),
            None => theme.dim(),
        };
        cells.push(Cell::from(Span::styled(last_run_cell(row), last_style)));
        cells.push(Cell::from(Span::styled(state.clone(), state_style(state, theme))));
        TableRow::new(cells)
    });
    let table = Table::new(lines, widths)
        .header(TableRow::new(header).style(theme.bold()))
        .column_spacing(1)
        .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(app.cursor()));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_groups(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let lines = app.group_lines();
    if lines.is_empty() {
        let text =
            if app.rows.is_empty() { "No items yet: press a to add one." } else { "No group matches the filter." };
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), area.inner(Margin::new(1, 1)));
        return;
    }
    let names = lines.iter().map(|line| match line {
        GroupLine::Header(Some(group), _) => group.to_string(),
        GroupLine::Header(None, _) => "(no group)".to_string(),
        GroupLine::Item(row) => format!("  {}", row.item.name),
    });
    let name_w = width("GROUP / ITEM", names, 24);
    let last_w = width("LAST RUN", app.rows.iter().map(last_run_cell), 20);
    // At least "9 running", a group's state.
    let state_w = width("STATE", app.rows.iter().map(|r| app.state_of(r)), 18).max(9);
    let sides_w = area.width.saturating_sub(name_w + 8 + last_w + state_w + 4);
    let rows = lines.iter().map(|line| match line {
        GroupLine::Header(group, n) => {
            let label = group.map_or("(no group)".to_string(), str::to_string);
            let items = if *n == 1 { "1 item".to_string() } else { format!("{n} items") };
            let members: Vec<&Row> = app.rows.iter().filter(|r| r.item.group.as_deref() == *group).collect();
            let running = members.iter().filter(|r| app.runs.get(&r.item.name).is_some_and(Live::active)).count();
            let state = if running > 0 { format!("{running} running") } else { String::new() };
            TableRow::new([
                Cell::from(Span::styled(label, theme.bold())),
                Cell::from(Span::styled(items, theme.dim())),
                Cell::from(""),
                Cell::from(""),
                Cell::from(Span::styled(state, theme.busy())),
            ])
        }
        GroupLine::Item(row) => {
            let state = app.state_of(row);
            TableRow::new([
                Cell::from(format!("  {}", row.item.name)),
                Cell::from(row.item.mode.name()),
                Cell::from(fit(&format!("{} -> {}", shown(&row.item.source), shown(&row.item.destination)), sides_w)),
                Cell::from(last_run_cell(row)),
                Cell::from(Span::styled(state.clone(), state_style(&state, theme))),
            ])
        }
    });
    let widths = [
        Constraint::Length(name_w),
        Constraint::Length(8),
        Constraint::Fill(1),
        Constraint::Length(last_w),
        Constraint::Length(state_w),
    ];
    let sides = fit("SOURCE -> DESTINATION", sides_w);
    let table = Table::new(rows, widths)
        .header(TableRow::new(["GROUP / ITEM", "MODE", &sides, "LAST RUN", "STATE"]).style(theme.bold()))
        .column_spacing(1)
        .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(app.cursor()));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The selected item's fields and last run in full, or a group's items.
fn draw_details(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let label = |text: &'static str| Span::styled(format!("{text:<12} "), theme.dim());
    // The last run's summary, under its line, wrapped in its own column.
    let mut result = None;
    let (title, lines): (String, Vec<Line>) = match app.selected() {
        None => return,
        Some(Selected::Item(row)) => {
            let item = &row.item;
            let title = match &item.description {
                Some(text) => format!(" {}: {text} ", item.name),
                None => format!(" {} ", item.name),
            };
            let schedule = match (&item.schedule, &row.next_run) {
                (Some(spec), Some(next)) => format!("{spec}; next run {next}"),
                (Some(spec), None) => spec.clone(),
                (None, _) => "none (Sync Now, cron or watch only)".to_string(),
            };
            let mut lines = vec![
                Line::from(vec![label("source"), Span::raw(shown(&item.source))]),
                Line::from(vec![label("destination"), Span::raw(shown(&item.destination))]),
                Line::from(vec![label("schedule"), Span::raw(schedule)]),
            ];
            match &row.last_run {
                None => lines.push(Line::from(vec![label("last run"), Span::styled("never", theme.dim())])),
                Some(run) => {
                    let when = chrono::DateTime::parse_from_rfc3339(&run.started)
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|_| run.started.clone());
                    let style = if run.exit_code == 0 { theme.ok() } else { theme.bad() };
                    lines.push(Line::from(vec![
                        label("last run"),
                        Span::raw(format!("{when} ({:.1} s): ", run.seconds)),
                        Span::styled(format!("exit {}, {}", run.exit_code, meaning(run.exit_code)), style),
                    ]));
                    result = Some(run.result.clone());
                }
            }
            (title, lines)
        }
        Some(Selected::Group(group)) => {
            let names = app.group(group);
            let lines = names
                .iter()
                .filter_map(|name| app.row(name))
                .map(|row| {
                    let state = app.state_of(row);
                    Line::from(vec![
                        Span::raw(format!("{:<16} ", row.item.name)),
                        Span::raw(format!("{:<20} ", last_run_cell(row))),
                        Span::styled(state.clone(), state_style(&state, theme)),
                    ])
                })
                .collect();
            (format!(" group {group}: s runs its {} items one after another ", names.len()), lines)
        }
        Some(Selected::Ungrouped) => {
            let names: Vec<&str> =
                app.rows.iter().filter(|r| r.item.group.is_none()).map(|r| r.item.name.as_str()).collect();
            (" items without a group ".to_string(), vec![Line::raw(names.join(", "))])
        }
    };
    let block = Block::bordered().padding(Padding::horizontal(1)).title(Span::styled(title, theme.bold()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let used = lines.len() as u16;
    frame.render_widget(Paragraph::new(lines), inner);
    if let Some(result) = result {
        let below = Rect {
            x: inner.x + 13,
            y: inner.y + used,
            width: inner.width.saturating_sub(13),
            height: inner.height.saturating_sub(used),
        };
        frame.render_widget(Paragraph::new(result).wrap(Wrap { trim: true }), below.intersection(inner));
    }
}

/// What a run is doing, for its gauge.
fn gauge_label(live: &Live) -> String {
    let stopping = if live.stopping { " (stopping after this file)" } else { "" };
    match &live.phase {
        Phase::Queued => "queued".to_string(),
        Phase::Scanning { entries } => format!("scanning: {} entries{stopping}", count(*entries)),
        Phase::Planning => format!("planning{stopping}"),
        Phase::Applying { bytes_done, bytes_total, actions_done, actions_total } => {
            let mut parts = Vec::new();
            if *bytes_total > 0 {
                parts.push(format!("{} of {}", HumanBytes(*bytes_done), HumanBytes(*bytes_total)));
            }
            if *actions_total > 0 {
                parts.push(format!("{actions_done} of {actions_total} other changes"));
            }
            if parts.is_empty() {
                parts.push("nothing to change".to_string());
            }
            format!("{}% {}{stopping}", live.percent(), parts.join(", "))
        }
        Phase::Done(exit) => {
            let code = exit.code();
            let word = crate::app::commands::outcome(code);
            if code == 0 {
                format!("done: {word}")
            } else {
                format!("done: {word}: {}", meaning(code))
            }
        }
    }
}

/// A gauge a run: the item's name, then how far it is.
fn draw_gauges(frame: &mut Frame, area: Rect, runs: &[(&String, &Live)], theme: Theme) {
    let name_w = runs.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0).min(16) as u16 + 1;
    for (i, (name, live)) in runs.iter().take(usize::from(area.height)).enumerate() {
        let line = Rect { y: area.y + i as u16, height: 1, ..area };
        let [label, bar] = Layout::horizontal([Constraint::Length(name_w), Constraint::Min(0)]).areas(line);
        frame.render_widget(Paragraph::new(name.as_str()), label);
        let style = match &live.phase {
            Phase::Done(exit) if exit.code() != 0 => theme.bad(),
            Phase::Done(_) => theme.ok(),
            _ => theme.gauge(),
        };
        let gauge =
            Gauge::default().percent(live.percent()).label(gauge_label(live)).gauge_style(style).use_unicode(true);
        frame.render_widget(gauge, bar);
    }
}

fn draw_status(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let line = if app.filtering {
        Line::from(vec![
            Span::styled("filter: ", theme.bold()),
            Span::raw(app.filter.clone()),
            Span::styled(" ", theme.selected()),
        ])
    } else if let Some(status) = &app.status {
        match status {
            Status::Info(text) => Line::raw(text.clone()),
            Status::Error(text) => Line::styled(text.clone(), theme.bad()),
        }
    } else if !app.filter.is_empty() {
        Line::from(vec![
            Span::styled("filter: ", theme.bold()),
            Span::raw(format!("{}  (/ then Esc clears it)", app.filter)),
        ])
    } else {
        Line::raw("")
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The footer: each key reversed, then what it does.
fn draw_keys(frame: &mut Frame, area: Rect, keys: &[(&str, &str)], theme: Theme) {
    let mut spans = Vec::new();
    for (key, what) in keys {
        spans.push(Span::styled(*key, theme.selected()));
        spans.push(Span::raw(format!(" {what} ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A rectangle of at most `width` x `height`, centred in `area`.
fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let (width, height) = (width.min(area.width), height.min(area.height));
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

/// The part of `text` that fits `width` columns around the cursor, and where the cursor is in it.
fn window(text: &str, cursor: usize, width: usize) -> (String, usize) {
    let chars: Vec<char> = text.chars().collect();
    let width = width.max(1);
    let start = (cursor + 1).saturating_sub(width);
    let end = (start + width).min(chars.len());
    (chars[start.min(end)..end].iter().collect(), cursor - start)
}

fn draw_form(frame: &mut Frame, area: Rect, form: &Form, theme: Theme) {
    let popup = centred(area, 80, 22);
    frame.render_widget(Clear, popup);
    let keys = Line::from(vec![
        Span::raw(" "),
        Span::styled("Enter", theme.selected()),
        Span::raw(" save "),
        Span::styled("Esc", theme.selected()),
        Span::raw(" cancel "),
        Span::styled("Tab ↑↓", theme.selected()),
        Span::raw(" move "),
        Span::styled("←→ Space", theme.selected()),
        Span::raw(" change "),
        Span::styled("F1", theme.selected()),
        Span::raw(" help "),
    ]);
    let block = Block::bordered().title(Span::styled(format!(" {} ", form.title()), theme.bold())).title_bottom(keys);
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let [top, sides, options, error] =
        Layout::vertical([Constraint::Length(4), Constraint::Length(10), Constraint::Length(3), Constraint::Min(0)])
            .areas(inner.inner(Margin::new(1, 0)));
    let half = |area: Rect| Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).spacing(2).areas::<2>(area);
    let rows = |area: Rect, n: usize| Layout::vertical(vec![Constraint::Length(1); n]).split(area);
    let top_rows = rows(top, 4);
    let [name, mode] = half(top_rows[0]);
    let [group, recursive] = half(top_rows[1]);
    let mut cursor = None;
    let mut field = |frame: &mut Frame, area: Rect, id: FieldId| {
        if let Some(at) = draw_field(frame, area, form, id, theme) {
            cursor = Some(at);
        }
    };
    field(frame, name, FieldId::Name);
    field(frame, mode, FieldId::Mode);
    field(frame, group, FieldId::Group);
    field(frame, recursive, FieldId::Recursive);
    field(frame, top_rows[2], FieldId::Description);
    field(frame, top_rows[3], FieldId::Log);
    let [source, destination] = half(sides);
    for (side, area) in [(Side::Source, source), (Side::Destination, destination)] {
        let lines = rows(area, 10);
        let title = if side == Side::Source { "Source" } else { "Destination" };
        frame.render_widget(Paragraph::new(Span::styled(title, theme.bold())), lines[1]);
        for (i, side_field) in SideField::ALL.into_iter().enumerate() {
            field(frame, lines[i + 2], FieldId::Side(side, side_field));
        }
    }
    let option_rows = rows(options, 3);
    let [schedule, conflict] = half(option_rows[0]);
    let [max_delete, watch] = half(option_rows[1]);
    let [connections, _] = half(option_rows[2]);
    field(frame, schedule, FieldId::Schedule);
    field(frame, conflict, FieldId::Conflict);
    field(frame, max_delete, FieldId::MaxDelete);
    field(frame, watch, FieldId::Watch);
    field(frame, connections, FieldId::Connections);
    if let Some(why) = &form.error {
        let text = Paragraph::new(Line::styled(why.clone(), theme.bad())).wrap(Wrap { trim: false });
        frame.render_widget(text, error);
    }
    if let Some(at) = cursor {
        frame.set_cursor_position(at);
    }
}

/// What an empty field means, shown dimmed in it.
fn hint(id: FieldId) -> &'static str {
    match id {
        FieldId::Log => "(default: <state dir>/logs/NAME.log)",
        FieldId::Schedule => "(none: mon-fri every 15m, daily at 02:30)",
        FieldId::Connections => "(4)",
        FieldId::Side(_, SideField::Ignore) => "(regexes, by spaces)",
        FieldId::Side(_, SideField::Check) => "(PATH[=REGEX])",
        FieldId::Side(_, SideField::PasswordEnv) => "(variable name)",
        FieldId::Side(_, SideField::Password) => "(~/.netrc)",
        _ => "",
    }
}

/// One field: its label, then its value (reversed when focused). Returns where the cursor
/// goes, for the focused text field.
fn draw_field(frame: &mut Frame, area: Rect, form: &Form, id: FieldId, theme: Theme) -> Option<(u16, u16)> {
    let [label, value] = Layout::horizontal([Constraint::Length(13), Constraint::Min(1)]).areas(area);
    let applies = form.applies(id);
    let focused = form.focused() == id;
    let label_style = if applies { Style::new() } else { theme.dim() };
    frame.render_widget(Paragraph::new(Span::styled(id.label(), label_style)), label);
    if !applies {
        frame.render_widget(Paragraph::new(Span::styled("-", theme.dim())), value);
        return None;
    }
    let shown = form.value(id).shown(focused);
    let room = usize::from(value.width);
    if focused {
        let cursor = form.cursor();
        let (text, at) = window(&shown, cursor.unwrap_or(0), room);
        frame.render_widget(Paragraph::new(Span::styled(format!("{text:<room$}"), theme.selected())), value);
        return cursor.map(|_| (value.x + at as u16, value.y));
    }
    let span = if shown.is_empty() {
        Span::styled(hint(id), theme.dim())
    } else {
        let (text, _) = window(&shown, 0, room);
        Span::raw(text)
    };
    frame.render_widget(Paragraph::new(span), value);
    None
}

fn draw_delete(frame: &mut Frame, area: Rect, app: &App, name: &str, purge: bool, theme: Theme) {
    let popup = centred(area, 68, 10);
    frame.render_widget(Clear, popup);
    let check = if purge { "[x]" } else { "[ ]" };
    let text = Text::from(vec![
        Line::raw(format!("Delete the item {name} from {}?", app.config)),
        Line::raw(""),
        Line::from(vec![
            Span::styled(check, theme.bold()),
            Span::raw(" also purge its state: the pair's database and its"),
        ]),
        Line::raw("    last-run record (as delete --purge-state); the log stays"),
        Line::raw(""),
        Line::from(vec![
            Span::styled("y", theme.selected()),
            Span::raw(" delete  "),
            Span::styled("p", theme.selected()),
            Span::raw(" purge on/off  "),
            Span::styled("n", theme.selected()),
            Span::raw(" keep it"),
        ]),
    ]);
    let block = Block::bordered().padding(Padding::uniform(1)).title(Span::styled(" Delete ", theme.bold()));
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).block(block), popup);
}

fn draw_quit(frame: &mut Frame, area: Rect, quitting: bool, theme: Theme) {
    let popup = centred(area, 56, 5);
    frame.render_widget(Clear, popup);
    let text = if quitting {
        Text::from(vec![Line::raw("Stopping the runs after their current file…")])
    } else {
        Text::from(vec![
            Line::raw("Runs are going on. Stop them (after the current file)"),
            Line::from(vec![
                Span::raw("and quit? "),
                Span::styled("y", theme.selected()),
                Span::raw(" yes  "),
                Span::styled("n", theme.selected()),
                Span::raw(" no"),
            ]),
        ])
    };
    let block = Block::bordered().title(Span::styled(" Quit ", theme.bold()));
    frame.render_widget(Paragraph::new(text).block(block), popup);
}

/// Every key, by screen.
const HELP: &[(&str, &[(&str, &str)])] = &[
    (
        "Items and Groups",
        &[
            ("↑↓ PgUp PgDn", "select"),
            ("Tab", "Items / Groups"),
            ("a", "add an item (in the selected group)"),
            ("e Enter", "edit the item"),
            ("c", "copy the item"),
            ("d Del", "delete the item (asks; p purges its state)"),
            ("l", "the item's log"),
            ("s", "Sync Now: the item, or the group's items"),
            ("x", "stop its run after the current file"),
            ("/", "filter (Enter keeps it, Esc clears it)"),
            ("q Esc Ctrl-C", "quit (asks first while runs go on)"),
        ],
    ),
    (
        "Item dialog",
        &[
            ("Tab ↓  S-Tab ↑", "next / previous field"),
            ("←→ Space", "change a choice or a box"),
            ("Enter  Esc", "save / cancel"),
        ],
    ),
    (
        "Log",
        &[
            ("↑↓ PgUp PgDn", "scroll (End or G follows again)"),
            ("f", "follow on / off"),
            ("/  n N", "search; next match up / down"),
            ("x  Esc", "stop the run / back to the list"),
        ],
    ),
];

fn draw_help(frame: &mut Frame, area: Rect, theme: Theme) {
    let popup = centred(area, 70, 24);
    frame.render_widget(Clear, popup);
    let mut lines = Vec::new();
    for (screen, keys) in HELP {
        lines.push(Line::styled(*screen, theme.bold()));
        for (key, what) in *keys {
            lines.push(Line::from(vec![Span::raw(format!("  {key:<16}")), Span::raw(*what)]));
        }
    }
    let block = Block::bordered()
        .title(Span::styled(" Help ", theme.bold()))
        .title_bottom(Line::from(vec![Span::raw(" any key closes it ")]));
    frame.render_widget(Paragraph::new(lines).block(block), popup);
}

/// A piece of a log line, with the search's matches reversed.
fn log_row(piece: &str, search: &str, theme: Theme) -> Line<'static> {
    let lower = piece.to_lowercase();
    let needle = search.to_lowercase();
    if search.is_empty() || !lower.contains(&needle) {
        return Line::raw(piece.to_string());
    }
    // Lower-casing changed the byte offsets: the whole piece is the match.
    if lower.len() != piece.len() {
        return Line::styled(piece.to_string(), theme.selected());
    }
    let mut spans = Vec::new();
    let mut at = 0;
    for (start, found) in lower.match_indices(&needle) {
        spans.push(Span::raw(piece[at..start].to_string()));
        spans.push(Span::styled(piece[start..start + found.len()].to_string(), theme.selected()));
        at = start + found.len();
    }
    spans.push(Span::raw(piece[at..].to_string()));
    Line::from(spans)
}

/// The screen rows of the log lines up to `bottom` (included) that fit `height` rows of
/// `width` columns, long lines cut into rows: the last one at the bottom.
fn log_rows(view: &LogView, bottom: usize, width: usize, height: usize, theme: Theme) -> Vec<Line<'static>> {
    let mut rows = Vec::new();
    for line in view.lines[..=bottom].iter().rev() {
        let chars: Vec<char> = line.chars().collect();
        let pieces: Vec<String> = if chars.is_empty() {
            vec![String::new()]
        } else {
            chars.chunks(width.max(1)).map(|c| c.iter().collect()).collect()
        };
        rows.extend(pieces.iter().rev().map(|piece| log_row(piece, &view.search, theme)));
        if rows.len() >= height {
            break;
        }
    }
    rows.truncate(height);
    rows.reverse();
    rows
}

fn draw_log(frame: &mut Frame, area: Rect, app: &App, view: &LogView, theme: Theme) {
    let runs: Vec<(&String, &Live)> =
        view.batch.iter().filter_map(|name| app.runs.get(name).map(|live| (name, live))).take(4).collect();
    let [title, gauges, text, status, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(runs.len() as u16),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let mode = if view.follow { "following" } else { "not following (End follows)" };
    let header = Line::from(vec![
        Span::styled(format!("Log of {}", view.name), theme.bold()),
        Span::raw(format!("  {}  ", view.path.display())),
        Span::styled(mode, theme.dim()),
    ]);
    frame.render_widget(Paragraph::new(header), title);
    draw_gauges(frame, gauges, &runs, theme);
    let body: Vec<Line> = if view.lines.is_empty() {
        let why =
            if view.exists { "(the log is empty)" } else { "(no log yet: it is created by the item's first run)" };
        vec![Line::styled(why, theme.dim())]
    } else {
        log_rows(view, view.bottom(), usize::from(text.width), usize::from(text.height), theme)
    };
    frame.render_widget(Paragraph::new(body), text);
    let status_line = if view.searching {
        Line::from(vec![
            Span::styled("search: ", theme.bold()),
            Span::raw(view.search.clone()),
            Span::styled(" ", theme.selected()),
        ])
    } else if !view.search.is_empty() {
        let n = view.matches().len();
        Line::raw(format!("{n} lines match {:?} (n up, N down, / searches again)", view.search))
    } else {
        match &app.status {
            Some(Status::Error(text)) => Line::styled(text.clone(), theme.bad()),
            Some(Status::Info(text)) => Line::raw(text.clone()),
            None => Line::raw(""),
        }
    };
    frame.render_widget(Paragraph::new(status_line), status);
    draw_keys(
        frame,
        keys,
        &[
            ("↑↓ PgUp PgDn", "scroll"),
            ("f", "follow"),
            ("/", "search"),
            ("n N", "next"),
            ("x", "stop"),
            ("Esc", "back"),
            ("?", "help"),
        ],
        theme,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::KeyCode;
    use ratatui::Terminal;

    use super::*;
    use crate::app::console::form::Form;
    use crate::app::console::state::tests::{app, press};
    use crate::config::{EndpointKind, SideConfig};
    use crate::core::exit::ExitCode;

    fn render(app: &App, theme: Theme, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, app, theme)).unwrap();
        terminal
    }

    fn screen(app: &App) -> String {
        render(app, Theme { color: false }, 80, 24).backend().to_string()
    }

    #[test]
    fn items_list() {
        insta::assert_snapshot!(screen(&app()));
    }

    /// The README's capture of the main screen is this snapshot's, so it cannot grow stale.
    #[test]
    fn the_readme_shows_the_items_list() {
        let lines: Vec<String> =
            screen(&app()).lines().map(|line| line.trim_matches('"').trim_end().to_string()).collect();
        let capture = format!("```text\n{}\n```", lines.join("\n"));
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        assert!(readme.contains(&capture), "README.md should show, under \"The console\":\n{capture}");
    }

    #[test]
    fn groups_list() {
        let mut app = app();
        press(&mut app, KeyCode::Tab);
        insta::assert_snapshot!(screen(&app));
    }

    /// An FTPS destination with a password: the dialog shows "(set)", never the password.
    fn ftp_item() -> crate::config::Item {
        let mut item = app().rows[0].item.clone();
        item.destination = SideConfig {
            kind: EndpointKind::Ftp,
            server: Some("nas.example.com".into()),
            username: Some("deploy".into()),
            password: Some("hunter2".into()),
            tls: true,
            directory: "/backup/www".into(),
            ignore: vec![r"\.tmp$".into(), "^cache/".into()],
            ..SideConfig::directory("")
        };
        item
    }

    #[test]
    fn dialog_with_a_password_set() {
        let mut app = app();
        app.screen = Screen::Form(Box::new(Form::edit(&ftp_item())));
        let shown = screen(&app);
        assert!(!shown.contains("hunter2"));
        insta::assert_snapshot!(shown);
    }

    #[test]
    fn dialog_with_a_validation_error() {
        let mut app = app();
        let mut form = Form::edit(&ftp_item());
        // The schedule field, typed wrong, then Enter.
        while form.focused() != FieldId::Schedule {
            form.key(ratatui::crossterm::event::KeyEvent::from(KeyCode::Tab));
        }
        for c in " and never".chars() {
            form.key(ratatui::crossterm::event::KeyEvent::from(KeyCode::Char(c)));
        }
        form.key(ratatui::crossterm::event::KeyEvent::from(KeyCode::Enter));
        assert!(form.error.as_deref().is_some_and(|e| e.starts_with("--schedule: ")), "{:?}", form.error);
        app.screen = Screen::Form(Box::new(form));
        insta::assert_snapshot!(screen(&app));
    }

    #[test]
    fn a_running_item_with_its_gauge() {
        let mut app = app();
        let applying = Phase::Applying { bytes_done: 3 << 20, bytes_total: 8 << 20, actions_done: 2, actions_total: 5 };
        app.runs.insert("web".into(), Live { phase: applying, stopping: false });
        app.runs.insert("mail".into(), Live { phase: Phase::Queued, stopping: false });
        insta::assert_snapshot!(screen(&app));
    }

    #[test]
    fn a_sync_now_log_following_its_run() {
        let mut app = app();
        let mut view = LogView::new("web", "/var/lib/pairsync/logs/web.log".into(), true, vec!["web".into()]);
        view.lines = vec![
            "2025-05-01 02:30:00.001 +02:00 start item web /srv/www -> /backup/www".into(),
            "2025-05-01 02:30:00.120 +02:00 copy source:index.html".into(),
            "2025-05-01 02:30:03.200 +02:00 end /srv/www -> /backup/www (clone): copied 3 (1.20 KiB), deleted 0, renamed \
             0, 0 conflicts, 0 problems in 3.20 s (exit 0)"
                .into(),
        ];
        view.exists = true;
        app.screen = Screen::Logs(Box::new(view));
        app.runs.insert("web".into(), Live { phase: Phase::Done(ExitCode::Synced), stopping: false });
        insta::assert_snapshot!(screen(&app));
    }

    #[test]
    fn delete_asks_first() {
        let mut app = app();
        press(&mut app, KeyCode::Char('d'));
        insta::assert_snapshot!(screen(&app));
    }

    #[test]
    fn help() {
        let mut app = app();
        press(&mut app, KeyCode::Char('?'));
        insta::assert_snapshot!(screen(&app));
    }

    #[test]
    fn without_colour_nothing_is_coloured_and_the_selection_is_reversed() {
        let mut app = app();
        app.runs.insert("web".into(), Live { phase: Phase::Planning, stopping: false });
        for (theme, coloured) in [(Theme { color: false }, false), (Theme { color: true }, true)] {
            let terminal = render(&app, theme, 80, 24);
            let buffer = terminal.backend().buffer();
            let colours = buffer.content.iter().any(|cell| cell.fg != Color::Reset || cell.bg != Color::Reset);
            assert_eq!(colours, coloured);
            // The selected line (web, the first item under the header) is reversed.
            assert!(buffer[(0, 2)].modifier.contains(Modifier::REVERSED));
        }
    }

    #[test]
    fn any_size_renders_and_wide_terminals_show_the_schedule() {
        let mut app = app();
        for (w, h) in [(20, 5), (80, 24), (200, 60), (1, 1)] {
            render(&app, Theme { color: true }, w, h);
        }
        let wide = render(&app, Theme { color: false }, 160, 30).backend().to_string();
        assert!(wide.contains("SCHEDULE") && wide.contains("daily at 02:30"), "{wide}");
        app.screen = Screen::Form(Box::new(Form::add(None)));
        for (w, h) in [(20, 5), (80, 24), (200, 60), (1, 1)] {
            render(&app, Theme { color: true }, w, h);
        }
    }
}
