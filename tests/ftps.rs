//! FTPS: the server's certificate is verified unless the user explicitly says not to.
//!
//! Needs openssl and pyftpdlib with pyOpenSSL; `.ci/run` installs them and sets
//! PAIRSYNC_TEST_FTPS=1, which turns a missing prerequisite into a failure instead of a skip.

mod util;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::{Side::Source as S, TestEnv};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prerequisites() -> bool {
    let ok = Command::new("python3").args(["-c", "import pyftpdlib, OpenSSL"]).status().is_ok_and(|s| s.success())
        && Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok && std::env::var_os("PAIRSYNC_TEST_FTPS").is_some() {
        panic!("PAIRSYNC_TEST_FTPS is set but openssl or pyftpdlib with pyOpenSSL is missing");
    }
    ok
}

/// pyftpdlib with TLS and a fresh self-signed certificate, on a free port of 127.0.0.1.
fn start(env: &TestEnv) -> (Server, u16) {
    let (key, cert) = (env.root.join("key.pem"), env.root.join("cert.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    // A free port is only free until someone takes it: a server that cannot bind it exits, and
    // one that answers must greet as pyftpdlib; otherwise try another port.
    for _ in 0..4 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("python3")
            .args([
                "-m",
                "pyftpdlib",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-w",
                "-u",
                "tester",
                "-P",
                "s3cret-pw",
                "--tls",
            ])
            .arg("-d")
            .arg(&env.dst)
            .arg("--keyfile")
            .arg(&key)
            .arg("--certfile")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) && child.try_wait().unwrap().is_none() {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut greeting = String::new();
                let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut greeting);
                if greeting.starts_with("220") && greeting.contains("pyftpdlib") {
                    return (Server(child), port);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("pyftpdlib did not start");
}

#[test]
fn a_self_signed_certificate_is_refused_unless_explicitly_accepted() {
    if !prerequisites() {
        eprintln!("note: openssl or pyftpdlib with pyOpenSSL missing: FTPS test skipped");
        return;
    }
    let env = TestEnv::new();
    env.put(S, "a", "1");
    let (_server, port) = start(&env);
    std::fs::write(env.home.join(".netrc"), "machine localhost login tester password s3cret-pw\n").unwrap();
    let url = format!("ftps://tester@localhost:{port}/");
    let src = env.src.to_str().unwrap();
    let refused = env.run(&["sync", "--mode", "clone", src, &url]);
    env.expect(&refused, 6);
    assert!(refused.stderr.contains("certificate"), "{refused}");
    assert!(!env.exists(util::Side::Destination, "a"), "nothing may be sent to an unverified server");
    let accepted = env.run(&["sync", "--mode", "clone", "--insecure-tls", src, &url]);
    env.expect(&accepted, 0);
    assert!(accepted.stderr.contains("certificate is NOT verified"), "{accepted}");
    assert_eq!(env.read(util::Side::Destination, "a"), "1");
}
