//! The item dialog of `pairsync console` (the seed's Synchronization dialog): every field of an
//! item as an editable value, the keys that move between and change them, and the item they
//! make, checked by the config module exactly as `pairsync add` and `edit` check their flags
//! (the same [`ItemEdit`] applied by the same [`apply`], so the messages are the same).
//! A password is held here to be saved, and never shown: its field reads "(set)" or a dot a
//! character while it is typed.

use std::path::PathBuf;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::config::edit::{apply, side_from, ItemEdit};
use crate::config::{EndpointKind, Item, SideConfig};
use crate::core::model::Side;
use crate::core::names::Named;
use crate::core::plan::{ConflictPolicy, Mode};
use crate::core::safety::MaxDelete;

/// What the dialog was opened for, and so how its item is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Add,
    /// In place of the item of that name (which may be renamed).
    Edit(String),
    /// As a new item, copied from the item of that name (its comments kept).
    Copy(String),
}

/// A field of one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideField {
    Type,
    Server,
    Username,
    Password,
    PasswordEnv,
    Directory,
    Ignore,
    Check,
}

impl SideField {
    pub const ALL: [SideField; 8] = [
        SideField::Type,
        SideField::Server,
        SideField::Username,
        SideField::Password,
        SideField::PasswordEnv,
        SideField::Directory,
        SideField::Ignore,
        SideField::Check,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SideField::Type => "Type",
            SideField::Server => "Server",
            SideField::Username => "Username",
            SideField::Password => "Password",
            SideField::PasswordEnv => "Password env",
            SideField::Directory => "Directory",
            SideField::Ignore => "Ignore list",
            SideField::Check => "File check",
        }
    }

    /// Fields that mean something only for an FTP side.
    fn ftp_only(self) -> bool {
        matches!(self, SideField::Server | SideField::Username | SideField::Password | SideField::PasswordEnv)
    }
}

/// Which field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldId {
    Name,
    Description,
    Group,
    Log,
    Mode,
    Recursive,
    Side(Side, SideField),
    Schedule,
    Conflict,
    MaxDelete,
    Watch,
    Connections,
}

impl FieldId {
    pub fn label(self) -> &'static str {
        match self {
            FieldId::Name => "Name",
            FieldId::Description => "Description",
            FieldId::Group => "Group",
            FieldId::Log => "Log file",
            FieldId::Mode => "Mode",
            FieldId::Recursive => "Recursive",
            FieldId::Side(_, field) => field.label(),
            FieldId::Schedule => "Schedule",
            FieldId::Conflict => "Conflict",
            FieldId::MaxDelete => "Max delete",
            FieldId::Watch => "Watch",
            FieldId::Connections => "Connections",
        }
    }
}

/// The order Tab goes through the fields: the item's, the source's, the destination's, the
/// options'.
fn order() -> Vec<FieldId> {
    let mut ids =
        vec![FieldId::Name, FieldId::Mode, FieldId::Group, FieldId::Recursive, FieldId::Description, FieldId::Log];
    for side in [Side::Source, Side::Destination] {
        ids.extend(SideField::ALL.map(|field| FieldId::Side(side, field)));
    }
    ids.extend([FieldId::Schedule, FieldId::Conflict, FieldId::MaxDelete, FieldId::Watch, FieldId::Connections]);
    ids
}

/// The side types the dialog offers: FTP with and without TLS are one type with a flag in the
/// file, two choices here.
const SIDE_TYPES: &[&str] = &["directory", "ftp", "ftps"];

/// A field's value as edited.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// Text, with the cursor as a count of characters; a secret one is never shown.
    Text {
        text: String,
        cursor: usize,
        secret: bool,
    },
    /// One of a fixed list of names.
    Choice {
        options: Vec<&'static str>,
        index: usize,
    },
    Flag(bool),
}

// By hand, so that `{:?}` of a form never prints a password.
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text { secret: true, .. } => f.write_str("Text(***)"),
            Value::Text { text, .. } => f.debug_tuple("Text").field(text).finish(),
            Value::Choice { options, index } => f.debug_tuple("Choice").field(&options[*index]).finish(),
            Value::Flag(on) => f.debug_tuple("Flag").field(on).finish(),
        }
    }
}

impl Value {
    fn text(text: impl Into<String>) -> Value {
        let text = text.into();
        Value::Text { cursor: text.chars().count(), text, secret: false }
    }

