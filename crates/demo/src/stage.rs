//! Everything a demo release runs on, except the controller: the primary and canary workloads
//! (`sluice demo-app` processes), the local weighted router in front of them (with its admin
//! API, so a controller in another process can steer it), a real Prometheus scraping both, and
//! steady load through the router. `sluice demo` runs a controller next to it in-process; the
//! end-to-end tests also run `sluice demo-controller` against it as a process of its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::app::AppConfig;
use super::load::{self, LoadReport};
use super::prometheus::{PrometheusError, PrometheusServer, ScrapeTarget};
use crate::proxy::{LocalRouter, LocalRouterError};

/// How long a `sluice demo-app` process may take to say where it listens.
const APP_START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long Prometheus may take to scrape both apps once (about 6 s in practice).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(40);

/// The pod-name suffixes the scrape configuration gives the arms: a Deployment's pods are named
/// `<deployment>-<replica set hash>-<id>`, which is what the templates' anchored regex expects.
const PRIMARY_POD_SUFFIX: &str = "7d9f8b6c5d-x2x9k";
const CANARY_POD_SUFFIX: &str = "6c8d7f9b5-q4w8z";

/// What the new version does differently. The primary is the same in all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// The canary behaves as the primary: 1% errors, 50 ms median latency.
    Good,
    /// The canary fails 5 points more requests (6% instead of 1%).
    Errors,
    /// The canary is twice as slow.
    Latency,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Good => "good",
            Scenario::Errors => "errors",
            Scenario::Latency => "latency",
        }
    }

    /// The version in production. The 1% base error rate gives the error comparison events to
    /// count in both arms, which a promotion needs: evidence that the canary is no worse.
    pub fn primary_app() -> AppConfig {
        AppConfig {
            version: "v1".into(),
            error_rate: 0.01,
            latency_median_ms: 50.0,
            latency_sigma: 0.5,
            latency_factor: 1.0,
        }
    }

    /// The new version.
    pub fn canary_app(self) -> AppConfig {
        let v1 = Self::primary_app();
        match self {
            Scenario::Good => AppConfig {
                version: "v2".into(),
                ..v1
            },
            Scenario::Errors => AppConfig {
                version: "v2".into(),
                error_rate: v1.error_rate + 0.05,
                ..v1
            },
            Scenario::Latency => AppConfig {
                version: "v2".into(),
                latency_factor: 2.0,
                ..v1
            },
        }
    }
}

/// The command-line arguments of `sluice demo-app` for `config`.
pub fn app_args(config: &AppConfig) -> Vec<String> {
    vec![
        "demo-app".into(),
        "--version".into(),
        config.version.clone(),
        "--error-rate".into(),
        config.error_rate.to_string(),
        "--latency-median-ms".into(),
        config.latency_median_ms.to_string(),
        "--latency-sigma".into(),
        config.latency_sigma.to_string(),
        "--latency-factor".into(),
        config.latency_factor.to_string(),
    ]
}

