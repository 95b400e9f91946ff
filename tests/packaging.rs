//! What the Debian package ships besides the binary (issue 13 item 3): the example config is
//! one the binary accepts, mail table included; the systemd units' command lines are ones it
//! takes; the units pass `systemd-analyze verify` where it is installed; and every file the
//! package lists exists. `.ci/run` builds, installs and removes the package itself.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use util::TestEnv;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The binary as a unit runs it: `vars` set, no PAIRSYNC_STATE_DIR (TestEnv::run sets it, and
/// removes PAIRSYNC_CONFIG), HOME and XDG folders in the env's.
fn run_as_unit(env: &TestEnv, vars: &[(&str, &Path)], args: &[&str]) -> util::Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pairsync"));
    command
        .args(args)
        .env("HOME", &env.home)
        .env("XDG_CONFIG_HOME", env.home.join("config"))
        .env("XDG_STATE_HOME", env.home.join("state"))
        .env_remove("PAIRSYNC_STATE_DIR")
        .env_remove("PAIRSYNC_CONFIG")
        .envs(vars.iter().copied())
        .current_dir(&env.root);
    let out = command.output().unwrap();
    util::Run {
        command: format!("{vars:?} pairsync {}", args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const UNITS: [&str; 4] = ["pairsync-daemon.service", "pairsync-mail.service", "pairsync@.service", "pairsync@.timer"];

#[test]
fn the_example_config_is_accepted() {
    let env = TestEnv::new();
    let example = repo("contrib/pairsync.toml.example");
    let list = env.run(&["-C", example.to_str().unwrap(), "list"]);
    env.expect(&list, 0);
    for name in ["home ", "www ", "shared "] {
        assert!(list.stdout.lines().any(|l| l.starts_with(name)), "no item {name}in\n{list}");
    }
    let groups = env.run(&["-C", example.to_str().unwrap(), "groups"]);
    env.expect(&groups, 0);
    assert!(groups.stdout.contains("nightly: home, www"), "{groups}");
    // Without --state-dir or PAIRSYNC_STATE_DIR, the state is where the units keep it.
    let list = run_as_unit(&env, &[], &["-C", example.to_str().unwrap(), "list"]);
    env.expect(&list, 0);
    assert!(list.stdout.contains("state: /var/lib/pairsync (from state_dir in"), "{list}");
}

/// The [mail] table, commented out in the example, is valid once uncommented: `mail -A` gets as
/// far as the store (missing here: a safety stop, exit 4), not a config error (exit 2).
#[test]
fn the_example_mail_table_is_valid() {
    let env = TestEnv::new();
    let text = fs::read_to_string(repo("contrib/pairsync.toml.example")).unwrap();
    let (items, mail) = text.split_once("# [mail]").expect("a commented [mail] table");
    let store = env.root.join("no-store");
    let mail = format!("# [mail]{mail}")
        .lines()
        .map(|line| line.strip_prefix("# ").filter(|l| !l.starts_with(' ')).unwrap_or(line))
        .map(|line| line.replace("\"/var/vmail\"", &format!("{store:?}")))
        .map(|line| line.replace("\"/backup/vmail\"", &format!("{:?}", env.dst)))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(mail.contains("\n[[mail.replica]]\nname = \"backup\""), "{mail}");
    let config = env.root.join("pairsync.toml");
    fs::write(&config, format!("{items}{mail}\n")).unwrap();
    let run = env.run(&["-C", config.to_str().unwrap(), "mail", "-A"]);
    env.expect(&run, 4);
    assert!(run.stderr.contains("the mail store") && run.stderr.contains("no-store"), "{run}");
}

fn unit(name: &str) -> String {
    fs::read_to_string(repo("contrib/systemd").join(name)).unwrap()
}

/// Each Exec line of the units, as the binary's arguments (after /usr/bin/pairsync).
fn exec_lines() -> Vec<(String, Vec<String>)> {
    let mut lines = Vec::new();
    for name in UNITS {
        for line in unit(name).lines() {
            let Some((key, command)) = line.split_once('=') else { continue };
            if !key.starts_with("ExecStart") || command.is_empty() {
                continue;
            }
            let command = command.trim_start_matches('-');
            let args = command.strip_prefix("/usr/bin/pairsync ").unwrap_or_else(|| panic!("{name}: {line}"));
            let args = args.split_whitespace().map(|a| a.replace("%i", "backup")).collect();
            lines.push((name.to_string(), args));
        }
    }
    lines
}

/// The units' commands are ones this binary takes: run with a config file that does not
/// exist (PAIRSYNC_CONFIG, as the units set it), each stops at once with exit 2 and the
/// message for that, never clap's usage error.
#[test]
fn the_units_run_commands_the_binary_takes() {
    let env = TestEnv::new();
    let lines = exec_lines();
    assert!(lines.len() >= 4, "{lines:?}");
    let missing = env.root.join("missing.toml");
    for (name, args) in lines {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = run_as_unit(&env, &[("PAIRSYNC_CONFIG", &missing)], &args);
        env.expect(&run, 2);
        assert!(run.stderr.contains("missing.toml: no such config file"), "{name}:\n{run}");
    }
    for name in UNITS.iter().filter(|n| n.ends_with(".service")) {
        let text = unit(name);
        for line in ["Environment=PAIRSYNC_CONFIG=/etc/pairsync/pairsync.toml", "StateDirectory=pairsync"] {
            assert!(text.lines().any(|l| l == line), "{name} lacks {line}");
        }
        assert!(!text.contains("PAIRSYNC_STATE_DIR="), "{name}: it would win over the file's state_dir");
    }
}

#[test]
fn systemd_analyze_verify_finds_nothing() {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("note: systemd-analyze is not installed; the units are not verified");
        return;
    }
    let env = TestEnv::new();
    let dir = env.root.join("units");
    fs::create_dir_all(&dir).unwrap();
    let bin = env!("CARGO_BIN_EXE_pairsync");
    for name in UNITS {
        let text = unit(name).replace("/usr/bin/pairsync", bin);
        // A template is verified through an instance of it.
        fs::write(dir.join(name.replace('@', "@backup")), text).unwrap();
    }
    let paths: Vec<String> =
        UNITS.iter().map(|n| dir.join(n.replace('@', "@backup")).to_str().unwrap().to_string()).collect();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).args(&paths).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // Only what it says about these files counts: a container may lack what a manager needs.
    let about: Vec<&str> = said.lines().filter(|l| l.contains("pairsync")).collect();
    assert!(about.is_empty(), "systemd-analyze verify:\n{said}");
}

