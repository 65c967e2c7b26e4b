//! A real Prometheus for the demo and the end-to-end tests: Debian's package, started on a free
//! port of 127.0.0.1 with its data in a folder of the caller's, scraping the demo apps every
//! second. The scrape configuration attaches the `namespace` and `pod` target labels that
//! Kubernetes service discovery would, so `metrics-templates/app.yaml` works unchanged.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use sluice_controller::providers::Credentials;
use sluice_controller::providers::Provider;
use sluice_controller::providers::prometheus::PrometheusProvider;
use sluice_core::api::{ProviderKind, ProviderSpec};

/// Where Debian's package puts the binary.
const DEBIAN_BINARY: &str = "/usr/bin/prometheus";

/// Ports tried before giving up: a free port found by binding can be taken by another process
/// before Prometheus binds it, which only a retry can fix.
const PORT_ATTEMPTS: usize = 3;

/// How long Prometheus may take to answer its readiness endpoint.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error(
        "Prometheus is not installed (no {DEBIAN_BINARY} and no prometheus on PATH); install Debian's package: sudo apt-get install -y --no-install-recommends prometheus (e2e/demo.sh does it for you)"
    )]
    Missing,
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "Prometheus exited before it was ready ({status}); the end of its log ({log}):\n{tail}"
    )]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("Prometheus at {url} was not ready within {seconds} s: {last}; its log: {log}")]
    NotReady {
        url: String,
        seconds: u64,
        last: String,
        log: PathBuf,
    },
    #[error("cannot query Prometheus at {url}: {message}")]
    Client { url: String, message: String },
}

/// One scraped process and the target labels that make its series look like a pod's.
#[derive(Clone, Debug)]
pub struct ScrapeTarget {
    pub address: SocketAddr,
    pub namespace: String,
    pub pod: String,
}