/// The pod names Prometheus gives the arms' series, for the target Deployment `target`.
pub fn pod_names(target: &str) -> (String, String) {
    (
        format!("{target}-primary-{PRIMARY_POD_SUFFIX}"),
        format!("{target}-{CANARY_POD_SUFFIX}"),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    #[error(transparent)]
    Router(#[from] LocalRouterError),
    #[error("cannot start the {arm} app ({binary} demo-app): {message}")]
    App {
        arm: &'static str,
        binary: PathBuf,
        message: String,
    },
    #[error("cannot create {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to start.
#[derive(Clone, Debug)]
pub struct StageConfig {
    /// The `sluice` executable, run as `sluice demo-app` for each arm.
    pub sluice: PathBuf,
    /// The Prometheus executable.
    pub prometheus: PathBuf,
    /// Prometheus's configuration and data, and the apps' logs.
    pub dir: PathBuf,
    /// The Canary's namespace and target Deployment: they name the arms' pods.
    pub namespace: String,
    pub target: String,
    pub primary: AppConfig,
    pub canary: AppConfig,
    /// Requests per second through the router; 0 sends none.
    pub rate: f64,
    /// The load stops by itself after this, whatever happens to the caller.
    pub max_duration: Duration,
    /// Leave the scrape targets to file-based discovery (`Stage::targets_file`), for apps that
    /// stand for pods whose names are known only once they exist (`demo::gateway`); else both
    /// apps are scraped from the start under fixed pod names.
    pub discover_pods: bool,
}

/// A running `sluice demo-app`. Dropping it kills the process.
struct AppProcess {
    address: SocketAddr,
    child: Child,
    /// Held open: the app's standard output is a pipe, and closing it would make a later write
    /// fail.
    _stdout: BufReader<ChildStdout>,
}

impl AppProcess {
    async fn start(
        sluice: &Path,
        arm: &'static str,
        config: &AppConfig,
        log: &Path,
    ) -> Result<Self, StageError> {
        let failed = |message: String| StageError::App {
            arm,
            binary: sluice.to_path_buf(),
            message,
        };
        let log_file = std::fs::File::create(log)
            .map_err(|e| failed(format!("cannot create {}: {e}", log.display())))?;
        let mut child = Command::new(sluice)
            .args(app_args(config))
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(e.to_string()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("no standard output".into()))?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(APP_START_TIMEOUT, stdout.read_line(&mut line)).await;
        let address = match read {
            Ok(Ok(_)) => line
                .trim()
                .strip_prefix("listening on ")
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .ok_or_else(|| {
                    failed(format!(
                        "expected `listening on ADDRESS`, got {line:?}; see {}",
                        log.display()
                    ))
                })?,
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => {
                return Err(failed(format!(
                    "it did not listen within {} s; see {}",
                    APP_START_TIMEOUT.as_secs(),
                    log.display()
                )));
            }
        };
        Ok(Self {
            address,
            child,
            _stdout: stdout,
        })
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The running stage. Dropping it stops everything; `stop` does the same and waits.
pub struct Stage {
    pub prometheus: PrometheusServer,
    pub router: Arc<LocalRouter>,
    /// The router's admin API, for `LocalRouterClient` in another process.
    pub admin: SocketAddr,
    primary: AppProcess,
    canary: AppProcess,
    load: Option<(oneshot::Sender<()>, JoinHandle<LoadReport>)>,
}

impl Stage {
    /// Starts the apps, the router, the load and Prometheus, and returns once Prometheus has
    /// scraped both apps.
    pub async fn start(config: &StageConfig) -> Result<Self, StageError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| StageError::Folder {
            path: config.dir.clone(),
            source,
        })?;
        let primary = AppProcess::start(
            &config.sluice,
            "primary",
            &config.primary,
            &config.dir.join("primary.log"),
        )
        .await?;
        let canary = AppProcess::start(
            &config.sluice,
            "canary",
            &config.canary,
            &config.dir.join("canary.log"),
        )
        .await?;
        let loopback: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut router = LocalRouter::start(loopback, primary.address, canary.address).await?;
        let admin = router.serve_admin(loopback).await?;
        // The load starts before Prometheus, so that by the time it has scraped the apps the
        // live rates' windows are full of steady traffic.
        let (stop, stopped) = oneshot::channel::<()>();
        let address = router.address();
        let rate = config.rate;
        let duration = config.max_duration;
        let load = tokio::spawn(async move {
            load::run_load(address, rate, duration, async {
                // A dropped sender stops the load too.
                let _ = stopped.await;
            })
            .await
        });
        let prometheus_dir = config.dir.join("prometheus");
        let prometheus = if config.discover_pods {
            PrometheusServer::start_discovering(&config.prometheus, &prometheus_dir).await?
        } else {
            let (primary_pod, canary_pod) = pod_names(&config.target);
            let targets = [
                ScrapeTarget {
                    address: primary.address,
                    namespace: config.namespace.clone(),
                    pod: primary_pod,
                },
                ScrapeTarget {
                    address: canary.address,
                    namespace: config.namespace.clone(),
                    pod: canary_pod,
                },
            ];
            let prometheus =
                PrometheusServer::start(&config.prometheus, &prometheus_dir, &targets).await?;
            prometheus
                .wait_for_targets(&config.namespace, targets.len(), SCRAPE_TIMEOUT)
                .await?;
            prometheus
        };
        Ok(Self {
            prometheus,
            router: Arc::new(router),
            admin,
            primary,
            canary,
            load: Some((stop, load)),
        })
    }

    /// Where the primary and the canary app listen.
    pub fn apps(&self) -> (SocketAddr, SocketAddr) {
        (self.primary.address, self.canary.address)
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// Stops the load (and waits for its requests in flight), the apps and Prometheus.
    pub async fn stop(mut self) -> Option<LoadReport> {
        let report = match self.load.take() {
            Some((stop, task)) => {
                let _ = stop.send(());
                task.await.ok()
            }
            None => None,
        };
        self.prometheus.kill().await;
        self.primary.stop().await;
        self.canary.stop().await;
        if let Ok(router) = Arc::try_unwrap(self.router) {
            router.shutdown().await;
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_change_only_what_they_say() {
        let v1 = Scenario::primary_app();
        let good = Scenario::Good.canary_app();
        assert_eq!((good.error_rate, good.latency_factor), (0.01, 1.0));
        let errors = Scenario::Errors.canary_app();
        assert!((errors.error_rate - 0.06).abs() < 1e-12);
        assert_eq!(errors.latency_factor, v1.latency_factor);
        let latency = Scenario::Latency.canary_app();
        assert_eq!(
            (latency.error_rate, latency.latency_factor),
            (v1.error_rate, 2.0)
        );
    }
}
