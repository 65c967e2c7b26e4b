//! The harness of `tests/cluster.rs`: the shared control plane, a namespace per test with the
//! chart's RBAC, `sluice controller` processes, and a release with real traffic.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sluice_demo::cluster::{self as plane, ControlPlane};
use sluice_demo::gateway::{Gateway, GatewayConfig};
use sluice_demo::stage::{Scenario, Stage, StageConfig};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Shared {
    plane: ControlPlane,
    helm: PathBuf,
    /// Ours to restart: a local control plane, not a cluster named by SLUICE_TEST_KUBECONFIG.
    local: bool,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// Tests share the control plane; the one that restarts the API server takes it alone.
static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

fn root() -> PathBuf {
    PathBuf::from(ROOT)
}

fn run(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let scripts = root().join("e2e/cluster");
        let tools = PathBuf::from(run(Command::new("bash").arg(scripts.join("tools.sh"))).trim());
        let (plane, local) = match std::env::var_os("SLUICE_TEST_KUBECONFIG") {
            Some(kubeconfig) => (ControlPlane::existing(PathBuf::from(kubeconfig)), false),
            None => (start_local(&scripts), true),
        };
        // The CRDs under test, as a user installs them.
        let kubectl = tools.join("kubectl");
        let kubeconfig = plane.kubeconfig.clone();
        run(Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(root().join("crds/sluice.yaml")));
        // A cluster's own mesh CRDs are left as they are: only missing ones are installed.
        let present = |name: &str| {
            Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["get", "crd", name])
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let missing: Vec<&str> = MESH_CRDS.into_iter().filter(|n| !present(n)).collect();
        let mesh = mesh_crds(&scripts, &missing);
        run(Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(&mesh));
        run(Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["wait", "--for", "condition=Established", "--timeout", "60s"])
            .args([
                "crd/canaries.sluice.dev",
                "crd/metrictemplates.sluice.dev",
                "crd/alertproviders.sluice.dev",
            ])
            .args(MESH_CRDS.iter().map(|name| format!("crd/{name}"))));
        Shared {
            plane,
            helm: tools.join("helm"),
            local,
        }
    })
}

/// The meshes' CRDs the routers write, by name.
const MESH_CRDS: [&str; 3] = [
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "trafficsplits.split.smi-spec.io",
];

/// A pinned version from `e2e/cluster/versions.sh`.
fn pinned(scripts: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(scripts.join("versions.sh")).expect("versions.sh");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{name} is not pinned in versions.sh"))
        .to_string()
}

/// A Go module's folder in the module cache, downloaded through the module proxy if missing.
fn module_dir(module: &str) -> PathBuf {
    let json = run(Command::new("go")
        .args(["mod", "download", "-json", module])
        .env("GOFLAGS", "-mod=mod")
        .current_dir("/"));
    let info: Value = serde_json::from_str(&json).expect("go mod download -json");
    PathBuf::from(
        info["Dir"]
            .as_str()
            .unwrap_or_else(|| panic!("no Dir: {json}")),
    )
}

/// The CRDs of Istio's VirtualService and DestinationRule and of SMI's TrafficSplit, from the
/// meshes' own Go modules, as one file. SMI publishes its CRD for `apiextensions.k8s.io/v1beta1`,
/// which API servers no longer serve: it is converted to v1 here as the API server converted
/// stored v1beta1 CRDs (the one schema for every version, `type: object` at its root, which v1
/// requires), serving every version it lists, so that v1alpha2, which Linkerd's SMI extension
/// serves and the router writes, is validated by the same schema.
fn mesh_crds(scripts: &Path, wanted: &[&str]) -> PathBuf {
    let istio = module_dir(&format!(
        "istio.io/api@{}",
        pinned(scripts, "ISTIO_API_VERSION")
    ))
    .join("kubernetes/customresourcedefinitions.gen.yaml");
    let smi = module_dir(&format!(
        "github.com/servicemeshinterface/smi-sdk-go@{}",
        pinned(scripts, "SMI_SDK_VERSION")
    ))
    .join("crds/split.yaml");
    let mut out = Vec::new();
    let istio_text = std::fs::read_to_string(&istio).expect("Istio's CRDs");
    for document in serde_yaml_ng::Deserializer::from_str(&istio_text) {
        let crd: Value = serde::Deserialize::deserialize(document).expect("YAML");
        if wanted.contains(&crd["metadata"]["name"].as_str().unwrap_or("")) {
            out.push(crd);
        }
    }
    let smi_text = std::fs::read_to_string(&smi).expect("SMI's CRDs");
    for document in serde_yaml_ng::Deserializer::from_str(&smi_text) {
        let old: Value = serde::Deserialize::deserialize(document).expect("YAML");
        if old["metadata"]["name"] != "trafficsplits.split.smi-spec.io"
            || !wanted.contains(&"trafficsplits.split.smi-spec.io")
        {
            continue;
        }
        let mut schema = old["spec"]["validation"]["openAPIV3Schema"].clone();
        schema["type"] = json!("object");
        let columns: Vec<Value> = old["spec"]["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                json!({"name": c["name"], "type": c["type"],
                "description": c["description"], "jsonPath": c["JSONPath"]})
            })
            .collect();
        let versions: Vec<Value> = old["spec"]["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| {
                json!({"name": v["name"], "served": true, "storage": v["storage"],
                "schema": {"openAPIV3Schema": schema}, "additionalPrinterColumns": columns})
            })
            .collect();
        out.push(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": old["metadata"]["name"]},
            "spec": {"group": old["spec"]["group"], "scope": old["spec"]["scope"],
                "names": old["spec"]["names"], "versions": versions},
        }));
    }
    assert_eq!(
        out.len(),
        wanted.len(),
        "the meshes' CRDs were not all found"
    );
    let path = std::env::temp_dir().join(format!("sluice-mesh-crds-{}.json", std::process::id()));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": out});
    std::fs::write(&path, serde_json::to_string(&list).expect("JSON")).expect("mesh CRDs written");
    path
}

