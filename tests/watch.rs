//! Watch mode, through the real binary: changes on either side are carried within moments,
//! idling costs nothing, the periodic rescan catches what events missed, and the result is what
//! a full run would give. (The 10,000-file burst is tests/watch_burst.rs: run alone, it cannot
//! starve these timing tests of CPU.)

mod ftp_server;
mod live;
mod util;

use std::fs;
use std::time::Duration;

use live::{carried, cpu_ticks, wait_for, wait_idle, Live, DEADLINE};
use util::{Side::Destination as D, Side::Source as S};

#[test]
fn changes_on_either_side_are_carried() {
    let mut live = Live::start(&["watch", "live"], &[], |env| {
        env.put(S, "before.txt", "made before watching");
    });
    let env = &live.env;
    carried(&live, "the first full run", || env.exists(D, "before.txt"));
    env.put(S, "new.txt", "n");
    carried(&live, "create on the source", || env.exists(D, "new.txt"));
    env.put(D, "from-dst.txt", "d");
    carried(&live, "create on the destination", || env.exists(S, "from-dst.txt"));
    env.put_at(S, "new.txt", "edited", 1_900_000_000);
    carried(&live, "modify", || fs::read_to_string(env.dst.join("new.txt")).unwrap_or_default() == "edited");
    env.mv(D, "from-dst.txt", "renamed.txt");
    carried(&live, "rename on the destination", || env.exists(S, "renamed.txt") && !env.exists(S, "from-dst.txt"));
    env.put(S, "deep/er/still/file.txt", "nested");
    carried(&live, "a new nested folder", || env.exists(D, "deep/er/still/file.txt"));
    env.rm(D, "before.txt");
    carried(&live, "delete on the destination", || !env.exists(S, "before.txt"));
    // What the watcher did is what a full run would: a full run now finds nothing to do. (The
    // watcher is stopped first: it holds the pair's lock while it runs, and a run of its own
    // writes' echo may start at any moment.)
    let (code, _) = live.stop();
    assert_eq!(code, Some(0));
    let env = &live.env;
    let run = env.run(&["-C", live.config.to_str().unwrap(), "--json", "run", "live"]);
    env.expect(&run, 0);
    for field in ["\"copied\":0", "\"deleted\":0", "\"renamed\":0"] {
        assert!(run.stdout.contains(field), "{field}: {run}");
    }
}

#[test]
fn idling_costs_no_cpu() {
    // Regression: listing a subfolder raised an access event that started another scoped run,
    // which listed it again: an endless loop at half a core.
    let live = Live::start(&["watch", "live"], &[], |env| {
        env.put(S, "sub/a", "1").put(S, "sub/deeper/b", "2");
    });
    carried(&live, "the first full run", || live.env.exists(D, "sub/deeper/b"));
    live.env.put(S, "sub/c", "3");
    carried(&live, "a change", || live.env.exists(D, "sub/c"));
    wait_idle(&live);
    let before = cpu_ticks(live.pid());
    std::thread::sleep(Duration::from_secs(5));
    let used = cpu_ticks(live.pid()) - before;
    assert!(used < 10, "{used} ticks (1/100 s) of CPU in 5 idle seconds");
}

#[test]
fn the_periodic_rescan_catches_what_no_event_reported() {
    let live = Live::start(&["watch", "live", "--rescan", "1"], &[], |env| {
        env.put(S, "a", "1");
    });
    let env = &live.env;
    carried(&live, "the first full run", || env.exists(D, "a"));
    // A destination folder swapped for another: the watch on the old one sees nothing new.
    fs::rename(&env.dst, env.root.join("old-dst")).unwrap();
    fs::create_dir(&env.dst).unwrap();
    env.put(D, "a", "1");
    std::thread::sleep(Duration::from_millis(50));
    env.put(D, "seen-by-the-rescan", "r");
    assert!(wait_for(DEADLINE, || env.exists(S, "seen-by-the-rescan")), "not carried by the rescan\n{}", env.trees());
}

