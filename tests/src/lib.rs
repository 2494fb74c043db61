//! Helpers for the end-to-end tests: find the `proxima` binary, start a real server on an
//! ephemeral loopback port, talk to it over real HTTP.

pub mod crash;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Path of the `proxima` binary: `$PROXIMA_BIN`, else the one cargo built next to this test.
///
/// `./proxima.sh test` builds it before running the tests (`cargo build -p proxima-server`).
pub fn proxima_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PROXIMA_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-exe> → target/<profile>/proxima
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile> dir");
    let bin = profile_dir.join("proxima");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p proxima-server --bins` first (./proxima.sh test does)",
        bin.display()
    );
    bin
}

/// Runs `proxima args…` to completion; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(proxima_bin())
        .args(args)
        .output()
        .expect("spawn proxima");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `proxima serve` process on an ephemeral port; killed on drop.
pub struct Server {
    pub child: Child,
    pub base_url: String,
    pub data_dir: tempfile::TempDir,
    /// The first line the server printed (address, data dir, auth).
    pub first_line: String,
}

impl Server {
    /// Starts a server on `127.0.0.1:0` with a fresh data dir and waits for its address line.
    pub fn start(extra_args: &[&str]) -> Server {
        Self::start_in(tempfile::tempdir().expect("tempdir"), extra_args)
    }

    /// Starts a server on `127.0.0.1:0` over an existing data dir.
    ///
    /// Without the demo (which would embed the Debian package list in the background) unless
    /// `extra_args` mention it.
    pub fn start_in(data_dir: tempfile::TempDir, extra_args: &[&str]) -> Server {
        let demo_asked = extra_args.iter().any(|a| a.contains("demo"));
        let mut child = Command::new(proxima_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .args(if demo_asked {
                &[][..]
            } else {
                &["--no-demo"][..]
            })
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn proxima serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed no address line within 60 s");
        let base_url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server {
            child,
            base_url,
            data_dir,
            first_line: line,
        }
    }

    /// Polls `/readyz` until it answers 200 (the data directory is open); panics after 60 s.
    pub fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if http("GET", &self.url("/readyz"), None).status == 200 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server not ready after 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait for the exit code, then start a new server over the same data dir.
    pub fn restart(mut self, extra_args: &[&str]) -> (Option<i32>, Server) {
        // SAFETY: as in `terminate`.
        #[cfg(unix)]
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        let code = self.child.wait().ok().and_then(|s| s.code());
        let dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("tempdir"));
        (code, Server::start_in(dir, extra_args))
    }

    /// Full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid with a valid signal number has no memory effects.
        #[cfg(unix)]
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        let status = self.child.wait().ok()?;
        status.code()
    }
}

#[cfg(unix)]
extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Response of [`http`]: status and parsed JSON body.
pub struct HttpReply {
    pub status: u16,
    pub json: serde_json::Value,
}

/// One HTTP request with an optional JSON body; any status comes back (4xx is not an error).
pub fn http(method: &str, url: &str, body: Option<&str>) -> HttpReply {
    http_with(
        method,
        url,
        &[],
        body.map(|b| ("application/json", b.as_bytes())),
    )
}

/// One HTTP request with extra headers and an optional `(content type, bytes)` body.
pub fn http_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> HttpReply {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(30));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let res = match body {
        Some((content_type, b)) => req.set("Content-Type", content_type).send_bytes(b),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().expect("body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    HttpReply { status, json }
}

/// One request with an optional JSON body built as a `serde_json::Value`.
pub fn call(s: &Server, method: &str, path: &str, body: Option<serde_json::Value>) -> HttpReply {
    let body = body.map(|b| b.to_string());
    http(method, &s.url(path), body.as_deref())
}

/// Asserts an error answer: its status, its stable code and a message that says something.
#[track_caller]
pub fn expect_error(r: &HttpReply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.json["error"]["code"], code, "{}", r.json);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.json
    );
}

/// Row `i` of a deterministic set of pseudo-random `dim`-dimensional vectors in [0, 1).
pub fn pseudo_row(i: u64, dim: usize) -> Vec<f32> {
    (0..dim as u64)
        .map(|d| {
            let mut z = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ d.wrapping_mul(0xbf58_476d_1ce4_e5b9))
            .wrapping_add(d);
            z = (z ^ (z >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z = (z ^ (z >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            ((z ^ (z >> 32)) >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}