/// The control plane `up.sh` runs already, or a private one stopped when this binary exits.
fn start_local(scripts: &Path) -> ControlPlane {
    let default_state = std::env::var_os("SLUICE_CLUSTER_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sluice-cluster"));
    if default_state.join("kubeconfig").is_file()
        && let Ok(plane) = ControlPlane::up(scripts, &default_state)
    {
        eprintln!(
            "cluster tests: on the control plane of {}",
            default_state.display()
        );
        return plane;
    }
    let state = std::env::temp_dir().join(format!("sluice-cluster-test-{}", std::process::id()));
    // The watcher: a process of its own session that outlives this one and stops the control
    // plane by its PIDs once this test binary has exited, however it exits.
    let watcher = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; SLUICE_CLUSTER_STATE='{state}' bash '{down}' >/dev/null 2>&1",
        pid = std::process::id(),
        state = state.display(),
        down = scripts.join("down.sh").display()
    );
    // Never waited for: it must outlive this process, which is the point of it.
    #[allow(clippy::zombie_processes)]
    let _watcher = Command::new("setsid")
        .args(["bash", "-c", &watcher])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the control plane's watcher starts");
    let started = Instant::now();
    let plane = ControlPlane::up(scripts, &state).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "cluster tests: started a control plane in {:.1?} ({})",
        started.elapsed(),
        state.display()
    );
    plane
}

/// Whether the control plane is ours to restart (not a cluster named by SLUICE_TEST_KUBECONFIG).
pub fn is_local() -> bool {
    shared().local
}

