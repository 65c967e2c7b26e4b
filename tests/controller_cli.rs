//! `sluice controller` without a reachable cluster exits with a clear error, not a panic.

use std::process::Command;

fn controller(kubeconfig: &std::path::Path, home: &std::path::Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["controller", "--metrics-address", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run sluice");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn no_kubeconfig_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = controller(&dir.path().join("missing"), dir.path());
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("no Kubernetes configuration"), "{stderr}");
    assert!(stderr.contains("kubeconfig"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unreachable_api_server_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:{port}'}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: t}}\n"
        ),
    )
    .unwrap();
    let (code, stderr) = controller(&config, dir.path());
    assert_eq!(code, Some(69), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the Kubernetes API at https://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unknown_router_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["controller", "--router", "appmesh"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("gatewayapi"), "{stderr}");
    assert!(stderr.contains("linkerd"), "{stderr}");
}
