//! The routers a Canary can name in `spec.provider`, as Flagger spells them. The list is part of
//! the API: the CRD's schema enumerates it, so the API server refuses an unknown provider with the
//! field's name and the known values, before sluice sees the object.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// Adding a router is a variant here and a line in the controller's router registry
// (`sluice_controller::router::registration`), which the compiler then asks for.
/// The router that shifts traffic (Flagger's `provider`): Gateway API backend weights
/// (`gatewayapi`, `gatewayapi:v1`), the apex Service's selector (`kubernetes`), an NGINX
/// ingress canary (`nginx`), an Istio VirtualService (`istio`), a mesh HTTPRoute on the apex
/// Service (`gamma`) or an SMI TrafficSplit (`smi:v1alpha2`, `linkerd`). A Canary without one
/// gets the controller's `--router`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum RouterKind {
    /// Gateway API HTTPRoute backend weights.
    #[serde(rename = "gatewayapi")]
    GatewayApi,
    /// The same router under the spelling Flagger gives the v1 API.
    #[serde(rename = "gatewayapi:v1")]
    GatewayApiV1,
    /// Blue/green by the apex Service's selector, without a mesh.
    #[serde(rename = "kubernetes")]
    Kubernetes,
    /// ingress-nginx: a `-canary` Ingress beside the user's (`ingressRef`) with canary weight
    /// and header or cookie annotations.
    #[serde(rename = "nginx")]
    Nginx,
    /// Istio: a VirtualService weighting the primary and canary hosts, with DestinationRules.
    #[serde(rename = "istio")]
    Istio,
    /// Gateway API for service meshes (GAMMA: Linkerd, Istio ambient, Cilium): an HTTPRoute
    /// whose parent is the apex Service, for traffic inside the mesh.
    #[serde(rename = "gamma")]
    Gamma,
    /// An SMI TrafficSplit (`split.smi-spec.io/v1alpha2`), for Linkerd's SMI extension.
    #[serde(rename = "smi:v1alpha2")]
    Smi,
    /// The same SMI router under Flagger's name for Linkerd.
    #[serde(rename = "linkerd")]
    Linkerd,
}

impl RouterKind {
    pub const ALL: [RouterKind; 8] = [
        Self::GatewayApi,
        Self::GatewayApiV1,
        Self::Kubernetes,
        Self::Nginx,
        Self::Istio,
        Self::Gamma,
        Self::Smi,
        Self::Linkerd,
    ];

    /// The name users write, in `spec.provider` and `--router`.
    pub fn name(self) -> &'static str {
        match self {
            Self::GatewayApi => "gatewayapi",
            Self::GatewayApiV1 => "gatewayapi:v1",
            Self::Kubernetes => "kubernetes",
            Self::Nginx => "nginx",
            Self::Istio => "istio",
            Self::Gamma => "gamma",
            Self::Smi => "smi:v1alpha2",
            Self::Linkerd => "linkerd",
        }
    }

    /// Every name, for help texts and errors.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|kind| kind.name()).collect()
    }
}

impl fmt::Display for RouterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unknown router provider {given:?}; known providers: {known}")]
pub struct UnknownRouter {
    pub given: String,
    pub known: String,
}

impl FromStr for RouterKind {
    type Err = UnknownRouter;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| UnknownRouter {
                given: text.to_string(),
                known: Self::names().join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for kind in RouterKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("{:?}", kind.name()));
            assert_eq!(serde_json::from_str::<RouterKind>(&json).unwrap(), kind);
            assert_eq!(kind.name().parse::<RouterKind>().unwrap(), kind);
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = "istio-ish".parse::<RouterKind>().unwrap_err().to_string();
        assert!(err.contains("\"istio-ish\""), "{err}");
        assert!(
            err.contains(
                "gatewayapi, gatewayapi:v1, kubernetes, nginx, istio, gamma, smi:v1alpha2, linkerd"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_schema_enumerates_every_name() {
        let schema = serde_json::to_value(schemars::schema_for!(RouterKind)).unwrap();
        let text = schema.to_string();
        for name in RouterKind::names() {
            assert!(
                text.contains(&format!("\"{name}\"")),
                "{name} missing from {text}"
            );
        }
    }
}