/// Every file [package.metadata.deb] ships exists, but for the completions contrib/build-deb.sh
/// generates; and every file of contrib/systemd is shipped.
#[test]
fn the_package_assets_exist() {
    let manifest = fs::read_to_string(repo("Cargo.toml")).unwrap();
    let assets = manifest.split_once("assets = [").expect("[package.metadata.deb] assets").1;
    let assets = assets.split_once("\n]").unwrap().0;
    let sources: Vec<&str> = assets.lines().filter_map(|l| l.trim().strip_prefix("[\"")?.split('"').next()).collect();
    assert!(sources.len() >= 10, "{sources:?}");
    for source in &sources {
        if !source.starts_with("target/") {
            assert!(repo(source).is_file(), "{source} is listed but missing");
        }
    }
    for unit in UNITS {
        assert!(sources.contains(&format!("contrib/systemd/{unit}").as_str()), "{unit} is not shipped");
    }
    for script in ["postinst", "prerm", "postrm"] {
        let text = fs::read_to_string(repo("contrib/debian").join(script)).unwrap();
        assert!(text.starts_with("#!/bin/sh\n") && text.contains("set -e"), "{script}");
        let sh = Command::new("sh").arg("-n").arg(repo("contrib/debian").join(script)).status().unwrap();
        assert!(sh.success(), "{script}: sh -n");
    }
}
