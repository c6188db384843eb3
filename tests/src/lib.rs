//! Helpers for the end-to-end tests in `tests/tests/`: the built `prewarm` binary as a real
//! process on loopback, and a minimal HTTP/1.1 client (no client library needed for this).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `prewarm` binary cargo built next to this test executable.
pub fn prewarm_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let bin = dir.join(format!("prewarm{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing: build the workspace first (cargo test builds it)", bin.display());
    bin
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("prewarm-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// `prewarm serve` as a child process, killed on drop.
#[derive(Debug)]
pub struct Trainer {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Trainer {
    /// Starts the server and waits until `/healthz` answers.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_binary(&prewarm_bin(), data_dir, env)
    }

    /// Like [`Trainer::start`], with an explicit `prewarm` binary.
    pub fn start_binary(bin: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        Self::start_binary_at(bin, addr, data_dir, env)
    }

    /// Like [`Trainer::start`], listening on `addr` (a restart where the last one listened).
    pub fn start_at(addr: SocketAddr, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_binary_at(&prewarm_bin(), addr, data_dir, env)
    }

    fn start_binary_at(bin: &Path, addr: SocketAddr, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(bin);
        command
            .args(["--data-dir"])
            .arg(data_dir)
            .args(["serve", "--listen", &addr.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start prewarm serve");
        let trainer = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(request(addr, "GET", "/healthz", &[], b""), Ok((200, _))) {
                return trainer;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("prewarm serve did not become healthy on {addr}");
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    request_with_head(addr, method, path, headers, body).map(|(status, _, body)| (status, body))
}

/// Like [`request`], also returning the response head (status line and headers).
pub fn request_with_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    // Like a browser: a GET without a body says nothing about one.
    if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    // Read by the response's own framing: some servers keep the socket open after
    // `Connection: close`, so waiting for EOF would wait for their idle timeout.
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no complete HTTP response"));
        }
        response.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let lower = head.to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status"))?;
    let length = lower.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    let mut body = response[head_end + 4..].to_vec();
    loop {
        let complete = match (length, chunked) {
            (Some(length), _) => body.len() >= length,
            (None, true) => body.ends_with(b"0\r\n\r\n"),
            (None, false) => method == "HEAD" || status == 204 || status == 304,
        };
        if complete {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    if chunked {
        body = dechunk(&body);
    }
    Ok((status, head, body))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// The repository root (where `node_modules`, `edge/` and `wrangler.toml` live).
pub fn repo_root() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).expect("repository root");
    if built.join("edge").is_dir() {
        return built;
    }
    // A binary reused from a shared target directory, built in another checkout: the checkout
    // it runs in is the one around the working directory.
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors().find(|d| d.join("Cargo.lock").is_file() && d.join("edge").is_dir()).map(Path::to_path_buf)
        })
        .unwrap_or(built)
}

/// Runs `prewarm` with a data directory; panics with its output when it fails.
pub fn prewarm(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(prewarm_bin());
    command.arg("--data-dir").arg(data_dir).args(args).current_dir(repo_root());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run prewarm");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "prewarm {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Synthetic users of 25 per kind in one region `eu`, drawn with `seed`, imported under
/// `salt` and trained into the next model version of `data_dir` (events are written beside
/// it). Called again with another seed, it adds a day's worth of new users and a new version.
pub fn train_synthetic(data_dir: &Path, salt: &str, seed: u64) {
    let events = data_dir.with_extension("events.ndjson");
    let events = events.to_str().expect("utf-8 path");
    let seed = seed.to_string();
    prewarm(
        data_dir,
        &["synth", "--out", events, "--users-per-kind", "25", "--regions", "eu:60", "--seed", &seed],
        &[],
    );
    prewarm(data_dir, &["import", events], &[("PREWARM_SALT", salt)]);
    prewarm(data_dir, &["train"], &[]);
}

/// A tiny origin on loopback: answers every request 200 and records the request heads.
#[derive(Debug)]
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Origin {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                        head.push(byte[0]);
                    }
                    if let Ok(mut seen) = record.lock() {
                        seen.push(String::from_utf8_lossy(&head).into_owned());
                    }
                    let body = b"<html>origin</html>";
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes());
                    let _ = stream.write_all(body);
                });
            }
        });
        Self { addr, seen }
    }
}

/// The worker in local workerd through `wrangler dev`, reading the local KV in `persist_to`.
#[derive(Debug)]
pub struct WranglerDev {
    child: Child,
    pub addr: SocketAddr,
}

impl WranglerDev {
    /// Starts the prebuilt worker (edge/worker.mjs) with `config`, waits until it answers.
    /// wrangler's output goes to `wrangler.log` beside the config.
    pub fn start(config: &Path, persist_to: &Path) -> Self {
        let log = config.with_file_name("wrangler.log");
        let output = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null())
        };
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let child = Command::new(repo_root().join("node_modules/.bin/wrangler"))
            .args(["dev", "-c"])
            .arg(config)
            .args(["--ip", "127.0.0.1", "--port", &port.to_string(), "--inspector-port", &free_port().to_string()])
            .args(["--show-interactive-dev-session=false", "--persist-to"])
            .arg(persist_to)
            .env("CI", "true")
            .env("WRANGLER_SEND_METRICS", "false")
            // Offline: use Miniflare's placeholder `request.cf` at once instead of trying to fetch it.
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .current_dir(repo_root())
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("start wrangler dev (run `cargo xtask test`, which installs it)");
        let dev = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if matches!(request(addr, "GET", "/__prewarm/health", &[], b""), Ok((200 | 503, _))) {
                return dev;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("wrangler dev did not answer on {addr}");
    }
}

impl Drop for WranglerDev {
    fn drop(&mut self) {
        // SIGTERM lets wrangler stop workerd too; SIGKILL would orphan it.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs a signal batch to a trainer as the edge does (the key's id, the timestamp and the
/// HMAC signature over both; never the key); returns the status.
pub fn post_signals(addr: SocketAddr, key: &str, batch: &prewarm_shared::signals::SignalBatch) -> u16 {
    use prewarm_shared::signals;
    let body = batch.to_json();
    let at = batch.sent_at;
    let (ts, sig) = (at.0.to_string(), signals::sign(key.as_bytes(), at, &body));
    let key_id = signals::key_id(key.as_bytes());
    let headers = [
        (signals::KEY_ID_HEADER, key_id.as_str()),
        ("content-type", "application/json"),
        (signals::TIMESTAMP_HEADER, ts.as_str()),
        (signals::SIGNATURE_HEADER, sig.as_str()),
    ];
    request(addr, "POST", "/v1/signals", &headers, &body).map_or(0, |(status, _)| status)
}