/// The Prometheus binary: Debian's, else the first `prometheus` on PATH.
pub fn find_binary() -> Result<PathBuf, PrometheusError> {
    let debian = PathBuf::from(DEBIAN_BINARY);
    if debian.is_file() {
        return Ok(debian);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .ok_or(PrometheusError::Missing)
}

/// A running Prometheus. Dropping it kills the process.
pub struct PrometheusServer {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrometheusServer {
    /// Writes the configuration into `dir` (created if missing), starts Prometheus with its data
    /// in `dir/data` on a free port, and returns once it answers `/-/ready`.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        targets: &[ScrapeTarget],
    ) -> Result<Self, PrometheusError> {
        Self::start_with(binary, dir, &scrape_config(targets)).await
    }

    /// As `start`, but the targets come from `targets_file(dir)` (Prometheus's file-based
    /// service discovery), empty at first and rewritten with `write_targets` while it runs:
    /// for pods whose names are only known once they exist.
    pub async fn start_discovering(binary: &Path, dir: &Path) -> Result<Self, PrometheusError> {
        std::fs::create_dir_all(dir).map_err(|source| PrometheusError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let file = targets_file(dir);
        write_targets(&file, &[])?;
        Self::start_with(binary, dir, &discovery_config(&file)).await
    }

    /// As `start`, with a configuration of the caller's (`prometheus.yml`, written into `dir`):
    /// for scrape jobs unlike the demo's, such as a controller's own metrics.
    pub async fn start_with(
        binary: &Path,
        dir: &Path,
        config: &str,
    ) -> Result<Self, PrometheusError> {
        let write = |path: PathBuf, text: &str| {
            std::fs::write(&path, text).map_err(|source| PrometheusError::Write { path, source })
        };
        std::fs::create_dir_all(dir.join("data")).map_err(|source| PrometheusError::Write {
            path: dir.join("data"),
            source,
        })?;
        write(dir.join("prometheus.yml"), config)?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let mut server = Self {
                binary: binary.to_path_buf(),
                dir: dir.to_path_buf(),
                port: free_port().map_err(|source| PrometheusError::Spawn {
                    binary: binary.to_path_buf(),
                    source,
                })?,
                child: None,
            };
            match server.launch().await {
                Ok(()) => return Ok(server),
                // Most likely the port was taken in between; another one may do.
                Err(e @ PrometheusError::Exited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(PrometheusError::Missing))
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Prometheus's own log (its standard error).
    /// The file-based discovery file (used when started with `start_discovering`).
    pub fn discovery_file(&self) -> PathBuf {
        targets_file(&self.dir)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("prometheus.log")
    }

    /// Whether the process is running (it was started and has not exited or been killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills Prometheus at once (SIGKILL), as a crash or an OOM kill would, and waits for it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts Prometheus again on the same port with the same data, after `kill`.
    pub async fn restart(&mut self) -> Result<(), PrometheusError> {
        self.kill().await;
        self.launch().await
    }

    /// Waits until `count` targets of `namespace` have been scraped successfully, which is when
    /// the series the analysis needs begin (the first scrape of a new target takes about 6 s).
    pub async fn wait_for_targets(
        &self,
        namespace: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(), PrometheusError> {
        let provider = self.provider(Duration::from_secs(2))?;
        let query = format!("up{{namespace=\"{namespace}\"}} == 1");
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < timeout {
            match provider.query(&query, unix_now()).await {
                Ok(samples) if samples.len() >= count => return Ok(()),
                Ok(samples) => last = format!("{} of {count} targets up", samples.len()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(PrometheusError::NotReady {
            url: self.url(),
            seconds: timeout.as_secs(),
            last,
            log: self.log(),
        })
    }

    /// A query client for this server.
    pub fn provider(&self, timeout: Duration) -> Result<PrometheusProvider, PrometheusError> {
        provider(&self.url(), timeout)
    }

    async fn launch(&mut self) -> Result<(), PrometheusError> {
        let log_path = self.log();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| PrometheusError::Write {
                path: log_path.clone(),
                source,
            })?;
        let child = Command::new(&self.binary)
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--storage.tsdb.retention.time=1d")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // The last guard: whatever path leaves this value, the process does not outlive it.
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| PrometheusError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), PrometheusError> {
        let http =
            crate::local_http(Duration::from_secs(2)).map_err(|e| PrometheusError::Client {
                url: self.url(),
                message: e.to_string(),
            })?;
        let ready = format!("{}/-/ready", self.url());
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < START_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(PrometheusError::Exited {
                    status: status.to_string(),
                    log: self.log(),
                    tail: tail(&self.log(), 10),
                });
            }
            match http.get(&ready).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => last = format!("/-/ready answered {}", response.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.kill().await;
        Err(PrometheusError::NotReady {
            url: self.url(),
            seconds: START_TIMEOUT.as_secs(),
            last,
            log: self.log(),
        })
    }
}

/// A query client for the Prometheus at `url`.
pub fn provider(url: &str, timeout: Duration) -> Result<PrometheusProvider, PrometheusError> {
    let spec = ProviderSpec {
        kind: ProviderKind::Prometheus,
        address: Some(url.to_string()),
        secret_ref: None,
        headers: Default::default(),
        insecure_skip_verify: false,
    };
    PrometheusProvider::new(&spec, url, &Credentials::None, timeout).map_err(|e| {
        PrometheusError::Client {
            url: url.to_string(),
            message: e.to_string(),
        }
    })
}

/// Scrapes every target each second: the demo's intervals are 10 s, and `increase()` over an
/// interval needs several samples of it.
fn scrape_config(targets: &[ScrapeTarget]) -> String {
    let mut text = String::from(
        "# Written by sluice demo.\nglobal:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: demo\n    static_configs:\n",
    );
    for target in targets {
        let _ = write!(
            text,
            "      - targets: ['{}']\n        labels: {{namespace: '{}', pod: '{}'}}\n",
            target.address, target.namespace, target.pod
        );
    }
    text
}

/// The file-based service discovery file of a Prometheus started with `start_discovering`.
pub fn targets_file(dir: &Path) -> PathBuf {
    dir.join("targets.json")
}

/// Writes `targets` for file-based service discovery, whole or not at all: Prometheus may read
/// the file at any moment, and a half-written one would drop every target.
pub fn write_targets(file: &Path, targets: &[ScrapeTarget]) -> Result<(), PrometheusError> {
    let groups: Vec<serde_json::Value> = targets
        .iter()
        .map(|t| {
            serde_json::json!({
                "targets": [t.address.to_string()],
                "labels": {"namespace": t.namespace, "pod": t.pod},
            })
        })
        .collect();
    let text = serde_json::Value::Array(groups).to_string();
    let partial = file.with_extension("json.partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, file))
        .map_err(|source| PrometheusError::Write {
            path: file.to_path_buf(),
            source,
        })
}

/// As `scrape_config`, with the targets read from `file` (re-read when it changes).
fn discovery_config(file: &Path) -> String {
    format!(
        "# Written by sluice.\nglobal:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: demo\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
        file.display()
    )
}

fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
}

/// The last `lines` lines of a log, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) use sluice_controller::clock::unix_seconds as unix_now;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_config_labels_each_target_as_a_pod() {
        let config = scrape_config(&[
            ScrapeTarget {
                address: "127.0.0.1:1000".parse().unwrap(),
                namespace: "demo".into(),
                pod: "podinfo-primary-7d9f8b6c5d-x2x9k".into(),
            },
            ScrapeTarget {
                address: "127.0.0.1:1001".parse().unwrap(),
                namespace: "demo".into(),
                pod: "podinfo-6c8d7f9b5-q4w8z".into(),
            },
        ]);
        let parsed: serde_json::Value = serde_yaml_ng::from_str(&config).unwrap();
        let statics = &parsed["scrape_configs"][0]["static_configs"];
        assert_eq!(statics[0]["targets"][0], "127.0.0.1:1000");
        assert_eq!(
            statics[0]["labels"]["pod"],
            "podinfo-primary-7d9f8b6c5d-x2x9k"
        );
        assert_eq!(statics[1]["labels"]["namespace"], "demo");
        assert_eq!(parsed["global"]["scrape_interval"], "1s");
    }
}
