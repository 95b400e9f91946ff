//! Watch mode under a burst: 10,000 new files converge, and SIGTERM still stops it at once.

mod live;
mod util;

use std::time::Duration;

use live::{wait_for, Live};
use util::Side::Source as S;

/// Files below `dir`, counted while they may be changing (a temp file may vanish mid-walk).
fn files_below(dir: &std::path::Path) -> usize {
    walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count()
}

#[test]
fn a_burst_of_10000_files_converges_and_sigterm_stops_it_at_once() {
    let mut live = Live::start(&["watch", "live"], &[], |_| {});
    let env = &live.env;
    for d in 0..20 {
        for f in 0..500 {
            env.put(S, &format!("burst{d:02}/f{f:03}"), "x");
        }
    }
    let done = wait_for(Duration::from_secs(120), || files_below(&env.dst) == 10_000);
    assert!(done, "the burst did not converge: {} of 10000 files", files_below(&env.dst));
    let (code, took) = live.stop();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
}
