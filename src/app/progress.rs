//! The progress line on a terminal: what phase a run is in ("scanning source: 41,203 entries"),
//! then files and bytes done of the total, the rate, and a remaining time once it means
//! something; always one line that fits the terminal, redrawn a few times a second, cleared at
//! the end (and at a second Ctrl-C, which ends the process at once).
//!
//! [`line`] is pure: what the line says for a state, a width and the time gone, table-tested.
//! [`Progress`] draws it through indicatif, on standard error when it is a terminal (not
//! `TERM=dumb`), or wherever `--progress` forces it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

/// When the line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// On a terminal that can redraw a line (not `TERM=dumb`).
    Auto,
    /// `--progress`: even on a file or pipe.
    Always,
    /// `--no-progress`.
    Never,
}

/// The setting of this process (`--progress`, `--no-progress`), given once by the command line.
static WHEN: Mutex<When> = Mutex::new(When::Auto);

pub fn set_when(when: When) {
    *WHEN.lock().unwrap_or_else(|p| p.into_inner()) = when;
}

pub fn when() -> When {
    *WHEN.lock().unwrap_or_else(|p| p.into_inner())
}

impl When {
    pub fn from_flags(progress: bool, no_progress: bool) -> When {
        match (progress, no_progress) {
            (true, _) => When::Always,
            (_, true) => When::Never,
            _ => When::Auto,
        }
    }

    /// Whether a run with this setting draws the line now.
    pub fn draws(self) -> bool {
        match self {
            When::Always => true,
            When::Never => false,
            When::Auto => std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb"),
        }
    }
}

/// What the line shows.
#[derive(Debug, Default)]
pub struct View {
    /// The sides being scanned, by name, with the live count of entries each has listed.
    pub scanning: Vec<(&'static str, Option<Arc<AtomicUsize>>)>,
    pub planning: bool,
    /// The copies planned (0: nothing to copy, the line shows the other actions done).
    pub files_total: u64,
    pub bytes_total: u64,
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    /// When the copying began.
    pub copying_since: Option<Instant>,
}

/// Thousands separated by commas: 41203 -> "41,203".
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short duration: "45s", "3m 05s", "2h 01m".
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s / 60 % 60),
    }
}

/// No remaining time before this much copying, nor before this share of the bytes: early
/// rates are noise (no "eta 39m" for a 2-second job).
const ETA_AFTER: Duration = Duration::from_secs(3);
const ETA_SHARE: f64 = 0.02;

