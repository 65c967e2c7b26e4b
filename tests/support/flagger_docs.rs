//! Flagger objects written after Flagger's documentation, shared by the import's tests
//! (tests/import.rs) and the cluster test that applies what the import makes to a real API
//! server.

/// Flagger's Istio tutorial Canary: the built-in metrics, webhooks, an autoscaler, Istio's
/// traffic policy and retries (which sluice does not model).
pub const ISTIO: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}
  progressDeadlineSeconds: 60
  service:
    port: 9898
    targetPort: 9898
    gateways: [istio-system/public-gateway]
    hosts: [app.example.com]
    trafficPolicy:
      tls: {mode: DISABLE}
    retries: {attempts: 3, perTryTimeout: 1s}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
        interval: 1m
      - name: request-duration
        thresholdRange: {max: 500}
        interval: 30s
    webhooks:
      - name: acceptance-test
        type: pre-rollout
        url: http://flagger-loadtester.test/
        timeout: 30s
        metadata: {type: bash, cmd: "curl -sd 'test' http://podinfo-canary:9898/token | grep token"}
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
        metadata: {cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}
"#;

/// Linkerd's Gateway API tutorial: no provider, the Service as the HTTPRoute's parent.
pub const GAMMA: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service:
    port: 9898
    targetPort: 9898
    gatewayRefs:
      - {name: podinfo, namespace: test, group: core, kind: Service, port: 9898}
  analysis:
    interval: 30s
    threshold: 5
    maxWeight: 50
    stepWeight: 5
    metrics:
      - name: success-rate
        templateRef: {name: success-rate, namespace: test}
        thresholdRange: {min: 99}
        interval: 1m
        templateVariables: {direction: inbound}
"#;

/// A MetricTemplate and AlertProviders of each type, as Flagger's docs write them.
pub const TEMPLATES_AND_PROVIDERS: &str = r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: nginx-5xx, namespace: test}
spec:
  provider:
    type: prometheus
    address: http://prometheus.monitoring:9090
    secretRef: {name: prom-auth}
    insecureSkipVerify: true
  query: |
    100 - sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",ingress="{{ ingress }}",status!~"5.*"}[{{ interval }}]))
---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: dd, namespace: test}
spec:
  provider: {type: datadog, address: https://api.datadoghq.com}
  query: avg:requests.error.rate{*}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {name: on-call, namespace: test}
spec:
  type: msteams
  secretRef: {name: teams-url}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {name: slack, namespace: test}
spec: {type: slack, channel: releases, username: flagger, address: "https://hooks.slack.com/services/X"}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {name: pager, namespace: test}
spec: {type: pagerduty, address: "https://example.com"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
"#;
