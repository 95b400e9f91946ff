//! The progress line (issue 13 item 1), checked through a pseudo-terminal: util-linux's
//! `script` runs the real binary on a pty of a given width (`stty cols`), and what the terminal
//! received is read back: every redraw fits the width, the phases are shown, the line is
//! cleared before the summary; no escape at all with `TERM=dumb`, `--no-progress`, or when
//! standard error is not a terminal, unless `--progress` forces it.

use std::path::Path;
use std::process::Command;

struct Tree {
    _tmp: tempfile::TempDir,
    src: String,
    dst: String,
    state: String,
}

/// 300 files of 128 KiB in 10 folders: a copy long enough to be drawn a few times.
fn tree() -> Tree {
    tree_of(30, 128 * 1024)
}

/// `per_folder` files of `size` bytes in each of 10 folders.
fn tree_of(per_folder: usize, size: usize) -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let block: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    for folder in 0..10 {
        let dir = src.join(format!("folder-{folder}"));
        std::fs::create_dir_all(&dir).unwrap();
        for file in 0..per_folder {
            std::fs::write(dir.join(format!("file-{file}.bin")), &block).unwrap();
        }
    }
    let path = |p: &Path| p.to_str().unwrap().to_string();
    Tree { src: path(&src), dst: path(&tmp.path().join("dst")), state: path(&tmp.path().join("state")), _tmp: tmp }
}

fn script_available() -> bool {
    Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// What a terminal of `cols` columns received from `pairsync ARGS` run on it with `TERM=term`.
fn on_a_terminal(cols: u16, term: &str, args: &[&str]) -> String {
    let bin = env!("CARGO_BIN_EXE_pairsync");
    let command = format!("stty cols {cols} rows 24 && exec {bin} {}", args.join(" "));
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("TERM", term)
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{command}: {}\n{text}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    text
}

/// The text without terminal control sequences, cut where the cursor returned or a line ended:
/// every state the line was drawn in.
fn frames(raw: &str) -> Vec<String> {
    let csi = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").unwrap();
    // Trailing blanks are the padding that overwrites a longer earlier state: not shown.
    csi.replace_all(raw, "\r").split(['\r', '\n']).map(|f| f.trim_end().to_string()).filter(|f| !f.is_empty()).collect()
}

#[test]
fn the_line_fits_80_and_50_columns_shows_its_phases_and_is_cleared() {
    if !script_available() {
        eprintln!("skipped: util-linux script(1) not installed");
        return;
    }
    for cols in [80u16, 50] {
        let t = tree();
        let raw = on_a_terminal(cols, "xterm", &["--state-dir", &t.state, "sync", &t.src, &t.dst, "--mode", "clone"]);
        assert!(raw.contains('\x1b'), "{cols} columns: no progress line drawn:\n{raw:?}");
        let drawn = frames(&raw);
        // Every state of the progress line (the summary after it is an ordinary line).
        for frame in drawn.iter().filter(|f| !f.starts_with("pairsync: ")) {
            assert!(frame.chars().count() < usize::from(cols), "{cols} columns: a frame too wide: {frame:?}");
        }
        let summary = drawn.last().unwrap();
        assert!(summary.starts_with("pairsync: ") && summary.contains("copied 300"), "{cols}: last: {summary:?}");
        assert!(
            drawn.iter().any(|f| f.contains("/300 files") || f.starts_with("scanning source: ")),
            "{cols} columns: no phase or count drawn: {drawn:?}"
        );
        // The summary is printed on a cleared line: nothing of the progress line is left before
        // it on its line.
        let before_summary = &raw[..raw.rfind("pairsync: ").unwrap()];
        let tail = before_summary.rsplit('\n').next().unwrap();
        let after_clear = tail.rsplit("\x1b[2K").next().unwrap();
        assert!(tail.contains("\x1b[2K") && frames(after_clear).is_empty(), "{cols}: not cleared: {tail:?}");
    }
}

#[test]
fn no_escapes_for_a_dumb_terminal_or_with_no_progress() {
    if !script_available() {
        eprintln!("skipped: util-linux script(1) not installed");
        return;
    }
    let t = tree();
    let raw = on_a_terminal(80, "dumb", &["--state-dir", &t.state, "sync", &t.src, &t.dst, "--mode", "clone"]);
    assert!(!raw.contains('\x1b'), "TERM=dumb: {raw:?}");
    assert!(raw.contains("copied 300"), "{raw}");
    let t = tree();
    let raw = on_a_terminal(
        80,
        "xterm",
        &["--no-progress", "--state-dir", &t.state, "sync", &t.src, &t.dst, "--mode", "clone"],
    );
    assert!(!raw.contains('\x1b'), "--no-progress: {raw:?}");
}

#[test]
fn progress_forces_the_line_where_standard_error_is_a_file() {
    let t = tree();
    let run = |extra: &[&str]| {
        let mut args = vec!["--state-dir", &t.state];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["sync", &t.src, &t.dst, "--mode", "clone"]);
        Command::new(env!("CARGO_BIN_EXE_pairsync")).args(&args).env("TERM", "xterm").output().unwrap()
    };
    let plain = run(&[]);
    assert!(plain.status.success());
    assert!(!String::from_utf8_lossy(&plain.stderr).contains('\x1b'), "not a terminal: no line");
    std::fs::remove_dir_all(&t.dst).unwrap();
    std::fs::remove_dir_all(&t.state).unwrap();
    let forced = run(&["--progress"]);
    assert!(forced.status.success());
    let err = String::from_utf8_lossy(&forced.stderr);
    assert!(err.contains('\x1b') && (err.contains("scanning") || err.contains("files")), "--progress: {err:?}");
}

#[test]
fn a_signal_leaves_the_terminal_with_the_line_cleared() {
    if !script_available() {
        eprintln!("skipped: util-linux script(1) not installed");
        return;
    }
    // 4,000 files: a copy that is still going when the signals come.
    let t = tree_of(400, 4096);
    let pid_file = Path::new(&t.state).with_extension("pid");
    let bin = env!("CARGO_BIN_EXE_pairsync");
    // The shell in the pty starts pairsync, says its pid, and waits for it; SIGTERM (SIGINT is
    // ignored by a background job of a non-interactive shell) is sent twice, at once.
    let command = format!(
        "stty cols 80 rows 24; {bin} --state-dir {} sync {} {} --mode clone & echo $! > {}; wait $!",
        t.state,
        t.src,
        t.dst,
        pid_file.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("TERM", "xterm")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // What the terminal receives, read as it comes: the signals go once a line was drawn.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let received = received.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                received.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let started = std::time::Instant::now();
    // The first state drawn ("scanning ...") has no escape yet; later ones redraw over it.
    let drawn = || String::from_utf8_lossy(&received.lock().unwrap()).contains("scanning");
    while !(pid_file.exists() && drawn()) && started.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(drawn(), "no progress line was drawn");
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    for _ in 0..2 {
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let raw = String::from_utf8_lossy(&received.lock().unwrap()).into_owned();
    let out_code = status.code();
    assert_eq!(out_code, Some(143), "{raw:?}");
    assert!(raw.contains("\x1b[2K"), "the line was never cleared: {raw:?}");
    let after_clear = raw.rsplit("\x1b[2K").next().unwrap();
    assert!(
        frames(after_clear).iter().all(|f| f.starts_with("pairsync: ")),
        "the progress line was left on the terminal: {raw:?}"
    );
}