/// The line for `view`, at most `width` columns: the most telling parts first, the rest
/// (the bar, the rate, the remaining time) only where they fit. `stopping`: a signal came.
pub fn line(view: &View, width: usize, now: Instant, stopping: bool) -> String {
    let width = width.max(10);
    let mut parts: Vec<String> = Vec::new();
    if stopping {
        parts.push("stopping after the current file (again to quit at once)".into());
    } else if let Some(since) = view.copying_since {
        let (files, bytes) = (view.files_done.load(Ordering::Relaxed), view.bytes_done.load(Ordering::Relaxed));
        parts.push(format!("{}/{} files", count(files), count(view.files_total)));
        parts.push(format!("{}/{}", HumanBytes(bytes), HumanBytes(view.bytes_total)));
        let elapsed = now.saturating_duration_since(since);
        let rate = if elapsed.as_secs_f64() > 0.2 { bytes as f64 / elapsed.as_secs_f64() } else { 0.0 };
        if rate > 0.0 {
            parts.push(format!("{}/s", HumanBytes(rate as u64)));
        }
        let share = if view.bytes_total > 0 { bytes as f64 / view.bytes_total as f64 } else { 0.0 };
        if elapsed >= ETA_AFTER && share >= ETA_SHARE && rate > 0.0 && bytes < view.bytes_total {
            let left = Duration::from_secs_f64((view.bytes_total - bytes) as f64 / rate);
            parts.push(format!("eta {}", short(left)));
        }
    } else if view.planning {
        parts.push("planning".into());
    } else if !view.scanning.is_empty() {
        let sides: Vec<String> = view
            .scanning
            .iter()
            .map(|(side, n)| match n {
                Some(n) => format!("{side}: {} entries", count(n.load(Ordering::Relaxed) as u64)),
                None => format!("{side}: listing"),
            })
            .collect();
        parts.push(format!("scanning {}", sides.join(", ")));
    }
    // The parts that fit, in order; a bar in front when there is room for a useful one.
    let mut text = String::new();
    for part in parts {
        let sep = if text.is_empty() { 0 } else { 2 };
        if text.chars().count() + sep + part.chars().count() > width {
            if text.is_empty() {
                text = part.chars().take(width).collect();
            }
            break;
        }
        if sep > 0 {
            text.push_str("  ");
        }
        text.push_str(&part);
    }
    if let (Some(_), false) = (view.copying_since, stopping) {
        let room = width.saturating_sub(text.chars().count() + 1);
        if room >= 12 && view.bytes_total > 0 {
            let inner = room.min(40) - 2;
            let done = view.bytes_done.load(Ordering::Relaxed).min(view.bytes_total);
            let filled = (inner as f64 * done as f64 / view.bytes_total as f64) as usize;
            let mut bar = String::with_capacity(room);
            bar.push('[');
            bar.push_str(&"#".repeat(filled));
            bar.push_str(&"-".repeat(inner - filled));
            bar.push(']');
            text = format!("{bar} {text}");
        }
    }
    text
}

/// The bar of the one run drawing now, so that a second Ctrl-C can clear it before the process
/// ends.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Clears the line being drawn, if any (a second signal is about to end the process).
pub fn clear_active() {
    if let Some(bar) = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        bar.finish_and_clear();
    }
}

/// The width of standard error's terminal; `COLUMNS` or 80 where it is not one.
fn terminal_width() -> usize {
    if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stderr()) {
        if size.ws_col > 0 {
            return usize::from(size.ws_col);
        }
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&c| c > 0).unwrap_or(80)
}

/// Standard error as a terminal for indicatif when it is not one (`--progress` on a file).
#[derive(Debug)]
struct ForcedStderr;

