//! `pairsync console` end to end (issue 14): the real binary on a pseudo-terminal of 80x24
//! (util-linux `script`, as tests/progress.rs), driven by keys written to it, its screen read
//! back through a terminal emulator (vt100). An item is added with the dialog, saved, run with
//! Sync Now until its gauge says it succeeded, and the console is left with q: the config file
//! holds the item, the destination the files, and the terminal is given back (the alternate
//! screen left last, cooked mode again).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any one screen may take to appear (a loaded 2-core CI machine included).
const PATIENCE: Duration = Duration::from_secs(60);

fn script_available() -> bool {
    Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The console on a pseudo-terminal: what it printed so far, and its keyboard.
struct Terminal {
    child: Child,
    keys: ChildStdin,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Runs `command` (a shell line) under `script` on an 80x24 terminal.
    fn start(command: &str, home: &Path) -> Terminal {
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c", command, "/dev/null"])
            .env("TERM", "xterm")
            .env("HOME", home)
            .env_remove("NO_COLOR")
            .env_remove("PAIRSYNC_CONFIG")
            .env_remove("PAIRSYNC_STATE_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let keys = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Terminal { child, keys, output }
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// The screen as a terminal shows it now.
    fn screen(&self) -> String {
        let mut parser = vt100::Parser::new(24, 80, 0);
        parser.process(&self.output.lock().unwrap());
        parser.screen().contents()
    }

    /// Waits until the screen shows what `wanted` looks for; fails with the screen.
    fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if wanted(&screen) {
                return;
            }
            assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for_text(&self, text: &str) {
        self.wait_for(text, |screen| screen.contains(text));
    }

    fn type_keys(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// Waits for the shell line to end; its exit status.
    fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // What the reader thread still has to collect.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.raw());
            }
            assert!(Instant::now() < deadline, "the console never ended:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// A failed wait must not leave the console running on its terminal.
impl Drop for Terminal {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn an_item_added_in_the_console_is_synced_by_sync_now() {
    if !script_available() {
        eprintln!("skipped: util-linux script(1) not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (src, dst, state, home) = (root.join("src"), root.join("dst"), root.join("state"), root.join("home"));
    let config = root.join("pairsync.toml");
    std::fs::create_dir_all(src.join("notes")).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(src.join("a.txt"), "alpha").unwrap();
    std::fs::write(src.join("notes/b.txt"), "beta").unwrap();
    let bin = env!("CARGO_BIN_EXE_pairsync");
    // After the console: its exit status, then whether the terminal is in cooked mode again.
    let command = format!(
        "stty cols 80 rows 24; {bin} -C {} --state-dir {} console; code=$?; echo; echo console-exit=$code; stty -a",
        config.display(),
        state.display()
    );
    let mut term = Terminal::start(&command, &home);
    term.wait_for_text("No items yet");

    // Add: the dialog opens on Name; Tab goes Mode, Group, Recursive, Description, Log file,
    // the source's type and (a directory has no FTP fields) its directory; then its ignore
    // list, file check, the destination's type and directory.
    term.type_keys("a");
    term.wait_for_text("Add item");
    term.type_keys("docs");
    term.type_keys(&"\t".repeat(7));
    term.type_keys(src.to_str().unwrap());
    term.type_keys(&"\t".repeat(4));
    term.type_keys(dst.to_str().unwrap());
    term.wait_for_text(dst.to_str().unwrap());
    term.type_keys("\r");
    term.wait_for_text("added docs in");

    // Sync Now: its log opens, following, under a gauge that ends saying how it went.
    term.type_keys("s");
    term.wait_for_text("Log of docs");
    term.wait_for_text("done: ok");
    term.wait_for_text("(exit 0)");

    // Back to the list, which shows the last run.
    term.type_keys("\x1b");
    term.wait_for("the item's last run in the list", |screen| {
        screen
            .lines()
            .any(|line| line.starts_with("docs ") && line.contains(" ok ") && line.trim_end().ends_with("idle"))
    });
    term.type_keys("q");
    let (status, raw) = term.wait();
    assert!(status.success(), "{status}: {raw:?}");

    let (console, after) = raw.split_once("console-exit=").expect("the console ended");
    assert!(after.starts_with('0'), "exit status: {after:?}");
    assert!(
        console.trim_end().ends_with("\x1b[?1049l"),
        "the alternate screen is not the last thing left: {:?}",
        &console[console.len().saturating_sub(200)..]
    );
    let cooked = regex::Regex::new(r"(^|[\s;])icanon([\s;]|$)").unwrap();
    assert!(cooked.is_match(after) && !after.contains("-icanon"), "raw mode was left on: {after}");

    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains("name = \"docs\""), "{saved}");
    assert!(saved.contains(&format!("directory = \"{}\"", dst.display())), "{saved}");
    assert_eq!(std::fs::read_to_string(dst.join("a.txt")).unwrap(), "alpha");
    assert_eq!(std::fs::read_to_string(dst.join("notes/b.txt")).unwrap(), "beta");
}

#[test]
fn a_signal_gives_the_terminal_back() {
    if !script_available() {
        eprintln!("skipped: util-linux script(1) not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let pid_file = root.join("pid");
    let bin = env!("CARGO_BIN_EXE_pairsync");
    // The inner shell says its pid and becomes the console, which stays on the terminal.
    let command = format!(
        "stty cols 80 rows 24; sh -c 'echo $$ > {}; exec {bin} -C {} --state-dir {} console'; \
         code=$?; echo; echo console-exit=$code; stty -a",
        pid_file.display(),
        root.join("pairsync.toml").display(),
        root.join("state").display()
    );
    let mut term = Terminal::start(&command, &root);
    term.wait_for_text("No items yet");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(Command::new("kill").args(["-TERM", pid.trim()]).status().unwrap().success());
    let (status, raw) = term.wait();
    assert!(status.success(), "{status}: {raw:?}");
    let (console, after) = raw.split_once("console-exit=").expect("the console ended");
    assert!(after.starts_with("143"), "exit status: {after:?}");
    assert!(console.trim_end().ends_with("\x1b[?1049l"), "{:?}", &console[console.len().saturating_sub(200)..]);
    assert!(!after.contains("-icanon"), "raw mode was left on: {after}");
}