/// A test's hold on the shared control plane: shared with other tests, or alone.
enum Hold {
    Shared(RwLockReadGuard<'static, ()>),
    Alone(RwLockWriteGuard<'static, ()>),
}

/// Stops the API server by its PID and starts it again after `pause`.
pub fn restart_apiserver(pause: Duration) {
    shared()
        .plane
        .restart("kube-apiserver", pause)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A namespace of the test's own, with the chart's ServiceAccount, ClusterRole and bindings
/// for a release named after it.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub release: String,
    _hold: Option<Hold>,
}

impl TestNamespace {
    pub async fn new(test: &str) -> Self {
        let hold = if shared().local {
            Some(Hold::Shared(EXCLUSIVE.read().await))
        } else {
            None
        };
        Self::with_hold(test, hold).await
    }

    /// As `new`, with the control plane to itself: no other test runs meanwhile (for a test
    /// that stops the API server).
    pub async fn alone(test: &str) -> Self {
        let hold = Some(Hold::Alone(EXCLUSIVE.write().await));
        Self::with_hold(test, hold).await
    }

    async fn with_hold(test: &str, hold: Option<Hold>) -> Self {
        let shared = shared();
        let suffix: u32 = rand::random::<u32>() % 100_000;
        let name = format!("t-{test}-{suffix}");
        let client = shared
            .plane
            .client()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        plane::namespace(&client, &name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The chart's objects for a release in this namespace: its ClusterRole is the one under
        // test, bound cluster-wide as a default install binds it.
        let release = format!("sluice-{name}");
        let rbac = plane::chart_rbac(&shared.helm, &root().join("charts/sluice"), &release, &name)
            .unwrap_or_else(|e| panic!("{e}"));
        plane::apply_yaml(&client, &rbac, Some(&name))
            .await
            .unwrap_or_else(|e| panic!("the chart's RBAC: {e}"));
        Self {
            name,
            client,
            dir: tempfile::tempdir().expect("a temporary folder"),
            release,
            _hold: hold,
        }
    }

    pub async fn api(&self, api_version: &str, kind: &str) -> Api<DynamicObject> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("discovery of {kind}: {e}"));
        if capabilities.scope == kube::discovery::Scope::Namespaced {
            Api::namespaced_with(self.client.clone(), &self.name, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        }
    }

    /// The object, which must exist.
    pub async fn get(&self, api_version: &str, kind: &str, name: &str) -> Value {
        let object = self
            .api(api_version, kind)
            .await
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{kind} {}/{name}: {e}", self.name));
        serde_json::to_value(object).expect("JSON")
    }

    pub async fn get_opt(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        let object = self
            .api(api_version, kind)
            .await
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("{kind} {}/{name}: {e}", self.name));
        object.map(|o| serde_json::to_value(o).expect("JSON"))
    }

    pub async fn apply(&self, object: Value) -> Value {
        plane::apply(&self.client, object, Some(&self.name))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Applies a file of the repository in this namespace, whatever namespace it names.
    pub async fn apply_file(&self, path: &str) {
        let text = std::fs::read_to_string(root().join(path)).expect("the file");
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let mut value: Value = serde::Deserialize::deserialize(document).expect("YAML");
            if value.is_null() {
                continue;
            }
            value["metadata"]["namespace"] = json!(self.name);
            self.apply(value).await;
        }
    }

    pub async fn crd_conditions(&self, crd: &str) -> BTreeMap<String, String> {
        let object = self
            .get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd)
            .await;
        object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["type"].as_str().unwrap_or("").to_string(),
                    c["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Creates a Canary with this `analysis`; returns the API server's refusal.
    pub async fn create_canary_expecting_refusal(&self, analysis: &Value) -> String {
        let canary = json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Canary",
            "metadata": {"name": "bad", "namespace": self.name},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": analysis,
            }
        });
        let object: DynamicObject = serde_json::from_value(canary).expect("a Canary");
        match self
            .api("sluice.dev/v1alpha1", "Canary")
            .await
            .create(&PostParams::default(), &object)
            .await
        {
            Ok(_) => panic!("the API server accepted {analysis}"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{status:?}");
                status.message
            }
            Err(other) => panic!("{other}"),
        }
    }

    /// The kubeconfig of the chart's ServiceAccount (a bound token).
    pub async fn controller_kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("controller.kubeconfig");
        if !path.is_file() {
            plane::service_account_kubeconfig(
                &self.client,
                &shared().plane.kubeconfig,
                &self.name,
                &self.release,
                3600,
                &path,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        path
    }

    pub async fn controller_client(&self) -> Client {
        let path = self.controller_kubeconfig().await;
        plane::client_for(&path)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Deleting the namespace is left to the control plane's own end: its objects are what
        // a failed test's message points at.
    }
}

/// What the controller's ServiceAccount must be able to do, each as (what, result).
pub async fn allowed_requests(client: &Client, ns: &str) -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::new();
    let lp = ListParams::default();
    for (api_version, kind) in [
        ("sluice.dev/v1alpha1", "Canary"),
        ("sluice.dev/v1alpha1", "MetricTemplate"),
        ("sluice.dev/v1alpha1", "AlertProvider"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.istio.io/v1", "VirtualService"),
        ("networking.istio.io/v1", "DestinationRule"),
        ("split.smi-spec.io/v1alpha2", "TrafficSplit"),
    ] {
        let api = dynamic(client, api_version, kind, Some(ns)).await;
        let result = api.list(&lp).await.map(|_| ()).map_err(|e| e.to_string());
        out.push((format!("list {kind} in {ns}"), result));
        let all = dynamic(client, api_version, kind, None).await;
        let result = all.list(&lp).await.map(|_| ()).map_err(|e| e.to_string());
        out.push((format!("list {kind} in all namespaces"), result));
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "rbac-probe"},
        "spec": {"holderIdentity": "probe"}
    }))
    .expect("a Lease");
    let result = leases
        .create(&PostParams::default(), &lease)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    out.push((format!("create a Lease in {ns}"), result));
    out
}

