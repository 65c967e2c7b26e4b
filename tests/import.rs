//! `sluice import flagger`: Canaries written after Flagger's tutorials for each router sluice
//! has, a MetricTemplate and AlertProviders, through the real binary. Each produced Canary must
//! read as sluice's type and pass `validate_canary`; what is not mapped is named in the report.

#[path = "support/flagger_docs.rs"]
mod flagger_docs;

use std::io::Write;

use flagger_docs::ISTIO;
use std::process::{Command, Stdio};

use serde::Deserialize;
use sluice_core::api::validate::validate_canary;
use sluice_core::api::{
    AlertProvider, AlertProviderKind, Analysis, Canary, Comparison, ComparisonKind, MetricCheck,
    MetricTemplate, RouterKind, ThresholdRange,
};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn import(input: &str, extra: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["import", "flagger", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn canaries(run: &Run) -> Vec<Canary> {
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&run.stdout) {
        let value = serde_yaml_ng::Value::deserialize(document).unwrap();
        if value.get("kind").and_then(|k| k.as_str()) == Some("Canary") {
            assert_eq!(value["apiVersion"].as_str(), Some("sluice.dev/v1alpha1"));
            let canary: Canary = serde_yaml_ng::from_value(value).unwrap();
            validate_canary(&canary).unwrap_or_else(|e| panic!("{e}\n{}", run.stdout));
            accepted_by_the_crd_rules(&canary);
            out.push(canary);
        }
    }
    out
}

/// The CEL rules the API server runs on the CRD's fields, evaluated with kube's interpreter.
fn accepted_by_the_crd_rules(canary: &Canary) {
    let analysis = &canary.spec.analysis;
    Analysis::validate_cel(&json(analysis), None).unwrap();
    for metric in &analysis.metrics {
        MetricCheck::validate_cel(&json(metric), None).unwrap();
        if let Some(range) = &metric.threshold_range {
            ThresholdRange::validate_cel(&json(range), None).unwrap();
        }
        if let Some(comparison) = &metric.comparison {
            Comparison::validate_cel(&json(comparison), None).unwrap();
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

fn one_canary(run: &Run) -> Canary {
    let mut all = canaries(run);
    assert_eq!(all.len(), 1, "{}", run.stdout);
    all.remove(0)
}

fn metric<'a>(canary: &'a Canary, name: &str) -> &'a sluice_core::api::MetricCheck {
    canary
        .spec
        .analysis
        .metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn istio_canary_maps_built_in_metrics_and_reports_what_sluice_lacks() {
    let run = import(ISTIO, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let canary = one_canary(&run);
    assert_eq!(canary.metadata.namespace.as_deref(), Some("test"));
    assert_eq!(canary.spec.provider, Some(RouterKind::Istio));
    let service = canary.spec.service.as_ref().unwrap();
    assert_eq!(service.port, 9898);
    assert_eq!(service.gateways, ["istio-system/public-gateway"]);
    assert_eq!(service.hosts, ["app.example.com"]);
    let analysis = &canary.spec.analysis;
    assert_eq!(
        (
            analysis.step_weight,
            analysis.max_weight,
            analysis.threshold
        ),
        (Some(10), Some(50), 5)
    );
    assert_eq!(analysis.interval.as_secs(), 60);
    let success = metric(&canary, "request-success-rate");
    assert_eq!(
        success.template_ref.as_ref().unwrap().name,
        "istio-success-rate"
    );
    assert_eq!(success.threshold_range.as_ref().unwrap().min, Some(99.0));
    let duration = metric(&canary, "request-duration");
    assert_eq!(
        duration.template_ref.as_ref().unwrap().name,
        "istio-latency-p99"
    );
    assert_eq!(duration.threshold_range.as_ref().unwrap().max, Some(500.0));
    assert_eq!(duration.interval.unwrap().as_secs(), 30);
    let errors = metric(&canary, "error-rate");
    assert_eq!(errors.template_ref.as_ref().unwrap().name, "istio-errors");
    let comparison = errors.comparison.as_ref().unwrap();
    assert_eq!(comparison.kind, ComparisonKind::ErrorRate);
    assert_eq!(
        comparison.requests_template_ref.as_ref().unwrap().name,
        "istio-requests"
    );
    let latency = metric(&canary, "latency");
    assert_eq!(
        latency.template_ref.as_ref().unwrap().name,
        "istio-latency-buckets"
    );
    assert_eq!(
        latency.comparison.as_ref().unwrap().kind,
        ComparisonKind::Latency
    );
    assert_eq!(analysis.webhooks.len(), 2);
    assert_eq!(analysis.webhooks[0].metadata["type"], "bash");
    for line in [
        "not mapped  spec.service.trafficPolicy:",
        "not mapped  spec.service.retries:",
        "kubectl apply -f metrics-templates/istio.yaml -n test",
        "Canary test/podinfo (<stdin>, document 1): imported, with losses",
    ] {
        assert!(run.stderr.contains(line), "{line}\n{}", run.stderr);
    }
}

#[test]
fn linkerd_and_gamma_canaries() {
    let linkerd = ISTIO
        .replace("provider: istio", "provider: linkerd")
        .replace("    gateways: [istio-system/public-gateway]\n", "")
        .replace("    hosts: [app.example.com]\n", "")
        .replace("    trafficPolicy:\n      tls: {mode: DISABLE}\n", "")
        .replace("    retries: {attempts: 3, perTryTimeout: 1s}\n", "");
    let run = import(&linkerd, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let canary = one_canary(&run);
    assert_eq!(canary.spec.provider, Some(RouterKind::Linkerd));
    assert_eq!(
        metric(&canary, "error-rate")
            .template_ref
            .as_ref()
            .unwrap()
            .name,
        "linkerd-errors"
    );
    assert!(run.stderr.contains("metrics-templates/linkerd.yaml"));

    // Linkerd's Gateway API tutorial: no provider, the Service as the HTTPRoute's parent.
    let gamma = flagger_docs::GAMMA;
    let run = import(gamma, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let canary = one_canary(&run);
    assert_eq!(canary.spec.provider, Some(RouterKind::Gamma));
    assert!(
        canary
            .spec
            .service
            .as_ref()
            .unwrap()
            .gateway_refs
            .is_empty()
    );
    let kept = metric(&canary, "success-rate");
    assert_eq!(kept.template_variables["direction"], "inbound");
    assert_eq!(
        kept.template_ref.as_ref().unwrap().namespace.as_deref(),
        Some("test")
    );
    assert!(run.stderr.contains("set to gamma"), "{}", run.stderr);
    let v1beta1 = gamma.replace("spec:\n", "spec:\n  provider: gatewayapi:v1beta1\n");
    let run = import(&v1beta1, &[]);
    assert_eq!(one_canary(&run).spec.provider, Some(RouterKind::Gamma));
}

/// The NGINX tutorial's Canary up to its analysis.
const NGINX: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: nginx
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: podinfo}
  service: {port: 80, targetPort: 9898}
"#;

#[test]
fn gateway_api_nginx_and_blue_green() {
    let gateway = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: gatewayapi:v1beta1
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service:
    port: 9898
    hosts: [www.example.com]
    gatewayRefs: [{name: gateway, namespace: istio-ingress}]
  analysis:
    interval: 1m
    threshold: 5
    stepWeights: [5, 10, 25, 50]
    metrics:
      - {name: request-success-rate, thresholdRange: {min: 99}}
      - name: error-rate
        templateRef: {name: error-rate, namespace: flagger-system}
        thresholdRange: {max: 1}
"#;
    let run = import(gateway, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let canary = one_canary(&run);
    assert_eq!(canary.spec.provider, Some(RouterKind::GatewayApiV1));
    let service = canary.spec.service.as_ref().unwrap();
    assert_eq!(service.gateway_refs[0].name, "gateway");
    assert_eq!(
        service.gateway_refs[0].namespace.as_deref(),
        Some("istio-ingress")
    );
    assert_eq!(canary.spec.analysis.step_weights, [5, 10, 25, 50]);
    // The user's own error-rate guardrail keeps its name; the comparison steps aside.
    assert!(metric(&canary, "error-rate").threshold_range.is_some());
    let added = metric(&canary, "error-rate-vs-primary");
    assert_eq!(added.template_ref.as_ref().unwrap().name, "app-errors");
    assert!(
        run.stderr.contains("gatewayapi:v1beta1 -> gatewayapi:v1"),
        "{}",
        run.stderr
    );
    let run = import(gateway, &["--metrics", "envoy"]);
    assert_eq!(
        metric(&one_canary(&run), "request-success-rate")
            .template_ref
            .as_ref()
            .unwrap()
            .name,
        "envoy-success-rate"
    );

    let nginx = NGINX.to_string()
        + r#"  analysis:
    interval: 10s
    threshold: 10
    maxWeight: 50
    stepWeight: 5
    metrics:
      - {name: request-success-rate, thresholdRange: {min: 99}, interval: 1m}
"#;
    let run = import(&nginx, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let canary = one_canary(&run);
    assert_eq!(canary.spec.ingress_ref.as_ref().unwrap().name, "podinfo");
    for name in ["request-success-rate", "error-rate"] {
        let m = metric(&canary, name);
        assert!(m.template_ref.as_ref().unwrap().name.starts_with("nginx-"));
        assert_eq!(m.template_variables["ingress"], "podinfo");
    }

    let blue_green = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898, portDiscovery: true}
  analysis:
    interval: 30s
    threshold: 2
    iterations: 10
    metrics:
      - {name: request-success-rate, thresholdRange: {min: 99}, interval: 1m}
      - {name: request-duration, thresholdRange: {max: 500}, interval: 30s}
"#;
    let run = import(blue_green, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let canary = one_canary(&run);
    assert_eq!(canary.spec.provider, Some(RouterKind::Kubernetes));
    assert_eq!(canary.spec.analysis.iterations, Some(10));
    assert_eq!(
        metric(&canary, "latency")
            .template_ref
            .as_ref()
            .unwrap()
            .name,
        "app-latency-buckets"
    );
    assert!(
        run.stderr
            .contains("not mapped  spec.service.portDiscovery:"),
        "{}",
        run.stderr
    );
}

#[test]
fn ab_testing_with_headers_and_cookie() {
    let ab = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 1m
    iterations: 10
    threshold: 2
    match:
      - headers:
          user-agent: {regex: ".*Firefox.*"}
      - headers:
          cookie: {regex: "^(.*?;)?(type=insider)(;.*)?$"}
      - headers:
          x-canary: {suffix: ".internal"}
        uri: {prefix: /api}
    metrics:
      - {name: request-success-rate, thresholdRange: {min: 99}}
"#;
    let run = import(ab, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let canary = one_canary(&run);
    let matches = &canary.spec.analysis.matches;
    assert_eq!(matches.len(), 3);
    assert_eq!(
        matches[0].headers["user-agent"].regex.as_deref(),
        Some(".*Firefox.*")
    );
    assert_eq!(
        matches[1].headers["cookie"].regex.as_deref(),
        Some("^(.*?;)?(type=insider)(;.*)?$")
    );
    assert_eq!(
        matches[2].headers["x-canary"].regex.as_deref(),
        Some(r".*\.internal")
    );
    assert!(
        run.stderr
            .contains("not mapped  spec.analysis.match[2].uri:"),
        "{}",
        run.stderr
    );

    let nginx_cookie = NGINX.to_string()
        + r#"  analysis:
    interval: 1m
    iterations: 10
    threshold: 2
    match:
      - headers:
          x-canary: {exact: insider}
      - headers:
          cookie: {exact: canary}
"#;
    let run = import(&nginx_cookie, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let canary = one_canary(&run);
    assert_eq!(
        canary.spec.analysis.matches[1].headers["cookie"]
            .exact
            .as_deref(),
        Some("canary")
    );
}

#[test]
fn metric_templates_and_alert_providers() {
    let input = flagger_docs::TEMPLATES_AND_PROVIDERS;
    let run = import(input, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let mut templates = Vec::new();
    let mut providers = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&run.stdout) {
        let value = serde_yaml_ng::Value::deserialize(document).unwrap();
        match value["kind"].as_str() {
            Some("MetricTemplate") => {
                templates.push(serde_yaml_ng::from_value::<MetricTemplate>(value).unwrap())
            }
            Some("AlertProvider") => {
                providers.push(serde_yaml_ng::from_value::<AlertProvider>(value).unwrap())
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(templates.len(), 1);
    let template = &templates[0];
    assert_eq!(
        template.spec.provider.secret_ref.as_ref().unwrap().name,
        "prom-auth"
    );
    assert!(template.spec.provider.insecure_skip_verify);
    assert!(
        template
            .spec
            .query
            .contains(r#"ingress="{{ variables.ingress }}""#),
        "{}",
        template.spec.query
    );
    assert_eq!(providers.len(), 2);
    assert_eq!(providers[0].spec.kind, AlertProviderKind::Msteams);
    assert_eq!(providers[1].spec.channel.as_deref(), Some("releases"));
    assert_eq!(providers[1].spec.username.as_deref(), Some("flagger"));
    for line in [
        "MetricTemplate test/dd (<stdin>, document 2): not imported",
        "not mapped  spec.provider.type: \"datadog\"",
        "Workflows",
        "not mapped  spec.type: \"pagerduty\"",
        "document 6 (ConfigMap unrelated): left out",
    ] {
        assert!(run.stderr.contains(line), "{line}\n{}", run.stderr);
    }

    // A Canary beside the template gets the Ingress for the template's {{ ingress }}.
    let canary = r#"
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: nginx
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: web}
  service: {port: 80}
  analysis:
    interval: 1m
    stepWeight: 10
    maxWeight: 50
    metrics:
      - {name: errors, templateRef: {name: nginx-5xx}, thresholdRange: {max: 1}}
"#;
    let run = import(&format!("{input}{canary}"), &[]);
    let canary = one_canary(&run);
    assert_eq!(
        metric(&canary, "errors").template_variables["ingress"],
        "web"
    );
}

#[test]
fn bad_input_names_the_file_and_the_field() {
    let run = import(&ISTIO.replace("port: 9898\n", "port: nine\n"), &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains(
            "<stdin>: document 1 (Canary test/podinfo): spec.service.port: must be a port number"
        ),
        "{}",
        run.stderr
    );
    let run = import("a: [unclosed", &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["import", "flagger", "/nonexistent/canary.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(66));
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["import", "argo", "x.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
}

#[test]
fn an_unknown_provider_is_reported_and_the_canary_still_produced() {
    let run = import(&ISTIO.replace("provider: istio", "provider: appmesh"), &[]);
    assert_eq!(run.code, 2);
    let canary = one_canary(&run);
    assert_eq!(canary.spec.provider, None);
    assert!(
        run.stderr
            .contains("not mapped  spec.provider: \"appmesh\""),
        "{}",
        run.stderr
    );
}

#[test]
fn a_canary_sluice_refuses_is_printed_with_the_problem() {
    let daemon_set = ISTIO
        .replace(
            "kind: Deployment, name: podinfo}",
            "kind: DaemonSet, name: podinfo}",
        )
        .replace("  analysis:\n", "  canaryAnalysis:\n");
    let run = import(&daemon_set, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stdout.contains("kind: DaemonSet"), "{}", run.stdout);
    assert!(run.stdout.contains("  analysis:\n"), "{}", run.stdout);
    for line in [
        "invalid     spec.targetRef.kind: sluice releases Deployments only",
        "changed     spec.canaryAnalysis: renamed spec.analysis",
    ] {
        assert!(run.stderr.contains(line), "{line}\n{}", run.stderr);
    }
}
