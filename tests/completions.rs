//! Shell completions that know the items (issue 13 item 4): `pairsync completions SHELL` is
//! clap_complete's script plus a wrapper that asks `pairsync __complete-items` for the item or
//! group names the cursor's place takes, from the config the line names (`-C`) or the default.
//! Bash is driven as bash-completion drives it (COMP_WORDS, COMP_CWORD, the function `complete
//! -p` names); fish through `complete -C`; zsh's wrapper with a stand-in `compadd`.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use util::TestEnv;

fn item(name: &str, group: Option<&str>) -> String {
    let group = group.map(|g| format!("group = \"{g}\"\n")).unwrap_or_default();
    format!(
        "[[item]]\nname = \"{name}\"\n{group}\n[item.source]\ntype = \"directory\"\ndirectory = \"/srv/{name}\"\n\n\
         [item.destination]\ntype = \"directory\"\ndirectory = \"/backup/{name}\"\n\n"
    )
}

/// A TestEnv whose default config (XDG_CONFIG_HOME) holds alpha (group nightly) and beta, and
/// whose `other.toml` holds gamma; and the script for `shell`.
struct Setup {
    env: TestEnv,
    script: PathBuf,
}

impl Setup {
    fn new(shell: &str) -> Setup {
        let env = TestEnv::new();
        let config = env.home.join("config/pairsync/pairsync.toml");
        fs::create_dir_all(config.parent().unwrap()).unwrap();
        fs::write(&config, item("alpha", Some("nightly")) + &item("beta", None)).unwrap();
        fs::write(env.root.join("other.toml"), item("gamma", Some("weekly"))).unwrap();
        let run = env.run(&["completions", shell]);
        env.expect(&run, 0);
        let script = env.root.join(format!("pairsync.{shell}"));
        fs::write(&script, &run.stdout).unwrap();
        Setup { env, script }
    }

    /// `shell` running `body` with the binary first on PATH, in the env's folder and HOME.
    fn shell(&self, shell: &str, args: &[&str]) -> util::Run {
        let bin = Path::new(env!("CARGO_BIN_EXE_pairsync")).parent().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new(shell);
        command.env("PATH", path);
        self.env.run_with(command, args)
    }
}

fn have(shell: &str) -> bool {
    let found = Command::new(shell).arg("-c").arg("exit 0").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("note: {shell} is not installed; its completion test is skipped");
    }
    found
}

/// COMPREPLY after bash completes the last of `words` (the word being completed), calling the
/// function `complete -p pairsync` names as bash would: (command, current word, previous word).
fn bash_complete(setup: &Setup, words: &[&str]) -> Vec<String> {
    let body = r#"source "$0" || exit 9
        COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
        function=$(complete -p pairsync | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
        "$function" pairsync "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}""#;
    let mut args = vec!["--norc", "--noprofile", "-c", body, setup.script.to_str().unwrap()];
    args.extend_from_slice(words);
    let run = setup.shell("bash", &args);
    setup.env.expect(&run, 0);
    assert_eq!(run.stderr, "", "completion printed on stderr:\n{run}");
    run.stdout.lines().map(String::from).collect()
}

#[test]
fn bash_completes_item_and_group_names() {
    if !have("bash") {
        return;
    }
    let setup = Setup::new("bash");
    let at = |words: &[&str]| bash_complete(&setup, words);
    assert_eq!(at(&["pairsync", "run", ""]), ["alpha", "beta"]);
    assert_eq!(at(&["pairsync", "run", "al"]), ["alpha"]);
    assert_eq!(at(&["pairsync", "run", "alpha", ""]), ["alpha", "beta"], "run takes several");
    assert_eq!(at(&["pairsync", "-q", "run", "-n", "b"]), ["beta"]);
    assert_eq!(at(&["pairsync", "show", ""]), ["alpha", "beta"]);
    assert_eq!(at(&["pairsync", "logs", "-n", "50", "be"]), ["beta"], "50 is -n's value");
    assert_eq!(at(&["pairsync", "watch", ""]), ["alpha", "beta"]);
    assert_eq!(at(&["pairsync", "run", "--group", ""]), ["nightly"]);
    // Bash's words for `--group=<TAB>` (`=` is in COMP_WORDBREAKS).
    assert_eq!(at(&["pairsync", "run", "--group", "=", ""]), ["nightly"]);
}

#[test]
fn bash_reads_the_config_the_line_names() {
    if !have("bash") {
        return;
    }
    let setup = Setup::new("bash");
    let at = |words: &[&str]| bash_complete(&setup, words);
    assert_eq!(at(&["pairsync", "-C", "other.toml", "run", ""]), ["gamma"]);
    assert_eq!(at(&["pairsync", "run", "--config", "other.toml", ""]), ["gamma"]);
    assert_eq!(at(&["pairsync", "--config", "=", "other.toml", "run", "--group", ""]), ["weekly"]);
    // No such file, or a broken one: the static completion (the flags), no message, no names.
    fs::write(setup.env.root.join("broken.toml"), "[[item]\n").unwrap();
    for config in ["missing.toml", "broken.toml"] {
        let reply = at(&["pairsync", "-C", config, "show", ""]);
        assert!(reply.contains(&"--help".to_string()), "{config}: {reply:?}");
        assert!(!reply.iter().any(|w| w == "alpha"), "{config}: {reply:?}");
    }
}

#[test]
fn bash_keeps_the_static_completion_elsewhere() {
    if !have("bash") {
        return;
    }
    let setup = Setup::new("bash");
    let at = |words: &[&str]| bash_complete(&setup, words);
    let commands = at(&["pairsync", ""]);
    assert!(commands.contains(&"run".to_string()) && commands.contains(&"completions".to_string()), "{commands:?}");
    assert!(!commands.iter().any(|w| w.starts_with("__")), "the helper is not offered: {commands:?}");
    assert_eq!(at(&["pairsync", "run", "--gr"]), ["--group"]);
    let after_name = at(&["pairsync", "show", "alpha", ""]);
    assert!(!after_name.iter().any(|w| w == "alpha" || w == "beta"), "show takes one name: {after_name:?}");
    assert!(at(&["pairsync", "copy", "alpha", ""]).iter().all(|w| w.starts_with('-')), "copy's NEW is a new name");
    assert!(at(&["pairsync", "add", ""]).iter().all(|w| w.starts_with('-')), "add's NAME is a new name");
}

#[test]
fn the_helper_prints_nothing_on_errors() {
    let setup = Setup::new("bash");
    let env = &setup.env;
    let run = env.run(&["__complete-items", "--", "run"]);
    env.expect(&run, 0);
    assert_eq!(run.stdout, "alpha\nbeta\n");
    fs::write(env.root.join("broken.toml"), "name = \n").unwrap();
    for args in [
        &["__complete-items", "--", "-C", "missing.toml", "run"][..],
        &["__complete-items", "--", "-C", "broken.toml", "run"],
        &["__complete-items", "--", "nosuchcommand"],
        &["__complete-items"],
    ] {
        let run = env.run(args);
        env.expect(&run, 0);
        assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""), "{run}");
    }
    let help = env.run(&["--help"]);
    assert!(!help.stdout.contains("__complete"), "{help}");
}