#[test]
fn the_daemon_watches_items_marked_watch() {
    let mut live = Live::start(&["daemon"], &["--watch"], |_| {});
    let env = &live.env;
    env.put(S, "x", "1");
    carried(&live, "a change under the daemon", || env.exists(D, "x"));
    let (code, _) = live.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn a_file_check_that_stops_holding_pauses_the_item_until_it_holds_again() {
    let mut live = Live::start(&["watch", "live", "--poll", "1"], &["--check-destination", ".drive-id=usb-1"], |env| {
        env.put(D, ".drive-id", "usb-1\n");
        env.put(S, "a", "1");
    });
    let env = &live.env;
    carried(&live, "the first full run", || env.exists(D, "a"));
    // The drive is "unplugged": nothing may be written to it meanwhile.
    fs::remove_file(env.dst.join(".drive-id")).unwrap();
    env.put(S, "while-unplugged", "w");
    // The change is seen, and the run it starts finds the check failing: the item pauses.
    let log = env.state.join("logs/live.log");
    let paused = wait_for(DEADLINE, || fs::read_to_string(&log).unwrap_or_default().contains("paused: its file check"));
    assert!(paused, "never paused\n{}", fs::read_to_string(&log).unwrap_or_default());
    assert!(!env.exists(D, "while-unplugged"), "written while the check did not hold\n{}", env.trees());
    // Plugged back in: the item resumes (checked every --poll) and catches up.
    env.put(D, ".drive-id", "usb-1\n");
    assert!(wait_for(DEADLINE, || env.exists(D, "while-unplugged")), "did not resume\n{}", env.trees());
    let (code, _, stderr) = live.stop_with_stderr();
    assert_eq!(code, Some(0), "{stderr}");
}

/// SIGHUP rereads the config: the watch starts over with the item as it is now (here, with a
/// new ignore pattern) and goes on; it used to end the watch.
#[test]
fn sighup_rereads_the_config_and_the_watch_goes_on() {
    let mut live = Live::start(&["watch", "live"], &[], |env| {
        env.put(S, "a", "1");
    });
    carried(&live, "the first full run", || live.env.exists(D, "a"));
    live.cli(&["edit", "live", "--ignore", "^skip"]);
    live.signal("HUP");
    carried(&live, "the config reread", || live.stdout().contains("config reread; watching 1 items"));
    live.env.put(S, "skip-me", "s").put(S, "take-me", "t");
    carried(&live, "a change after the reread", || live.env.exists(D, "take-me"));
    assert!(!live.env.exists(D, "skip-me"), "the new ignore pattern is not in effect\n{}", live.env.trees());
    let (code, _, stderr) = live.stop_with_stderr();
    assert_eq!(code, Some(0), "{stderr}");
}

/// The daemon's SIGHUP picks up items marked `watch` since it started.
#[test]
fn the_daemon_watches_an_item_marked_watch_after_it_started_once_told_by_sighup() {
    let mut live = Live::start(&["daemon"], &[], |_| {});
    carried(&live, "the daemon's start", || live.stdout().contains("started; 0 scheduled items"));
    live.cli(&["edit", "live", "--watch"]);
    live.signal("HUP");
    carried(&live, "the config reread", || live.stdout().contains("watching 1 items"));
    live.env.put(S, "x", "1");
    carried(&live, "a change under the daemon", || live.env.exists(D, "x"));
    let (code, _, stderr) = live.stop_with_stderr();
    assert_eq!(code, Some(0), "{stderr}");
}

/// An FTP side has nothing to watch: it is polled, a full run every --poll seconds, so a file
/// put on the server arrives, and a local change still goes up at once.
#[test]
fn an_ftp_side_is_polled() {
    let mut server = None;
    let mut live = Live::start_with(&["watch", "live", "--poll", "1"], &["--mode", "two-way"], |env| {
        env.put(S, "a", "1");
        let started = ftp_server::FtpServer::start(&env.dst);
        started.write_netrc(&env.home);
        let url = started.url("");
        server = Some(started);
        Some(url)
    });
    let env = &live.env;
    carried(&live, "the first full run", || env.exists(D, "a"));
    env.put(D, "from-the-server", "s");
    server.as_ref().unwrap().fix_permissions();
    carried(&live, "a file put on the server, by polling", || env.exists(S, "from-the-server"));
    env.put(S, "local", "l");
    carried(&live, "a local change", || env.exists(D, "local"));
    let (code, _, stderr) = live.stop_with_stderr();
    assert_eq!(code, Some(0), "{stderr}");
}

/// A SIGHUP while the config file is broken keeps the items watched as they were; a SIGTERM
/// right after a SIGHUP still ends the watch (exit 0).
#[test]
fn a_broken_config_on_sighup_keeps_the_watch_and_sigterm_right_after_sighup_stops_it() {
    let mut live = Live::start(&["watch", "live"], &[], |env| {
        env.put(S, "a", "1");
    });
    carried(&live, "the first full run", || live.env.exists(D, "a"));
    let good = fs::read_to_string(&live.config).unwrap();
    fs::write(&live.config, "[[item]\nbroken").unwrap();
    live.signal("HUP");
    live.env.put(S, "b", "2");
    carried(&live, "a change after the failed reread", || live.env.exists(D, "b"));
    fs::write(&live.config, good).unwrap();
    live.signal("HUP");
    let (code, _, stderr) = live.stop_with_stderr();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("config not reread, keeping the old one"), "{stderr}");
}