impl TermLike for ForcedStderr {
    fn width(&self) -> u16 {
        u16::try_from(terminal_width()).unwrap_or(u16::MAX)
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            write!(std::io::stderr(), "\x1b[{n}A")?;
        }
        Ok(())
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            write!(std::io::stderr(), "\x1b[{n}B")?;
        }
        Ok(())
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            write!(std::io::stderr(), "\x1b[{n}C")?;
        }
        Ok(())
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            write!(std::io::stderr(), "\x1b[{n}D")?;
        }
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        writeln!(std::io::stderr(), "{s}")
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        write!(std::io::stderr(), "{s}")
    }
    fn clear_line(&self) -> std::io::Result<()> {
        write!(std::io::stderr(), "\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The progress line of one run.
pub struct Progress {
    bar: ProgressBar,
    view: Arc<Mutex<View>>,
}

impl Progress {
    /// Starts drawing (a few times a second); `stop` is the signal flag.
    pub fn start(forced: bool, stop: Option<Arc<AtomicBool>>) -> Progress {
        let view = Arc::new(Mutex::new(View::default()));
        let target = if forced && !std::io::stderr().is_terminal() {
            ProgressDrawTarget::term_like_with_hz(Box::new(ForcedStderr), 8)
        } else {
            ProgressDrawTarget::stderr_with_hz(8)
        };
        let shown = view.clone();
        let style = ProgressStyle::with_template("{line}").expect("a valid template").with_key(
            "line",
            move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                let stopping = stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed));
                let view = shown.lock().unwrap_or_else(|p| p.into_inner());
                // One column short of the width: a line as wide as the terminal wraps on some.
                let _ = out.write_str(&line(&view, terminal_width().saturating_sub(1), Instant::now(), stopping));
            },
        );
        // Redrawn a few times a second once the first phase is known (see `scanning`).
        let bar = ProgressBar::with_draw_target(None, target).with_style(style);
        *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
        Progress { bar, view }
    }

    pub fn scanning(&self, sides: Vec<(&'static str, Option<Arc<AtomicUsize>>)>) {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).scanning = sides;
        // Drawn at once, not at the next tick: a short run still shows its phase.
        self.bar.tick();
        self.bar.enable_steady_tick(Duration::from_millis(125));
    }

    pub fn planning(&self) {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).planning = true;
    }

    /// The copies to come: the line then counts them.
    pub fn copying(&self, files: u64, bytes: u64) {
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        view.files_total = files;
        view.bytes_total = bytes;
        view.copying_since = Some(Instant::now());
    }

    pub fn copied(&self, bytes: u64) {
        let view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        view.files_done.fetch_add(1, Ordering::Relaxed);
        view.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Prints `f`'s output above the line (hidden while it prints).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Clears the line for good.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        let mut active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
        if active.as_ref().is_some_and(|b| b.is_finished()) {
            *active = None;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copying(files: (u64, u64), bytes: (u64, u64), since: Duration) -> (View, Instant) {
        let now = Instant::now();
        let view = View {
            files_total: files.1,
            bytes_total: bytes.1,
            files_done: AtomicU64::new(files.0),
            bytes_done: AtomicU64::new(bytes.0),
            copying_since: Some(now - since),
            ..View::default()
        };
        (view, now)
    }

    #[test]
    fn the_line_fits_and_says_the_most_telling_first() {
        let (view, now) = copying((1_234, 5_000), (300 << 20, 1 << 30), Duration::from_secs(10));
        let wide = line(&view, 79, now, false);
        assert!(wide.contains("1,234/5,000 files") && wide.contains("300.00 MiB/1.00 GiB"), "{wide}");
        assert!(wide.contains("MiB/s") && wide.contains("eta "), "{wide}");
        assert!(wide.starts_with('['), "a bar where there is room: {wide}");
        for width in [79, 49, 30, 12] {
            let text = line(&view, width, now, false);
            assert!(text.chars().count() <= width, "{width}: {text:?}");
            assert!(text.contains("1,234/5,000"), "{width}: {text:?}");
        }
        assert!(!line(&view, 49, now, false).contains("eta"), "a narrow line leaves the eta out first");
    }

    #[test]
    fn no_remaining_time_before_it_means_something() {
        let (view, now) = copying((1, 10), (1 << 20, 100 << 20), Duration::from_millis(800));
        assert!(!line(&view, 200, now, false).contains("eta"), "a second into the copy");
        let (view, now) = copying((0, 10), (1 << 10, 100 << 30), Duration::from_secs(20));
        assert!(!line(&view, 200, now, false).contains("eta"), "a sliver of the bytes done");
        let (view, now) = copying((5, 10), (50 << 20, 100 << 20), Duration::from_secs(10));
        assert!(line(&view, 200, now, false).contains("eta 10s"), "{}", line(&view, 200, now, false));
    }

    #[test]
    fn phases_before_the_copies() {
        let n = Arc::new(AtomicUsize::new(41_203));
        let view = View { scanning: vec![("source", Some(n)), ("destination", None)], ..View::default() };
        assert_eq!(line(&view, 80, Instant::now(), false), "scanning source: 41,203 entries, destination: listing");
        let view = View { planning: true, ..view };
        assert_eq!(line(&view, 80, Instant::now(), false), "planning");
        assert!(line(&view, 80, Instant::now(), true).starts_with("stopping after the current file"));
        assert_eq!(line(&View::default(), 80, Instant::now(), false), "");
        assert_eq!(count(0), "0");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(short(Duration::from_secs(185)), "3m 05s");
    }
}