    fn choice(options: Vec<&'static str>, current: &str) -> Value {
        let index = options.iter().position(|o| *o == current).unwrap_or(0);
        Value::Choice { options, index }
    }

    /// What the field shows: a secret as "(set)" (or, while it is typed, a dot a character).
    pub fn shown(&self, focused: bool) -> String {
        match self {
            Value::Text { text, secret: true, .. } if text.is_empty() => String::new(),
            Value::Text { text, secret: true, .. } if focused => "\u{2022}".repeat(text.chars().count()),
            Value::Text { secret: true, .. } => "(set)".to_string(),
            Value::Text { text, .. } => text.clone(),
            Value::Choice { options, index } => options[*index].to_string(),
            Value::Flag(on) => if *on { "[x]" } else { "[ ]" }.to_string(),
        }
    }
}

/// What a key did to the dialog.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Nothing more to do than draw it again.
    Changed,
    Cancel,
    /// Save this item (already checked).
    Save(Box<Item>),
}

/// The dialog: its fields, the one with the focus, and the last error.
#[derive(Debug, Clone)]
pub struct Form {
    pub purpose: Purpose,
    /// The item as it was (Edit, Copy) or a new one's defaults: the fields the dialog does not
    /// show (exclude, include, backup_dir) are kept from it.
    base: Item,
    fields: Vec<(FieldId, Value)>,
    focus: usize,
    /// Why the last Save was refused (or what saving said), shown until the next change.
    pub error: Option<String>,
}

impl Form {
    /// A new item, in `group` when one was selected.
    pub fn add(group: Option<&str>) -> Form {
        let mut base = Item::new("", SideConfig::directory(""), SideConfig::directory(""));
        base.group = group.map(str::to_string);
        Form::of(Purpose::Add, base)
    }

    pub fn edit(item: &Item) -> Form {
        Form::of(Purpose::Edit(item.name.clone()), item.clone())
    }

    /// A copy of `item` named `new`.
    pub fn copy(item: &Item, new: &str) -> Form {
        let mut base = item.clone();
        base.name = new.to_string();
        Form::of(Purpose::Copy(item.name.clone()), base)
    }

    fn of(purpose: Purpose, base: Item) -> Form {
        let fields = order().into_iter().map(|id| (id, initial(&base, id))).collect();
        Form { purpose, base, fields, focus: 0, error: None }
    }

    pub fn title(&self) -> String {
        match &self.purpose {
            Purpose::Add => "Add item".to_string(),
            Purpose::Edit(name) => format!("Edit item {name}"),
            Purpose::Copy(name) => format!("Copy of item {name}"),
        }
    }

    pub fn value(&self, id: FieldId) -> &Value {
        &self.fields.iter().find(|(f, _)| *f == id).expect("every field is in the form").1
    }

    pub fn focused(&self) -> FieldId {
        self.fields[self.focus].0
    }

    /// Where the cursor stands in the focused field (characters), if it is text.
    pub fn cursor(&self) -> Option<usize> {
        match &self.fields[self.focus].1 {
            Value::Text { cursor, .. } => Some(*cursor),
            _ => None,
        }
    }

    /// Whether a field applies: the FTP fields of a side that is a directory do not.
    pub fn applies(&self, id: FieldId) -> bool {
        match id {
            FieldId::Side(side, field) if field.ftp_only() => self.side_type(side) != "directory",
            _ => true,
        }
    }