#[test]
fn fish_completes_item_and_group_names() {
    if !have("fish") {
        return;
    }
    let setup = Setup::new("fish");
    let at = |line: &str| {
        let body = "source $argv[1]; or exit 9; complete -C $argv[2]";
        let run = setup.shell("fish", &["--no-config", "-c", body, setup.script.to_str().unwrap(), line]);
        setup.env.expect(&run, 0);
        assert_eq!(run.stderr, "", "{run}");
        run.stdout.lines().map(|l| l.split('\t').next().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(at("pairsync run "), ["alpha", "beta"]);
    assert_eq!(at("pairsync run al"), ["alpha"]);
    assert_eq!(at("pairsync -C other.toml show "), ["gamma"]);
    assert_eq!(at("pairsync run --group "), ["nightly"]);
    assert!(!at("pairsync show alpha ").iter().any(|w| w == "beta"));
}

/// zsh completion needs a terminal; this drives the wrapper alone (the generated `_pairsync`
/// renamed `_pairsync_static`, the wrapper under its name) with `compadd` and `compdef` stood in.
#[test]
fn zsh_wrapper_completes_item_names() {
    let setup = Setup::new("zsh");
    let script = fs::read_to_string(&setup.script).unwrap();
    assert!(script.contains("\n_pairsync_static() {\n") && script.contains("__complete-items"), "zsh wrapper missing");
    if !have("zsh") {
        return;
    }
    let at = |words: &[&str]| {
        let body = r#"compdef() { :; }; compadd() { [[ $1 == -a ]] && print -l -- "${(@P)2}"; }
            source $1 || exit 9; shift
            _pairsync_static() { print static; }
            words=("$@"); CURRENT=$#; PREFIX=${words[CURRENT]}
            _pairsync"#;
        let mut args = vec!["-f", "-c", body, "zsh", setup.script.to_str().unwrap()];
        args.extend_from_slice(words);
        let run = setup.shell("zsh", &args);
        setup.env.expect(&run, 0);
        run.stdout.lines().map(String::from).collect::<Vec<_>>()
    };
    // compadd gets every name: zsh filters them by the prefix.
    assert_eq!(at(&["pairsync", "run", ""]), ["alpha", "beta"]);
    assert_eq!(at(&["pairsync", "-C", "'other.toml'", "run", ""]), ["gamma"], "quotes as typed");
    assert_eq!(at(&["pairsync", "run", "--group", ""]), ["nightly"]);
    assert_eq!(at(&["pairsync", "list", ""]), ["static"]);
}
