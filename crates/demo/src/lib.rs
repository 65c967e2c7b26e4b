//! `sluice demo`, which runs a whole release on this machine with real processes: the workload
//! (`app`, run as `sluice demo-app`), the traffic (`load`), the router in front of them
//! (`crate::proxy`), a real Prometheus (`prometheus`), all started together (`stage`);
//! the release itself through the controller's own reconcile over `cluster::memory` (`release`);
//! what it looks like live (`view`) and afterwards (`timeline`, `report`); the commands (`run`).
//! Everything listens on and talks to 127.0.0.1 only.

pub mod app;
pub mod cluster;
pub mod gateway;
pub mod load;
pub mod on_cluster;
pub mod prometheus;
pub mod proxy;
pub mod release;
pub mod report;
pub mod run;
pub mod stage;
pub mod timeline;
pub mod view;

/// The demo's one kind of HTTP client: everything it talks to is on 127.0.0.1, so a proxy from
/// the environment must not stand in between, and every call is bounded by `timeout`.
pub(crate) fn local_http(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
}

/// Completes on Ctrl-C or, on Unix, SIGTERM: the two ways a supervisor (a terminal, the demo, a
/// test harness) asks a process to stop.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            // Without the handler the process can still be killed; waiting forever keeps serving.
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
