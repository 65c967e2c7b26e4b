//! The kinds of object sluice reads or writes, with their REST names. The API-server adapter
//! resolves objects from this table (no discovery round trip; a typo in a kind is an error, not a
//! 404 from a guessed URL), the in-memory cluster refuses what is not in it just as a real one
//! would, and a test holds the chart's ClusterRole to it.

use super::ObjectRef;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// The REST resource name, as RBAC rules spell it.
    pub plural: &'static str,
}

impl Resource {
    pub const fn new(api_version: &'static str, kind: &'static str, plural: &'static str) -> Self {
        Self {
            api_version,
            kind,
            plural,
        }
    }

    /// The API group, `""` for the core group, as RBAC rules spell it.
    pub fn group(&self) -> &'static str {
        self.api_version
            .split_once('/')
            .map_or("", |(group, _)| group)
    }

    pub fn version(&self) -> &'static str {
        self.api_version
            .split_once('/')
            .map_or(self.api_version, |(_, version)| version)
    }

    pub fn matches(&self, object: &ObjectRef) -> bool {
        self.api_version == object.api_version && self.kind == object.kind
    }
}

/// What the controller touches whatever the router: the resources users write, the target and
/// its primary copy, the Services, the primary's copied ConfigMaps and Secrets, MetricTemplate
/// credentials, the autoscaler (copied with the apiVersion the Canary's `autoscalerRef` names,
/// so both served versions), AlertProviders (and their Secrets). The routers add theirs
/// (`crate::router::managed_resources`).
pub const CORE: [Resource; 9] = [
    Resource::new("apps/v1", "Deployment", "deployments"),
    Resource::new("v1", "Service", "services"),
    Resource::new("v1", "ConfigMap", "configmaps"),
    Resource::new("v1", "Secret", "secrets"),
    Resource::new(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    Resource::new(
        "autoscaling/v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    Resource::new("sluice.dev/v1alpha1", "Canary", "canaries"),
    Resource::new("sluice.dev/v1alpha1", "MetricTemplate", "metrictemplates"),
    Resource::new("sluice.dev/v1alpha1", "AlertProvider", "alertproviders"),
];

/// The resource of `object` among `known`, or an error that lists what sluice manages.
pub fn resolve(known: &[Resource], object: &ObjectRef) -> Result<Resource, super::ClusterError> {
    known
        .iter()
        .find(|resource| resource.matches(object))
        .copied()
        .ok_or_else(|| {
            let names: Vec<String> = known
                .iter()
                .map(|r| format!("{} ({})", r.kind, r.api_version))
                .collect();
            super::ClusterError::Invalid {
                object: object.to_string(),
                message: format!(
                    "sluice does not manage {} objects of apiVersion {:?}; it knows {}",
                    object.kind,
                    object.api_version,
                    names.join(", ")
                ),
                source: None,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_versions_split_as_rbac_spells_them() {
        let service = Resource::new("v1", "Service", "services");
        assert_eq!((service.group(), service.version()), ("", "v1"));
        let route = Resource::new("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes");
        assert_eq!(
            (route.group(), route.version()),
            ("gateway.networking.k8s.io", "v1")
        );
    }

    #[test]
    fn an_unknown_kind_is_refused_with_the_known_ones() {
        let object = ObjectRef::new("v1", "Pod", "default", "a");
        let err = resolve(&CORE, &object).unwrap_err().to_string();
        assert!(err.contains("does not manage Pod objects"), "{err}");
        assert!(err.contains("Deployment (apps/v1)"), "{err}");
    }
}
