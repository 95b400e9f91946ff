//! A large copy cut off midway is continued by the next run, not sent again: the partial temp
//! file the earlier run left is appended to (so the finished file is that very inode).

mod ftp_server;
mod util;

use std::fs;
use std::os::unix::fs::MetadataExt;

use pairsync::core::model::Entry;
use util::{Side::Destination as D, TestEnv};

fn content() -> Vec<u8> {
    (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect()
}

/// Leaves in `dir` what an interrupted copy of `src/big.bin` would have left: its first MiB
/// under the resumable temp name. Returns the temp's inode.
fn plant_partial(env: &TestEnv, pair_urls: [&str; 2], dir: &std::path::Path) -> u64 {
    let meta = fs::metadata(env.src.join("big.bin")).unwrap();
    let mtime = filetime::FileTime::from_last_modification_time(&meta);
    let like = Entry::file(meta.len(), mtime.unix_seconds() * 1_000_000_000 + i64::from(mtime.nanoseconds()));
    let tag = &pairsync::state::pair_id(pair_urls[0], pair_urls[1])[..8];
    let temp = dir.join(pairsync::endpoint::resumable_temp(tag, "big.bin", &like));
    fs::write(&temp, &content()[..1024 * 1024]).unwrap();
    fs::metadata(&temp).unwrap().ino()
}

#[test]
fn a_local_copy_is_continued_from_its_partial_temp() {
    let env = TestEnv::new();
    fs::write(env.src.join("big.bin"), content()).unwrap();
    let urls = [env.src.to_str().unwrap(), env.dst.to_str().unwrap()];
    let inode = plant_partial(&env, urls, &env.dst);
    env.sync_ok(&[]);
    assert_eq!(fs::read(env.dst.join("big.bin")).unwrap(), content());
    assert_eq!(fs::metadata(env.dst.join("big.bin")).unwrap().ino(), inode, "the copy was not continued");
    env.assert_same();
    assert_eq!(env.sync_ok(&["--json"]).stdout.matches("\"copied\":0").count(), 1);
}

#[test]
fn an_ftp_upload_is_continued_with_appe() {
    let env = TestEnv::new();
    let server = ftp_server::FtpServer::start(&env.dst);
    server.write_netrc(&env.home);
    fs::write(env.src.join("big.bin"), content()).unwrap();
    let url = server.url("");
    let shown = format!("ftp://tester@127.0.0.1:{}/", server.port);
    let inode = plant_partial(&env, [env.src.to_str().unwrap(), &shown], &env.dst);
    let run = env.run(&["sync", env.src.to_str().unwrap(), &url, "--mode", "clone"]);
    env.expect(&run, 0);
    assert_eq!(fs::read(env.dst.join("big.bin")).unwrap(), content());
    assert_eq!(fs::metadata(env.dst.join("big.bin")).unwrap().ino(), inode, "the upload was not continued\n{run}");
    assert!(!env.tree(D).keys().any(|p| p.contains(".pairsync-")));
}

#[test]
fn an_ftp_download_is_continued_with_rest() {
    let env = TestEnv::new();
    let server = ftp_server::FtpServer::start(&env.src);
    server.write_netrc(&env.home);
    fs::write(env.src.join("big.bin"), content()).unwrap();
    // The server reports whole seconds: the copy's temp name is derived from what it reports.
    let meta = fs::metadata(env.src.join("big.bin")).unwrap();
    let like =
        Entry::file(meta.len(), filetime::FileTime::from_last_modification_time(&meta).unix_seconds() * 1_000_000_000);
    let shown = format!("ftp://tester@127.0.0.1:{}/", server.port);
    let tag = &pairsync::state::pair_id(&shown, env.dst.to_str().unwrap())[..8];
    let temp = env.dst.join(pairsync::endpoint::resumable_temp(tag, "big.bin", &like));
    fs::write(&temp, &content()[..1024 * 1024]).unwrap();
    let inode = fs::metadata(&temp).unwrap().ino();
    let run = env.run(&["sync", &server.url(""), env.dst.to_str().unwrap(), "--mode", "clone"]);
    env.expect(&run, 0);
    assert_eq!(fs::read(env.dst.join("big.bin")).unwrap(), content());
    assert_eq!(fs::metadata(env.dst.join("big.bin")).unwrap().ino(), inode, "the download was not continued\n{run}");
}
