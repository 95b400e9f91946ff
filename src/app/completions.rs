//! Shell completion scripts: clap_complete's static script, and for bash, zsh and fish a thin
//! wrapper around it that completes item and group names from the config file. The wrapper
//! hands the words before the cursor to `pairsync __complete-items` (see [`HELPER`]), which decides
//! here whether the cursor's place takes an item name (`run`, `watch`: every operand; `show`,
//! `edit`, `copy`, `delete`, `logs`: the first) or a group name (`--group`), and prints those
//! of the config the command line names (`-C`) or the default one. Where it prints nothing,
//! the static completion runs as before.
//!
//! Why not clap_complete's dynamic completion (`CompleteEnv`): it is behind the
//! `unstable-dynamic` feature, outside semver, and its candidate callbacks do not see the rest
//! of the command line, so `-C FILE` would have to be parsed here anyway.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::app::args::Args;
use crate::app::out::outln;
use crate::config::{self, Config};

/// The subcommands whose operands are item names, and whether every operand is one (or only
/// the first: `copy NAME NEW`, `edit NAME --flags`).
const ITEM_OPERANDS: &[(&str, bool)] = &[
    ("run", true),
    ("watch", true),
    ("show", false),
    ("edit", false),
    ("copy", false),
    ("delete", false),
    ("logs", false),
];

/// The subcommands whose `--group` takes an existing group's name.
const GROUP_FLAG: &[&str] = &["run", "add", "edit"];

/// What the cursor's place takes.
#[derive(Debug, PartialEq, Eq)]
pub enum Names {
    Items,
    Groups,
}

/// The script `pairsync completions SHELL` prints.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    // Into a buffer first: clap_complete panics when it cannot write.
    clap_complete::generate(shell, &mut Args::command(), "pairsync", &mut script);
    let static_script = String::from_utf8_lossy(&script).into_owned();
    with_names(shell, &static_script).unwrap_or(static_script).into_bytes()
}

/// The static script with the names wrapper, or None where the shell has none or the script
/// does not have the shape the wrapper relies on (then it stays as clap_complete wrote it;
/// `tests/completions.rs` fails on that).
pub fn with_names(shell: Shell, script: &str) -> Option<String> {
    match shell {
        Shell::Bash => Some(format!("{script}{BASH}")),
        Shell::Zsh => {
            // The generated `_pairsync` becomes `_pairsync_static`; the wrapper takes its name,
            // so that both the file's own last lines (autoload from $fpath, or compdef when
            // sourced) and `compdef _pairsync pairsync` reach the wrapper.
            let definition = "\n_pairsync() {\n";
            let last_lines = "\nif [ \"$funcstack[1]\" = \"_pairsync\" ]; then";
            if script.matches(definition).count() != 1 || !script.contains(last_lines) {
                return None;
            }
            let script = script.replacen(definition, "\n_pairsync_static() {\n", 1);
            Some(script.replacen(last_lines, &format!("\n{ZSH}{last_lines}"), 1))
        }
        Shell::Fish => Some(format!("{script}{FISH}")),
        _ => None,
    }
}