    fn side_type(&self, side: Side) -> &'static str {
        match self.value(FieldId::Side(side, SideField::Type)) {
            Value::Choice { options, index } => options[*index],
            _ => unreachable!("a side's type is a choice"),
        }
    }

    fn text(&self, id: FieldId) -> String {
        match self.value(id) {
            Value::Text { text, secret: true, .. } => text.clone(),
            Value::Text { text, .. } => text.trim().to_string(),
            Value::Choice { options, index } => options[*index].to_string(),
            Value::Flag(on) => on.to_string(),
        }
    }

    fn flag(&self, id: FieldId) -> bool {
        matches!(self.value(id), Value::Flag(true))
    }

    /// Moves the focus by `step` over the fields that apply.
    fn step(&mut self, step: isize) {
        let n = self.fields.len() as isize;
        let mut at = self.focus as isize;
        loop {
            at = (at + step).rem_euclid(n);
            if self.applies(self.fields[at as usize].0) {
                break;
            }
        }
        self.focus = at as usize;
    }

    /// What `key` does: moves, edits, or asks to cancel or save.
    pub fn key(&mut self, key: KeyEvent) -> Outcome {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => return Outcome::Cancel,
            KeyCode::Enter => {
                return match self.item() {
                    Ok(item) => Outcome::Save(Box::new(item)),
                    Err(why) => {
                        self.error = Some(why);
                        Outcome::Changed
                    }
                }
            }
            KeyCode::Tab | KeyCode::Down => self.step(1),
            KeyCode::BackTab | KeyCode::Up => self.step(-1),
            _ => {
                self.change(key.code, ctrl);
                self.error = None;
            }
        }
        Outcome::Changed
    }

    /// A key that changes the focused value.
    fn change(&mut self, code: KeyCode, ctrl: bool) {
        let focus = self.focus;
        match &mut self.fields[focus].1 {
            Value::Text { text, cursor, .. } => {
                let at = |text: &str, chars: usize| text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i);
                match code {
                    KeyCode::Char('u') if ctrl => {
                        text.clear();
                        *cursor = 0;
                    }
                    KeyCode::Char(c) if !ctrl => {
                        text.insert(at(text, *cursor), c);
                        *cursor += 1;
                    }
                    KeyCode::Backspace if *cursor > 0 => {
                        *cursor -= 1;
                        text.remove(at(text, *cursor));
                    }
                    KeyCode::Delete if *cursor < text.chars().count() => {
                        text.remove(at(text, *cursor));
                    }
                    KeyCode::Left => *cursor = cursor.saturating_sub(1),
                    KeyCode::Right => *cursor = (*cursor + 1).min(text.chars().count()),
                    KeyCode::Home => *cursor = 0,
                    KeyCode::End => *cursor = text.chars().count(),
                    _ => {}
                }
            }
            Value::Choice { options, index } => match code {
                KeyCode::Right | KeyCode::Char(' ') => *index = (*index + 1) % options.len(),
                KeyCode::Left => *index = (*index + options.len() - 1) % options.len(),
                _ => {}
            },
            Value::Flag(on) => {
                if matches!(code, KeyCode::Char(' ') | KeyCode::Left | KeyCode::Right) {
                    *on = !*on;
                }
            }
        }
    }

    /// Shows why saving failed (the config module's message).
    pub fn refuse(&mut self, why: String) {
        self.error = Some(why);
    }

    /// The item the fields make, checked as `pairsync add` and `edit` check theirs: the item's
    /// fields go through an [`ItemEdit`] and [`apply`], a local folder through [`side_from`].
    /// The checks that need the whole file (a name in use) are made when it is saved.
    pub fn item(&self) -> Result<Item, String> {
        let name = self.text(FieldId::Name);
        let max_delete = self.text(FieldId::MaxDelete);
        let max_delete = max_delete.parse::<MaxDelete>().map_err(|why| format!("max_delete {why}"))?;
        let connections = match self.text(FieldId::Connections) {
            text if text.is_empty() => None,
            text => Some(text.parse::<u16>().map_err(|_| format!("connections {text:?} is not from 1 to 64"))?),
        };
        let log = self.text(FieldId::Log);
        let mut item = Item {
            name: name.clone(),
            source: self.side(Side::Source).map_err(|e| e.chain())?,
            destination: self.side(Side::Destination).map_err(|e| e.chain())?,
            log: None,
            connections: None,
            ..self.base.clone()
        };
        let edit = ItemEdit {
            name,
            mode: Mode::from_name(&self.text(FieldId::Mode)),
            recursive: Some(self.flag(FieldId::Recursive)),
            check_source: Some(self.text(FieldId::Side(Side::Source, SideField::Check))),
            check_destination: Some(self.text(FieldId::Side(Side::Destination, SideField::Check))),
            conflict: ConflictPolicy::from_name(&self.text(FieldId::Conflict)),
            max_delete: Some(max_delete),
            group: Some(self.text(FieldId::Group)),
            schedule: Some(self.text(FieldId::Schedule)),
            description: Some(self.text(FieldId::Description)),
            log: (!log.is_empty()).then(|| PathBuf::from(log)),
            watch: Some(self.flag(FieldId::Watch)),
            connections,
            ..ItemEdit::default()
        };
        apply(&mut item, &edit).map_err(|e| e.chain())?;
        Ok(item)
    }

    /// A side as its fields say; a local folder made absolute as `--source` makes it.
    fn side(&self, side: Side) -> crate::core::error::Result<SideConfig> {
        let field = |f: SideField| self.text(FieldId::Side(side, f));
        let optional = |f: SideField| Some(field(f)).filter(|v| !v.is_empty());
        let ignore = field(SideField::Ignore).split_whitespace().map(str::to_string).collect();
        let base = match side {
            Side::Source => &self.base.source,
            Side::Destination => &self.base.destination,
        };
        let kind = self.side_type(side);
        if kind == "directory" {
            let flag = format!("--{side}");
            return Ok(SideConfig { ignore, ..side_from(&flag, &field(SideField::Directory))? });
        }
        let tls = kind == "ftps";
        let directory = field(SideField::Directory);
        Ok(SideConfig {
            kind: EndpointKind::Ftp,
            server: optional(SideField::Server),
            username: optional(SideField::Username),
            password: optional(SideField::Password),
            password_env: optional(SideField::PasswordEnv),
            tls,
            // An unverified certificate stays so only while the side stays FTPS.
            tls_verify: !tls || base.tls_verify || !base.tls,
            directory: if directory.is_empty() { "/".to_string() } else { directory },
            ignore,
            check: None,
        })
    }
}