/// What the controller never does; the chart must not allow it.
pub async fn forbidden_requests(client: &Client, ns: &str) -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::new();
    let deployments = dynamic(client, "apps/v1", "Deployment", Some(ns)).await;
    out.push((
        "delete a Deployment".to_string(),
        deployments
            .delete("podinfo", &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    out.push((
        "list Pods".to_string(),
        pods.list(&ListParams::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    ));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "rbac-probe"}})).expect("a Namespace");
    out.push((
        "create a Namespace".to_string(),
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    ));
    let canaries = dynamic(client, "sluice.dev/v1alpha1", "Canary", Some(ns)).await;
    out.push((
        "delete a Canary".to_string(),
        canaries
            .delete("podinfo", &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    ));
    let other_leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    out.push((
        "read Leases in another namespace".to_string(),
        other_leases
            .list(&ListParams::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    ));
    out
}

async fn dynamic(
    client: &Client,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    // Discovery with the admin's client: the ServiceAccount may not be allowed to read it all.
    let admin = shared()
        .plane
        .client()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (resource, _) = kube::discovery::pinned_kind(&admin, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discovery of {kind}: {e}"));
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// A bad example for each CEL rule of the CRD.
pub struct CelCase {
    pub name: &'static str,
    pub analysis: Value,
    pub message: &'static str,
}

pub fn cel_cases() -> Vec<CelCase> {
    let metric = |m: Value| json!({"interval": "1m", "iterations": 3, "metrics": [m]});
    vec![
        CelCase {
            name: "mirror",
            analysis: json!({"interval": "1m", "stepWeight": 10, "maxWeight": 50, "mirror": true}),
            message: "mirror is for blue/green: set iterations and no match",
        },
        CelCase {
            name: "mirrorWeight",
            analysis: json!({"interval": "1m", "iterations": 3, "mirror": true, "mirrorWeight": 0}),
            message: "mirrorWeight must be from 1 to 100",
        },
        CelCase {
            name: "no schedule",
            analysis: json!({"interval": "1m", "stepWeight": 10}),
            message: "no schedule: set stepWeight and maxWeight (canary), stepWeights, or iterations (A/B, blue/green)",
        },
        CelCase {
            name: "alpha",
            analysis: json!({"interval": "1m", "iterations": 3, "alpha": 0.9}),
            message: "alpha must be above 0 and at most 0.5; 0.01 accepts a 1% false-rollback rate",
        },
        CelCase {
            name: "stepWeights",
            analysis: json!({"interval": "1m", "stepWeights": [10, 200]}),
            message: "stepWeights must each be from 1 to 100",
        },
        CelCase {
            name: "maxWeight",
            analysis: json!({"interval": "1m", "stepWeight": 10, "maxWeight": 101}),
            message: "maxWeight must be from 1 to 100",
        },
        CelCase {
            name: "threshold",
            analysis: json!({"interval": "1m", "iterations": 3, "threshold": 0}),
            message: "threshold must be at least 1",
        },
        CelCase {
            name: "neither guardrail nor comparison",
            analysis: metric(json!({"name": "m", "templateRef": {"name": "t"}})),
            message: "a metric needs thresholdRange (a guardrail) or comparison (canary against primary), not both",
        },
        CelCase {
            name: "no templateRef",
            analysis: metric(json!({"name": "m", "thresholdRange": {"min": 1}})),
            message: "templateRef is required: sluice has no built-in queries",
        },
        CelCase {
            name: "errorRate without requests",
            analysis: metric(json!({"name": "m", "templateRef": {"name": "t"},
                "comparison": {"type": "errorRate"}})),
            message: "type errorRate needs requestsTemplateRef, the template that counts all requests of an arm",
        },
        CelCase {
            name: "latency with requests",
            analysis: metric(json!({"name": "m", "templateRef": {"name": "t"},
                "comparison": {"type": "latency", "requestsTemplateRef": {"name": "r"}}})),
            message: "requestsTemplateRef applies to type errorRate only",
        },
        CelCase {
            name: "maxRegression",
            analysis: metric(json!({"name": "m", "templateRef": {"name": "t"},
                "comparison": {"type": "latency", "maxRegression": 1.0}})),
            message: "maxRegression must be above 1 and at most 100: 1 or less can never be ruled out",
        },
        CelCase {
            name: "tolerance",
            analysis: metric(json!({"name": "m", "templateRef": {"name": "t"},
                "comparison": {"type": "latency", "tolerance": 0.6}})),
            message: "tolerance must be from 0 to 0.5: an absolute rate, 0.001 accepts a canary up to 0.1 percentage points worse",
        },
        CelCase {
            name: "thresholdRange",
            analysis: metric(json!({"name": "m", "templateRef": {"name": "t"},
                "thresholdRange": {"min": 5, "max": 1}})),
            message: "thresholdRange min must not be above max",
        },
        CelCase {
            name: "metric interval",
            analysis: metric(json!({"name": "m", "templateRef": {"name": "t"},
                "thresholdRange": {"min": 1}, "interval": "500ms"})),
            message: "interval must be whole seconds from 1s to 24h",
        },
        CelCase {
            name: "analysis interval",
            analysis: json!({"interval": "1500ms", "iterations": 3}),
            message: "interval must be whole seconds from 1s to 24h",
        },
        CelCase {
            name: "checkInterval",
            analysis: json!({"interval": "1m", "checkInterval": "500ms", "iterations": 3}),
            message: "checkInterval must be whole seconds from 1s to 24h; e.g. 15s",
        },
        CelCase {
            name: "stepWeight",
            analysis: json!({"interval": "1m", "stepWeight": 0, "maxWeight": 50}),
            message: "stepWeight must be from 1 to 100",
        },
        CelCase {
            name: "stepWeight above maxWeight",
            analysis: json!({"interval": "1m", "stepWeight": 60, "maxWeight": 50}),
            message: "stepWeight must not be above maxWeight: the first step would pass the cap",
        },
        CelCase {
            name: "stepWeightPromotion",
            analysis: json!({"interval": "1m", "iterations": 3, "stepWeightPromotion": 0}),
            message: "stepWeightPromotion must be from 1 to 100",
        },
        CelCase {
            name: "minEffect",
            analysis: json!({"interval": "1m", "iterations": 3, "minEffect": 3.0}),
            message: "minEffect must be from 0 to 1; 0.2 tolerates a canary 20% worse than the primary",
        },
        CelCase {
            name: "minSamplePerArm",
            analysis: json!({"interval": "1m", "iterations": 3, "minSamplePerArm": 2000000000u64}),
            message: "minSamplePerArm must be at most 1000000000, or no release would ever promote",
        },
        CelCase {
            name: "quantile",
            analysis: metric(json!({"name": "m", "templateRef": {"name": "t"},
                "comparison": {"type": "latency", "quantile": 0.3}})),
            message: "quantile applies to type latency and must be above 0.5 and below 1",
        },
    ]
}

/// The message of every CEL rule in crds/sluice.yaml.
pub fn crd_rule_messages() -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                    for rule in rules {
                        if let Some(m) = rule.get("message").and_then(Value::as_str) {
                            out.push(m.to_string());
                        }
                    }
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(root().join("crds/sluice.yaml")).expect("crds/sluice.yaml");
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(document).expect("YAML");
        walk(&value, &mut out);
    }
    assert!(!out.is_empty(), "no CEL rules found in crds/sluice.yaml");
    out
}

/// A `sluice controller` process running as the chart's ServiceAccount in one namespace,
/// killed (SIGKILL) when dropped.
pub struct Controller {
    child: Child,
    pub log: PathBuf,
    /// Where it serves `/metrics` (and its health endpoints): `127.0.0.1:PORT`.
    pub metrics: String,
}

impl Controller {
    pub async fn start(
        ns: &TestNamespace,
        prometheus: &str,
        identity: &str,
        leader_election: bool,
    ) -> Self {
        Self::start_with(ns, prometheus, identity, leader_election, &[]).await
    }

    /// As `start`, with more flags (`--watch-label-selector`, `--lease-name`, ...).
    pub async fn start_with(
        ns: &TestNamespace,
        prometheus: &str,
        identity: &str,
        leader_election: bool,
        extra: &[&str],
    ) -> Self {
        let kubeconfig = ns.controller_kubeconfig().await;
        let log = ns.dir.path().join(format!("controller-{identity}.log"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let metrics = format!("127.0.0.1:{port}");
        let child = Command::new(SLUICE)
            .arg("controller")
            .args(["--metrics-address", &metrics])
            .args(["--prometheus-address", prometheus])
            .args(["--watch-namespace", &ns.name])
            .args(["--lease-namespace", &ns.name])
            .args(["--identity", identity])
            .args([
                "--leader-election",
                if leader_election { "true" } else { "false" },
            ])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("SLUICE_LOG", "info")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("log"),
            )
            .spawn()
            .expect("sluice controller starts");
        Self {
            child,
            log,
            metrics,
        }
    }

    /// SIGKILL, as a node failure or an OOM kill would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use sluice_demo::gateway::read_weights as read_route_weights;

/// The `sluice` binary installed as the kubectl plugin `kubectl-sluice` (a link of that name
/// on the PATH, as a package or krew installs it), run as a user would: `kubectl sluice ...`
/// through the real kubectl, with the administrator's kubeconfig and `-n NAMESPACE`.
pub struct Plugin {
    kubectl: PathBuf,
    path: std::ffi::OsString,
    kubeconfig: PathBuf,
    namespace: String,
}

/// What one plugin command did.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Longest a plugin command other than `watch` or `status --wait` may take.
const PLUGIN_LIMIT: Duration = Duration::from_secs(30);

impl Plugin {
    pub fn install(ns: &TestNamespace) -> Self {
        let dir = ns.dir.path().join("bin");
        std::fs::create_dir_all(&dir).expect("bin dir");
        let bin = dir.join("kubectl-sluice");
        if !bin.exists() {
            std::os::unix::fs::symlink(SLUICE, &bin).expect("kubectl-sluice link");
        }
        let mut path = vec![dir];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        Self {
            // kubectl and helm come from the same tools folder (e2e/cluster/tools.sh).
            kubectl: shared().helm.with_file_name("kubectl"),
            path: std::env::join_paths(path).expect("PATH"),
            kubeconfig: shared().plane.kubeconfig.clone(),
            namespace: ns.name.clone(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.kubectl);
        command
            .arg("sluice")
            .args(args)
            .env("PATH", &self.path)
            .args(["-n", &self.namespace])
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("SLUICE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `kubectl sluice ARGS -n NAMESPACE` to its end, within `limit`.
    pub async fn run_within(&self, limit: Duration, args: &[&str]) -> Ran {
        let child = self.command(args).spawn().expect("kubectl-sluice starts");
        let output = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl sluice {args:?} did not end within {limit:?}"))
            .expect("kubectl-sluice output");
        let ran = Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!(
            "$ kubectl sluice {} -n {}   # exit {}\n{}{}",
            args.join(" "),
            self.namespace,
            ran.code,
            ran.stdout,
            ran.stderr
        );
        ran
    }

    pub async fn run(&self, args: &[&str]) -> Ran {
        self.run_within(PLUGIN_LIMIT, args).await
    }

    /// Starts a long-running command (`watch`); killed when dropped.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.command(args).spawn().expect("kubectl-sluice starts")
    }
}

/// A release of the demo's Canary in a test namespace: the apps, router, load and Prometheus
/// of the demo's stage, the gateway that feeds the router from the HTTPRoute, the templates,
/// the target Deployment and the Canary.
pub struct Release {
    pub ns: TestNamespace,
    pub stage: Stage,
    pub gateway: Gateway,
}

const TARGET: &str = "podinfo";

impl Release {
    pub async fn start(test: &str, scenario: Scenario) -> Self {
        Self::start_in(TestNamespace::new(test).await, scenario, false, &|_| {}).await
    }

    /// As `start`, with the Canary changed by `edit` before it is applied (another provider).
    pub async fn start_edited(test: &str, scenario: Scenario, edit: &dyn Fn(&mut Value)) -> Self {
        Self::start_in(TestNamespace::new(test).await, scenario, false, edit).await
    }

    /// As `start`, with the control plane to itself (see `TestNamespace::alone`).
    pub async fn start_alone(test: &str, scenario: Scenario) -> Self {
        Self::start_in(TestNamespace::alone(test).await, scenario, false, &|_| {}).await
    }

    /// As `start`, with the target reading a ConfigMap (`podinfo-config`) that sluice tracks.
    pub async fn start_with_config(test: &str, scenario: Scenario) -> Self {
        Self::start_in(TestNamespace::new(test).await, scenario, true, &|_| {}).await
    }

    async fn start_in(
        ns: TestNamespace,
        scenario: Scenario,
        with_config: bool,
        edit: &dyn Fn(&mut Value),
    ) -> Self {
        let config = StageConfig {
            sluice: PathBuf::from(SLUICE),
            prometheus: sluice_demo::prometheus::find_binary().unwrap_or_else(|e| panic!("{e}")),
            dir: ns.dir.path().join("stage"),
            namespace: ns.name.clone(),
            target: TARGET.into(),
            primary: Scenario::primary_app(),
            canary: scenario.canary_app(),
            rate: 100.0,
            max_duration: Duration::from_secs(600),
            discover_pods: true,
        };
        let stage = Stage::start(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let templates = std::fs::read_to_string(root().join("metrics-templates/app.yaml"))
            .expect("metrics-templates/app.yaml")
            .replace("http://prometheus.monitoring:9090", &stage.prometheus.url());
        plane::apply_yaml(&ns.client, &templates, Some(&ns.name))
            .await
            .unwrap_or_else(|e| panic!("templates: {e}"));
        let text =
            std::fs::read_to_string(root().join("e2e/canary.yaml")).expect("e2e/canary.yaml");
        let mut canary: Value = serde_yaml_ng::from_str(&text).expect("YAML");
        canary["metadata"]["namespace"] = json!(ns.name);
        // Long enough for a kwok pod to be scraped under its name; the demo's 60 s is enough.
        canary["spec"]["progressDeadlineSeconds"] = json!(120);
        edit(&mut canary);
        let typed: sluice_core::api::Canary =
            serde_json::from_value(canary.clone()).expect("a Canary");
        let (primary_app, canary_app) = stage.apps();
        let gateway = Gateway::start(GatewayConfig {
            client: ns.client.clone(),
            canary: typed,
            router: stage.router.clone(),
            primary_app,
            canary_app,
            targets_file: stage.prometheus.discovery_file(),
        });
        if with_config {
            ns.apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "podinfo-config"}, "data": {"color": "blue"}}))
                .await;
        }
        ns.apply(deployment("podinfo:1.0.0", with_config)).await;
        ns.apply(canary).await;
        Self { ns, stage, gateway }
    }

    pub fn prometheus_url(&self) -> String {
        self.stage.prometheus.url()
    }

    pub async fn canary(&self) -> Value {
        self.ns.get("sluice.dev/v1alpha1", "Canary", TARGET).await
    }

    pub async fn status(&self) -> Value {
        self.canary().await["status"].clone()
    }

    pub async fn phase(&self) -> String {
        self.status().await["phase"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub async fn route_weights(&self) -> Option<(u32, u32)> {
        let route = self
            .ns
            .get_opt("gateway.networking.k8s.io/v1", "HTTPRoute", TARGET)
            .await?;
        read_route_weights(&route)
    }

    /// Waits until the Canary's status satisfies `done`.
    pub async fn wait_status(&self, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let status = self.status().await;
            if done(&status) {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the Canary's status did not get there within {limit:?}:\n{}",
                self.describe().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for the Canary to be Initialized with a ready primary.
    pub async fn wait_initialized(&self) {
        self.wait_status(Duration::from_secs(120), |s| s["phase"] == "Initialized")
            .await;
        let started = Instant::now();
        loop {
            let primary = self
                .ns
                .get_opt("apps/v1", "Deployment", "podinfo-primary")
                .await;
            if primary.is_some_and(|p| p["status"]["availableReplicas"] == 1) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the primary is not ready"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A new revision: the target's image changes, as a user's `kubectl set image` does.
    pub async fn new_image(&self, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "podinfo", "image": image}]}}}});
        self.ns
            .api("apps/v1", "Deployment")
            .await
            .patch(TARGET, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Follows the HTTPRoute's canary weight, as the gateway's watch of it applied each change,
    /// from the current one until `stop` says so; repeats left out.
    async fn follow(&self, limit: Duration, stop: impl Fn(&[u32], &str) -> bool) -> Vec<u32> {
        let started = Instant::now();
        let seen = self.gateway.applied().len().saturating_sub(1);
        loop {
            // The gateway's watch sees every change of the HTTPRoute, however short-lived.
            let weights: Vec<u32> = self.gateway.applied()[seen..]
                .iter()
                .map(|c| c.routes.canary)
                .collect();
            let phase = self.phase().await;
            if stop(&weights, &phase) {
                return weights;
            }
            assert!(
                started.elapsed() < limit,
                "no end within {limit:?}; weights so far {weights:?}\n{}",
                self.describe().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every canary weight the gateway applied from the HTTPRoute, oldest first.
    pub fn weights(&self) -> Vec<u32> {
        self.gateway
            .applied()
            .iter()
            .map(|c| c.routes.canary)
            .collect()
    }

    /// Follows the release until it has a verdict and the route is back on the primary.
    pub async fn follow_until_done(&self, limit: Duration) -> Vec<u32> {
        self.follow(limit, |weights, phase| {
            matches!(phase, "Succeeded" | "Failed")
                && weights.last() == Some(&0)
                && weights.len() > 1
        })
        .await
    }

    pub async fn follow_until_weight(&self, weight: u32, limit: Duration) -> Vec<u32> {
        self.follow(limit, |weights, _| weights.last() == Some(&weight))
            .await
    }

    pub async fn lease_holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.ns.client.clone(), &self.ns.name);
        leases
            .get_opt("sluice-leader")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    pub async fn wait_for_leader(&self, identity: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(holder) = self.lease_holder().await
                && holder == identity
            {
                return holder;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{identity} does not lead: {:?}",
                self.lease_holder().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The notes of the Events recorded on the Canary, oldest first.
    pub async fn event_notes(&self) -> Vec<String> {
        let events = self.ns.api("events.k8s.io/v1", "Event").await;
        let mut list: Vec<(String, String)> = events
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items
            .into_iter()
            .filter(|e| e.data["regarding"]["kind"] == "Canary")
            .map(|e| {
                (
                    e.data["eventTime"].as_str().unwrap_or("").to_string(),
                    e.data["note"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        list.sort();
        list.into_iter().map(|(_, note)| note).collect()
    }

    /// Edits the Canary `times` times, as `kubectl edit` does: read, change, write back with
    /// the resourceVersion read; on a conflict, read again. Returns the conflicts met.
    pub async fn edit_canary_repeatedly(&self, times: u32) -> u32 {
        let api = self.ns.api("sluice.dev/v1alpha1", "Canary").await;
        let mut conflicts = 0;
        // The first edit is made on a copy read before the controller's next status write, as a
        // slow `kubectl edit` would: the API server must refuse it (409) and the retry succeed.
        let mut stale = Some(api.get(TARGET).await.unwrap_or_else(|e| panic!("{e}")));
        let read_version = stale.as_ref().and_then(|c| c.resource_version());
        let started = Instant::now();
        while api
            .get(TARGET)
            .await
            .ok()
            .and_then(|c| c.resource_version())
            == read_version
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the controller wrote nothing"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for i in 1..=times {
            loop {
                let mut canary = match stale.take() {
                    Some(old) => old,
                    None => api.get(TARGET).await.unwrap_or_else(|e| panic!("{e}")),
                };
                canary
                    .annotations_mut()
                    .insert("example.com/edit".into(), i.to_string());
                canary.data["spec"]["analysis"]["threshold"] = json!(5 + i);
                match api.replace(TARGET, &PostParams::default(), &canary).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(status)) if status.code == 409 => conflicts += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        conflicts
    }

    /// The Canary's status, its Events and the end of the controllers' logs, for a failure.
    pub async fn describe(&self) -> String {
        let status = self
            .ns
            .get_opt("sluice.dev/v1alpha1", "Canary", TARGET)
            .await
            .map(|c| serde_json::to_string_pretty(&c["status"]).unwrap_or_default())
            .unwrap_or_else(|| "no Canary".into());
        let mut out = format!("status: {status}\nevents:\n");
        for note in self.event_notes().await {
            out.push_str(&format!("  {note}\n"));
        }
        if let Ok(entries) = std::fs::read_dir(self.ns.dir.path()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    out.push_str(&format!("--- {} (last lines)\n", path.display()));
                    for line in &lines[lines.len().saturating_sub(25)..] {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    pub async fn stop(self) {
        let Release { ns, stage, gateway } = self;
        drop(gateway);
        stage.stop().await;
        drop(ns);
    }
}

pub fn deployment(image: &str, with_config: bool) -> Value {
    let mut container = json!({"name": "podinfo", "image": image,
        "ports": [{"containerPort": 9898, "name": "http"}]});
    if with_config {
        container["envFrom"] = json!([{"configMapRef": {"name": "podinfo-config"}}]);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": TARGET, "labels": {"app": TARGET}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": TARGET}},
            "template": {
                "metadata": {"labels": {"app": TARGET}},
                "spec": {"containers": [container]}
            }
        }
    })
}

/// A JSON value as a Lua table constructor, the way Argo CD hands a resource to a health script.
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // Rust's escapes (\n, \", \\, \u{..}) are Lua 5.4's.
        Value::String(text) => format!("{text:?}"),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("[{key:?}] = {}", lua(value)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// What `docs/argocd-health.lua` says of `object` (a Canary as the API server returns it), run
/// by a real Lua 5.4 as Argo CD runs it: (status, message).
pub fn argocd_health(object: &Value) -> (String, String) {
    let script = root().join("docs/argocd-health.lua");
    let program = format!(
        "obj = {}\nlocal hs = dofile({:?})\nprint(hs.status)\nprint(hs.message)",
        lua(object),
        script.display().to_string()
    );
    let output = Command::new("lua5.4")
        .args(["-e", &program])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("lua5.4 (Debian's package lua5.4, installed by .ci/run): {e}"));
    assert!(
        output.status.success(),
        "the health script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    let status = lines.next().unwrap_or_default().to_string();
    (status, lines.collect::<Vec<_>>().join("\n"))
}

/// The kstatus program's path: built by `e2e/cluster/build.sh` (so by `.ci/run` beside the Rust
/// build), or here, once, on a cluster named by SLUICE_TEST_KUBECONFIG, where build.sh does not run.
fn kstatus_program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let script = root().join("e2e/cluster/kstatus.sh");
        PathBuf::from(run(Command::new("bash").arg(script)).trim())
    })
}

/// What kstatus (`sigs.k8s.io/cli-utils`, the rules of Flux's `wait: true` and health checks)
/// computes for `object` (a Canary as the API server returns it): (status, message), status one
/// of InProgress, Current, Failed, Terminating, Unknown.
pub fn kstatus(object: &Value) -> (String, String) {
    let mut child = Command::new(kstatus_program())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", kstatus_program().display()));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("kstatus's stdin");
        writeln!(stdin, "{object}").expect("writing to kstatus");
    }
    let output = child.wait_with_output().expect("kstatus");
    assert!(
        output.status.success(),
        "kstatus failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, message) = text
        .trim_end_matches('\n')
        .split_once('\t')
        .unwrap_or_else(|| panic!("kstatus printed {text:?}"));
    (status.to_string(), message.to_string())
}
