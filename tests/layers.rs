//! The arrows between layers point down only: app -> config -> mail -> engine -> {endpoint,
//! state} -> core. This reads every source file under src/ and fails on an import that points
//! up or sideways (the core using clap or the file system, the engine using the config, anything
//! using the app), so the shape in ARCHITECTURE stays the shape of the code.

use std::path::{Path, PathBuf};

/// Each layer and the layers it may use (itself included).
const LAYERS: &[(&str, &[&str])] = &[
    ("core", &["core"]),
    ("endpoint", &["core", "endpoint"]),
    ("state", &["core", "state"]),
    ("engine", &["core", "endpoint", "state", "engine"]),
    ("mail", &["core", "endpoint", "state", "engine", "mail"]),
    ("config", &["core", "endpoint", "state", "engine", "mail", "config"]),
    ("app", &["core", "endpoint", "state", "engine", "mail", "config", "app"]),
];

/// What a layer must not touch outside the crate: the pure core has no I/O, clock, command
/// line, database or JSON; nothing below the app knows clap, the terminal or the TOML file.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "clap",
            "sled",
            "serde_json",
            "toml_edit",
            "indicatif",
            "notify",
            "suppaftp",
            "rustix",
            "libc",
            "std::fs",
            "std::net",
            "process::exit",
            "process::Command",
            "std::env",
            "std::thread",
            "Instant::now",
            "SystemTime::now",
            "Local::now",
            "Utc::now",
            "File::",
        ],
    ),
    ("endpoint", &["clap", "sled", "toml_edit", "indicatif", "serde_json"]),
    ("state", &["clap", "toml_edit", "indicatif", "suppaftp", "notify"]),
    ("engine", &["clap", "toml_edit", "indicatif", "notify"]),
    ("mail", &["clap", "toml_edit", "indicatif"]),
    ("config", &["clap", "indicatif", "notify"]),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its unit tests (by convention the last item, `#[cfg(test)]`)
/// and without comments.
fn code(text: &str) -> String {
    let text = text.split("\n#[cfg(test)]").next().unwrap_or_default();
    text.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The other modules of the crate that `text` names (`crate::X`), at the top level.
fn crate_modules(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        // `$crate::` in a macro is the crate too.
        let name: String = text[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() && !found.contains(&name) {
            found.push(name);
        }
    }
    // `use crate::{a, b}`
    for (at, _) in text.match_indices("crate::{") {
        let list = &text[at + 8..at + 8 + text[at + 8..].find('}').unwrap_or(0)];
        for name in list.split(',').map(|n| n.trim().split("::").next().unwrap_or_default().to_string()) {
            if !name.is_empty() && !found.contains(&name) {
                found.push(name);
            }
        }
    }
    found
}

/// Whether `text` names `what`: a crate at the start of a path, or a path anywhere.
fn mentions(text: &str, what: &str) -> bool {
    text.match_indices(what).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + what.len()..].chars().next();
        // A crate name must start a path (`clap::`, not `foo::clap`); a path (`Instant::now`)
        // may stand anywhere in one.
        let starts = what.contains("::") || before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        let ends = what.ends_with("::") || after.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        starts && ends
    })
}

/// Everything wrong with a file of `layer` whose code is `text`.
fn violations(layer: &str, text: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    let allowed = LAYERS.iter().find(|(name, _)| *name == layer).map(|(_, a)| *a).unwrap_or(&[]);
    for module in crate_modules(text) {
        if LAYERS.iter().any(|(name, _)| *name == module) && !allowed.contains(&module.as_str()) {
            wrong.push(format!("uses crate::{module}, a layer above or beside it"));
        }
    }
    let forbidden = FORBIDDEN.iter().find(|(name, _)| *name == layer).map(|(_, f)| *f).unwrap_or(&[]);
    for what in forbidden {
        if mentions(text, what) {
            wrong.push(format!("uses {what}"));
        }
    }
    wrong
}

#[test]
fn imports_point_down_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut seen_layers = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let Some(layer) = rel.components().next().and_then(|c| c.as_os_str().to_str()) else { continue };
        if !LAYERS.iter().any(|(name, _)| *name == layer) {
            continue; // lib.rs, main.rs
        }
        seen_layers.push(layer.to_string());
        let text = code(&std::fs::read_to_string(file).unwrap());
        for problem in violations(layer, &text) {
            wrong.push(format!("src/{}: {problem}", rel.display()));
        }
    }
    for layer in ["core", "endpoint", "state", "engine", "config", "app"] {
        assert!(seen_layers.iter().any(|l| l == layer), "no file found for the layer {layer}");
    }
    assert!(wrong.is_empty(), "imports pointing up:\n{}", wrong.join("\n"));
}

/// `pairsync console` reads and writes the config only through the config module and runs
/// items only through the engine (by way of the app's item runs): it never opens an endpoint or
/// a state database itself.
#[test]
fn the_console_reaches_sides_and_state_only_through_the_engine() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/app/console");
    let mut files = Vec::new();
    sources(&dir, &mut files);
    assert!(!files.is_empty(), "no console sources in {}", dir.display());
    let mut wrong = Vec::new();
    for file in &files {
        let text = code(&std::fs::read_to_string(file).unwrap());
        for module in crate_modules(&text).iter().filter(|m| ["endpoint", "state"].contains(&m.as_str())) {
            wrong.push(format!("{}: uses crate::{module}", file.display()));
        }
        for what in ["sled", "toml_edit", "suppaftp"] {
            if mentions(&text, what) {
                wrong.push(format!("{}: uses {what}", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "the console goes around the config module or the engine:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_catches_what_it_is_for() {
    // Guards the test above against passing by matching nothing.
    for (layer, text, want) in [
        ("core", "use crate::endpoint::Endpoint;", "uses crate::endpoint, a layer above or beside it"),
        ("core", "use clap::Parser;", "uses clap"),
        ("core", "let t = std::time::Instant::now();", "uses Instant::now"),
        ("core", "let f = std::fs::read(p);", "uses std::fs"),
        ("engine", "use crate::config::Item;", "uses crate::config, a layer above or beside it"),
        ("endpoint", "use crate::{core, state};", "uses crate::state, a layer above or beside it"),
        ("config", "use crate::app::cli;", "uses crate::app, a layer above or beside it"),
        ("state", "let id = crate::engine::job::pair_of(&s);", "uses crate::engine, a layer above or beside it"),
    ] {
        assert!(violations(layer, text).contains(&want.to_string()), "{layer}: {text}: {:?}", violations(layer, text));
    }
    for (layer, text) in [
        ("core", "use crate::core::model::Entry;"),
        ("core", "// uses clap in a comment only"),
        ("engine", "use crate::endpoint::spec::EndpointSpec; use crate::state::StateDb;"),
        ("app", "use crate::config::Config; use clap::Parser;"),
        ("core", "fn f() {}\n#[cfg(test)]\nmod tests { use std::fs; }"),
    ] {
        assert!(violations(layer, &code(text)).is_empty(), "{layer}: {text}: {:?}", violations(layer, &code(text)));
    }
}