/// A field's value for `item`.
fn initial(item: &Item, id: FieldId) -> Value {
    let optional = |value: &Option<String>| Value::text(value.clone().unwrap_or_default());
    match id {
        FieldId::Name => Value::text(&item.name),
        FieldId::Description => optional(&item.description),
        FieldId::Group => optional(&item.group),
        FieldId::Log => Value::text(item.log.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
        FieldId::Mode => Value::choice(Mode::names(), item.mode.name()),
        FieldId::Recursive => Value::Flag(item.recursive),
        FieldId::Schedule => optional(&item.schedule),
        FieldId::Conflict => Value::choice(ConflictPolicy::names(), item.conflict.name()),
        FieldId::MaxDelete => Value::text(item.max_delete.to_string()),
        FieldId::Watch => Value::Flag(item.watch),
        FieldId::Connections => Value::text(item.connections.map(|n| n.to_string()).unwrap_or_default()),
        FieldId::Side(side, field) => {
            let config = match side {
                Side::Source => &item.source,
                Side::Destination => &item.destination,
            };
            match field {
                SideField::Type => {
                    let kind = match (config.kind, config.tls) {
                        (EndpointKind::Directory, _) => "directory",
                        (EndpointKind::Ftp, false) => "ftp",
                        (EndpointKind::Ftp, true) => "ftps",
                    };
                    Value::choice(SIDE_TYPES.to_vec(), kind)
                }
                SideField::Server => optional(&config.server),
                SideField::Username => optional(&config.username),
                SideField::Password => {
                    let text = config.password.clone().unwrap_or_default();
                    Value::Text { cursor: text.chars().count(), text, secret: true }
                }
                SideField::PasswordEnv => optional(&config.password_env),
                SideField::Directory => Value::text(&config.directory),
                SideField::Ignore => Value::text(config.ignore.join(" ")),
                SideField::Check => optional(&config.check),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(form: &mut Form, code: KeyCode) -> Outcome {
        form.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn type_text(form: &mut Form, text: &str) {
        for c in text.chars() {
            press(form, KeyCode::Char(c));
        }
    }

    /// Moves the focus to `id` with Tab.
    fn focus(form: &mut Form, id: FieldId) {
        for _ in 0..64 {
            if form.focused() == id {
                return;
            }
            press(form, KeyCode::Tab);
        }
        panic!("{id:?} is never focused");
    }

    fn filled() -> Form {
        let mut form = Form::add(None);
        type_text(&mut form, "docs");
        focus(&mut form, FieldId::Side(Side::Source, SideField::Directory));
        type_text(&mut form, "/srv/docs");
        focus(&mut form, FieldId::Side(Side::Destination, SideField::Directory));
        type_text(&mut form, "/backup/docs");
        form
    }

    #[test]
    fn a_filled_form_makes_the_item_the_cli_would() {
        let mut form = filled();
        focus(&mut form, FieldId::Schedule);
        type_text(&mut form, "daily at 02:30");
        let Outcome::Save(item) = press(&mut form, KeyCode::Enter) else { panic!("{:?}", form.error) };
        let item = *item;
        let mut expected = Item::new("docs", SideConfig::directory("/srv/docs"), SideConfig::directory("/backup/docs"));
        expected.schedule = Some("daily at 02:30".into());
        assert_eq!(item, expected);
    }

    #[test]
    fn a_bad_schedule_is_refused_with_the_message_of_add() {
        let mut form = filled();
        focus(&mut form, FieldId::Schedule);
        type_text(&mut form, "every 15 parsecs");
        assert_eq!(press(&mut form, KeyCode::Enter), Outcome::Changed);
        let edit = ItemEdit { name: "docs".into(), schedule: Some("every 15 parsecs".into()), ..ItemEdit::default() };
        let mut item = Item::new("docs", SideConfig::directory("/srv/docs"), SideConfig::directory("/backup/docs"));
        let cli = apply(&mut item, &edit).unwrap_err().chain();
        assert_eq!(form.error.as_deref(), Some(cli.as_str()));
        assert!(cli.starts_with("--schedule: "), "{cli}");
        // Any change clears it.
        press(&mut form, KeyCode::Backspace);
        assert_eq!(form.error, None);
    }

    #[test]
    fn the_ftp_fields_apply_only_to_an_ftp_side_and_the_password_is_never_shown() {
        let mut form = Form::add(None);
        let server = FieldId::Side(Side::Destination, SideField::Server);
        assert!(!form.applies(server));
        focus(&mut form, FieldId::Side(Side::Destination, SideField::Type));
        press(&mut form, KeyCode::Right);
        assert_eq!(form.value(FieldId::Side(Side::Destination, SideField::Type)).shown(false), "ftp");
        assert!(form.applies(server));
        let password = FieldId::Side(Side::Destination, SideField::Password);
        focus(&mut form, password);
        type_text(&mut form, "hunter2");
        assert_eq!(form.value(password).shown(true), "\u{2022}".repeat(7));
        assert_eq!(form.value(password).shown(false), "(set)");
        assert!(!format!("{form:?}").contains("hunter2"));
        // Back to a directory: the focus leaves the FTP fields, which are left out of the item.
        focus(&mut form, FieldId::Side(Side::Destination, SideField::Type));
        press(&mut form, KeyCode::Left);
        press(&mut form, KeyCode::Tab);
        assert_eq!(form.focused(), FieldId::Side(Side::Destination, SideField::Directory));
    }

    #[test]
    fn an_ftps_side_keeps_its_password_and_both_password_sources_are_refused_on_save() {
        let mut item = Item::new("site", SideConfig::directory("/srv/www"), SideConfig::directory(""));
        item.destination = SideConfig {
            kind: EndpointKind::Ftp,
            server: Some("ftp.example.com".into()),
            username: Some("deploy".into()),
            password: Some("hunter2".into()),
            tls: true,
            directory: "/htdocs".into(),
            ..SideConfig::directory("")
        };
        let form = Form::edit(&item);
        assert_eq!(form.item().unwrap(), item);
        let mut form = Form::edit(&item);
        focus(&mut form, FieldId::Side(Side::Destination, SideField::PasswordEnv));
        type_text(&mut form, "SITE_PW");
        // Both is a problem of the item as a whole: the config module says so when it is saved.
        assert_eq!(form.item().unwrap().destination.password_env.as_deref(), Some("SITE_PW"));
    }

    #[test]
    fn text_editing_moves_a_cursor_over_characters() {
        let mut form = Form::add(None);
        type_text(&mut form, "dócs");
        press(&mut form, KeyCode::Left);
        press(&mut form, KeyCode::Left);
        press(&mut form, KeyCode::Backspace);
        type_text(&mut form, "o");
        press(&mut form, KeyCode::End);
        type_text(&mut form, "!");
        assert_eq!(form.value(FieldId::Name).shown(true), "docs!");
        assert_eq!(form.cursor(), Some(5));
        assert_eq!(press(&mut form, KeyCode::Esc), Outcome::Cancel);
    }

    #[test]
    fn edit_and_copy_start_from_the_item() {
        let mut item = Item::new("web", SideConfig::directory("/srv/www"), SideConfig::directory("/backup/www"));
        item.exclude = vec!["*.tmp".into()];
        item.source.ignore = vec![r"\.db$".into(), "^cache/".into()];
        let form = Form::copy(&item, "web-copy");
        assert_eq!(form.purpose, Purpose::Copy("web".into()));
        assert_eq!(form.value(FieldId::Side(Side::Source, SideField::Ignore)).shown(false), r"\.db$ ^cache/");
        let copy = form.item().unwrap();
        assert_eq!(copy, Item { name: "web-copy".into(), ..item.clone() });
    }
}
