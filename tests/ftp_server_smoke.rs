//! Smoke test for the in-process FTP test server in `tests/ftp_server`.
mod ftp_server;

use std::io::Cursor;
use std::time::Duration;

use ftp_server::FtpServer;
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpStream, Mode, Status};

fn connect(server: &FtpServer) -> FtpStream {
    let addr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    FtpStream::connect_timeout(addr, Duration::from_secs(5)).expect("connect")
}

fn payload() -> Vec<u8> {
    (0..=255u8).cycle().take(256 * 1024 + 17).collect()
}

#[test]
fn client_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ftproot");
    let server = FtpServer::start(&root);
    assert!(root.is_dir());
    assert_eq!(server.url("a/b"), format!("ftp://tester@127.0.0.1:{}/a/b", server.port));

    let mut ftp = connect(&server);
    ftp.login(server.user, server.password).expect("login");
    ftp.transfer_type(FileType::Binary).expect("TYPE I");

    let features = ftp.feat().expect("FEAT");
    for feature in ["MLSD", "MDTM", "SIZE", "EPSV", "REST"] {
        assert!(features.contains_key(feature), "FEAT lacks {feature}: {features:?}");
    }

    let data = payload();
    assert_eq!(ftp.put_file("up.bin", &mut Cursor::new(&data)).expect("STOR"), data.len() as u64);
    assert_eq!(std::fs::read(root.join("up.bin")).unwrap(), data);
    assert_eq!(ftp.size("up.bin").expect("SIZE"), data.len());
    ftp.mdtm("up.bin").expect("MDTM");

    let listing = ftp.mlsd(None).expect("MLSD");
    let entry = listing.iter().find(|l| l.ends_with(" up.bin")).unwrap_or_else(|| panic!("MLSD: {listing:?}"));
    assert!(entry.contains("type=file;"), "{entry}");
    assert!(entry.contains(&format!("size={};", data.len())), "{entry}");
    assert!(entry.contains("modify="), "{entry}");

    ftp.rename("up.bin", "moved.bin").expect("RNFR/RNTO");
    assert!(!root.join("up.bin").exists());

    // Passive (PASV) download, then extended passive (EPSV) ranged download via REST.
    assert_eq!(ftp.retr_as_buffer("moved.bin").expect("RETR").into_inner(), data);
    ftp.set_mode(Mode::ExtendedPassive);
    ftp.resume_transfer(1000).unwrap();
    assert_eq!(ftp.retr_as_buffer("moved.bin").expect("REST+RETR").into_inner(), data[1000..]);
    ftp.set_mode(Mode::Passive);

    // libunftp 0.24 implements neither MFMT nor SITE UTIME.
    let mfmt = ftp.custom_command("MFMT 20200102030405 moved.bin", &[Status::File]);
    assert!(matches!(&mfmt, Err(FtpError::UnexpectedResponse(r)) if r.status == Status::BadCommand), "{mfmt:?}");
    let utime = ftp.site("UTIME moved.bin 20200102030405 20200102030405 20200102030405 UTC");
    assert!(matches!(&utime, Err(FtpError::UnexpectedResponse(r)) if r.status == Status::NotImplemented), "{utime:?}");

    ftp.rm("moved.bin").expect("DELE");
    assert!(!root.join("moved.bin").exists());

    ftp.mkdir("sub").expect("MKD");
    assert!(root.join("sub").is_dir());
    ftp.rmdir("sub").expect("RMD");
    assert!(!root.join("sub").exists());

    ftp.quit().expect("QUIT");

    let home = dir.path().join("home");
    server.write_netrc(&home);
    let netrc = home.join(".netrc");
    assert_eq!(std::fs::read_to_string(&netrc).unwrap(), "machine 127.0.0.1 login tester password s3cret-pw\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&netrc).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn wrong_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = FtpServer::start(dir.path());

    for (user, password) in [("tester", "wrong"), ("intruder", "s3cret-pw")] {
        let mut ftp = connect(&server);
        let err = ftp.login(user, password).expect_err("login must fail");
        assert!(matches!(&err, FtpError::UnexpectedResponse(r) if r.status == Status::NotLoggedIn), "{err:?}");
        // Still not logged in: commands are refused and nothing is written.
        let put = ftp.put_file("x.bin", &mut Cursor::new(b"x"));
        assert!(put.is_err(), "{put:?}");
        let _ = ftp.quit();
    }
    assert!(!dir.path().join("x.bin").exists());
}