const BASH: &str = r#"
# Item and group names from the config file (-C FILE, else the default one) where the command
# line takes one: `pairsync __complete-items WORDS...` prints them; else the completion above.
_pairsync_names() {
    local cur=${COMP_WORDS[COMP_CWORD]} bin=${COMP_WORDS[0]} names
    [[ $bin == "~/"* ]] && bin=$HOME/${bin#"~/"}
    if [[ $cur != -* ]]; then
        names=$("$bin" __complete-items -- "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null)
        if [[ -n $names ]]; then
            COMPREPLY=($(compgen -W "$names" -- "$cur"))
            return 0
        fi
    fi
    _pairsync "$@"
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _pairsync_names -o nosort -o bashdefault -o default pairsync
else
    complete -F _pairsync_names -o bashdefault -o default pairsync
fi
"#;

const ZSH: &str = r#"# Item and group names from the config file (-C FILE, else the default one) where the command
# line takes one: `pairsync __complete-items WORDS...` prints them; else _pairsync_static.
_pairsync() {
    local -a names
    local bin=${words[1]/#\~/$HOME}
    if [[ $PREFIX != -* ]]; then
        names=(${(f)"$("$bin" __complete-items -- "${(@Q)words[2,CURRENT-1]}" 2>/dev/null)"})
    fi
    if (( ${#names} )); then
        compadd -a names
    else
        _pairsync_static "$@"
    fi
}

"#;

const FISH: &str = r#"
# Item and group names from the config file (-C FILE, else the default one) where the command
# line takes one: `pairsync __complete-items WORDS...` prints them (and no file names then).
function __fish_pairsync_item_names
    set -g __fish_pairsync_names
    string match -q -- '-*' (commandline -ct); and return 1
    set -l words (commandline -opc)
    set -l bin (string replace -r '^~/' "$HOME/" -- $words[1])
    command -q $bin; or return 1
    set -e words[1]
    set -g __fish_pairsync_names ($bin __complete-items -- $words 2>/dev/null)
    set -q __fish_pairsync_names[1]
end
complete -c pairsync -f -n __fish_pairsync_item_names -a '$__fish_pairsync_names'
complete -c pairsync -f -n __fish_pairsync_item_names -l group -r -a '$__fish_pairsync_names'
"#;

/// The helper the scripts run, `pairsync __complete-items -- WORDS...`. Not a clap subcommand:
/// clap_complete's scripts would offer it, `hide` or not.
pub const HELPER: &str = "__complete-items";

/// `pairsync __complete-items -- WORDS...`: the names for the place after the words, one a
/// line; nothing at all on any error (no config, a bad one): a completion never prints one.
pub fn print_names(args: impl Iterator<Item = std::ffi::OsString>) {
    let mut words: Vec<String> = args.map(|arg| arg.to_string_lossy().into_owned()).collect();
    if words.first().is_some_and(|word| word == "--") {
        words.remove(0);
    }
    let (Some(names), config) = place(&words) else { return };
    let Some(path) = config.or_else(config::default_path) else { return };
    let Ok(config) = Config::load(&path) else { return };
    let names = match names {
        Names::Items => config.items().map(|items| items.into_iter().map(|item| item.name).collect()),
        Names::Groups => config.groups().map(|groups| groups.into_keys().collect::<Vec<_>>()),
    };
    for name in names.unwrap_or_default() {
        outln!("{name}");
    }
}

/// What the place after `words` (the command line after the program name, up to the cursor)
/// takes, and the config file the words name. Flags are read with clap's own definitions, so
/// that the value of a flag (`--group G`, `logs -n 50`) is never taken for an operand.
pub fn place(words: &[String]) -> (Option<Names>, Option<PathBuf>) {
    let mut root = Args::command();
    root.build();
    let mut command: Option<&clap::Command> = None;
    let mut config = None;
    let mut operands = 0;
    // The id of the flag whose value comes next.
    let mut pending: Option<String> = None;
    let mut raw = false;
    for word in joined(words) {
        let current = command.unwrap_or(&root);
        if let Some(id) = pending.take() {
            if id == "config" {
                config = Some(expand(&word));
            }
            continue;
        }
        let (flag, value) = if raw || word == "-" || !word.starts_with('-') {
            (None, None)
        } else if word == "--" {
            raw = true;
            continue;
        } else if let Some(long) = word.strip_prefix("--") {
            let (name, value) = long.split_once('=').map_or((long, None), |(n, v)| (n, Some(v.to_string())));
            (current.get_arguments().find(|a| a.get_long() == Some(name)), value)
        } else {
            // A cluster of short flags: the first one taking a value takes the rest.
            let mut found = (None, None);
            for (at, c) in word.char_indices().skip(1) {
                let Some(arg) = current.get_arguments().find(|a| a.get_short() == Some(c)) else { break };
                if takes_value(arg) {
                    let rest = &word[at + c.len_utf8()..];
                    found =
                        (Some(arg), Some(rest.strip_prefix('=').unwrap_or(rest).to_string()).filter(|r| !r.is_empty()));
                    break;
                }
            }
            found
        };
        match (flag, value) {
            (Some(arg), Some(value)) if takes_value(arg) => {
                if arg.get_id() == "config" {
                    config = Some(expand(&value));
                }
            }
            (Some(arg), None) if takes_value(arg) => pending = Some(arg.get_id().to_string()),
            (Some(_), _) => {}
            (None, _) if word.starts_with('-') && !raw && word != "-" => {}
            (None, _) => match command {
                None => match root.find_subcommand(&word) {
                    Some(sub) => command = Some(sub),
                    None => return (None, config),
                },
                Some(_) => operands += 1,
            },
        }
    }
    let name = command.map(|c| c.get_name());
    let names = match pending.as_deref() {
        Some("group") if name.is_some_and(|n| GROUP_FLAG.contains(&n)) => Some(Names::Groups),
        Some(_) => None,
        None => ITEM_OPERANDS
            .iter()
            .find(|(n, _)| Some(*n) == name)
            .and_then(|(_, every)| (*every || operands == 0).then_some(Names::Items)),
    };
    (names, config)
}

fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values())
}

/// Bash splits `--config=FILE` into `--config`, `=`, `FILE` (`=` is in COMP_WORDBREAKS): join
/// them back.
fn joined(words: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut glue = false;
    for word in words {
        match out.last_mut() {
            Some(last) if word == "=" && last.starts_with('-') && !last.contains('=') => {
                last.push('=');
                glue = true;
            }
            Some(last) if glue => {
                last.push_str(word);
                glue = false;
            }
            _ => out.push(word.clone()),
        }
    }
    // `--group=` right before the cursor: the flag's value is the word being completed.
    if let Some(last) = out.last_mut() {
        if glue && last.starts_with("--") {
            last.pop();
        }
    }
    out
}

/// `~/x` as the shell would have expanded it, had it been a separate word.
fn expand(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: &str) -> (Option<Names>, Option<PathBuf>) {
        place(&line.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn operands_that_are_item_names() {
        assert_eq!(at("run").0, Some(Names::Items));
        assert_eq!(at("run alpha").0, Some(Names::Items));
        assert_eq!(at("-q run -n alpha").0, Some(Names::Items));
        assert_eq!(at("watch --quiet-ms 500").0, Some(Names::Items));
        assert_eq!(at("show").0, Some(Names::Items));
        assert_eq!(at("show alpha").0, None);
        assert_eq!(at("copy alpha").0, None);
        assert_eq!(at("logs -n").0, None, "the value of -n LINES");
        assert_eq!(at("logs -n 50").0, Some(Names::Items));
        assert_eq!(at("add").0, None);
        assert_eq!(at("").0, None);
        assert_eq!(at("nosuchcommand").0, None);
    }

    #[test]
    fn group_values() {
        assert_eq!(at("run --group").0, Some(Names::Groups));
        assert_eq!(at("edit alpha --group").0, Some(Names::Groups));
        assert_eq!(at("run --group nightly").0, Some(Names::Items));
        // Bash's words for `--group=<TAB>`.
        assert_eq!(at("run --group =").0, Some(Names::Groups));
    }

    #[test]
    fn the_config_named_on_the_line() {
        let config = |line| at(line).1.map(|p| p.display().to_string());
        assert_eq!(config("-C a.toml run").as_deref(), Some("a.toml"));
        assert_eq!(config("run --config b.toml").as_deref(), Some("b.toml"));
        assert_eq!(config("--config = c.toml run").as_deref(), Some("c.toml"));
        assert_eq!(config("-qCd.toml run").as_deref(), Some("d.toml"));
        assert_eq!(config("run").as_deref(), None);
        assert_eq!(at("-C a.toml run").0, Some(Names::Items), "a.toml is -C's value, not the subcommand");
    }
}
