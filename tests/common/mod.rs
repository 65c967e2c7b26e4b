//! Test harness: a real Prometheus (the Debian package) on 127.0.0.1, loaded with series written
//! as OpenMetrics and backfilled with promtool.

#![allow(dead_code)]

pub mod release;
pub mod sources;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// OpenMetrics text, written family by family. Samples of one series must be added in time order.
#[derive(Default)]
pub struct OpenMetrics {
    text: String,
}

impl OpenMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a metric family. `kind` is counter, gauge, histogram or unknown; use unknown for
    /// counters whose samples do not end in `_total` (e.g. NGINX ingress's).
    pub fn family(&mut self, name: &str, kind: &str) -> &mut Self {
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        self
    }

    /// One sample at `unix_seconds`.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        unix_seconds: i64,
        value: f64,
    ) -> &mut Self {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let value = if value == f64::INFINITY {
            "+Inf".to_string()
        } else {
            format!("{value}")
        };
        let _ = writeln!(
            self.text,
            "{name}{{{}}} {value} {unix_seconds}",
            labels.join(",")
        );
        self
    }

    pub fn finish(mut self) -> String {
        self.text.push_str("# EOF\n");
        self.text
    }
}

/// A Prometheus server with backfilled data, stopped on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: install Debian's prometheus package (apt-get install prometheus); .ci/run does",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Prometheus {
    /// Backfills `openmetrics` and starts Prometheus on a free port of 127.0.0.1. Returns once
    /// the server answers queries and `ready_query`, evaluated at `ready_at` (Unix seconds: the
    /// data is in the past), returns data.
    pub fn start(openmetrics: &str, ready_query: &str, ready_at: i64) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data folder");
        let input = dir.path().join("series.om");
        std::fs::write(&input, openmetrics).expect("write series");
        let output = Command::new(tool("promtool"))
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=24h",
            ])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            output.status.success(),
            "promtool failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 15s\n").expect("write config");
        let port = free_port();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=3650d")
            .arg("--web.enable-lifecycle")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            _dir: dir,
        };
        server.wait_for(ready_query, ready_at);
        server
    }

    /// Waits (at most 30 s) until `query` returns a non-empty result.
    fn wait_for(&self, query: &str, at: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.query(query, Some(at)) {
                Ok(body)
                    if body.contains("\"result\":[{")
                        || body.contains("\"resultType\":\"scalar\"") =>
                {
                    return;
                }
                Ok(body) => last = body,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "Prometheus at {} never returned data for {query}: {last}",
            self.url
        );
    }

    /// Runs an instant query over plain HTTP and returns the raw JSON body.
    pub fn query(&self, query: &str, at: Option<i64>) -> Result<String, String> {
        let mut url = format!("{}/api/v1/query?query={}", self.url, encode(query));
        if let Some(at) = at {
            url.push_str(&format!("&time={at}"));
        }
        http_get(&url)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Percent-encodes a query string value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A minimal HTTP/1.0 GET to 127.0.0.1, so the harness does not need an async runtime.
pub fn http_get(url: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(response))
}

/// The sluice binary built for this test run.
pub fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}
