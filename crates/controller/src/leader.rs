//! Leader election with a coordination.k8s.io Lease: one replica reconciles, the others wait and
//! take over when its lease expires.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

/// What a replica should do with the lease it sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// No lease yet: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder stopped renewing it (or gave it up): take it over.
    TakeOver,
    /// Someone else holds it: wait.
    Follow { holder: String, expires_in: i64 },
}

/// The part of a Lease that the decision needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseView {
    pub holder: Option<String>,
    /// Unix seconds.
    pub renewed_at: Option<i64>,
    pub duration_seconds: i64,
}

/// Decides, from the lease as it stands, what `me` should do at `now` (Unix seconds).
pub fn decide(lease: Option<&LeaseView>, me: &str, now: i64) -> LeaseAction {
    let Some(lease) = lease else {
        return LeaseAction::Create;
    };
    match lease.holder.as_deref() {
        Some(holder) if holder == me => LeaseAction::Renew,
        None | Some("") => LeaseAction::TakeOver,
        Some(holder) => {
            let expires = lease.renewed_at.unwrap_or(0) + lease.duration_seconds;
            if now >= expires {
                LeaseAction::TakeOver
            } else {
                LeaseAction::Follow {
                    holder: holder.to_string(),
                    expires_in: expires - now,
                }
            }
        }
    }
}

fn view(lease: &Lease) -> LeaseView {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseView {
        holder: spec.holder_identity,
        renewed_at: spec.renew_time.map(|t| t.0.as_second()),
        duration_seconds: i64::from(spec.lease_duration_seconds.unwrap_or(15)),
    }
}

fn micro_time(unix: i64) -> Option<MicroTime> {
    k8s_openapi::jiff::Timestamp::from_second(unix)
        .ok()
        .map(MicroTime)
}

#[derive(Debug, thiserror::Error)]
#[error("leader election with Lease {namespace}/{name}: {source}")]
pub struct LeaseError {
    namespace: String,
    name: String,
    source: kube::Error,
}

#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    pub duration_seconds: i64,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration_seconds: i64,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration_seconds,
        }
    }

    fn error(&self, source: kube::Error) -> LeaseError {
        LeaseError {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// Tries to hold the lease at `now`; true while we lead. Writes carry the lease's
    /// resourceVersion, so of two replicas racing for it exactly one wins.
    pub async fn try_lead(&self, now: i64) -> Result<bool, LeaseError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error(e))?;
        let action = decide(current.as_ref().map(view).as_ref(), &self.identity, now);
        let mut spec = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        match action {
            LeaseAction::Follow { holder, expires_in } => {
                tracing::debug!(%holder, expires_in, "standing by");
                return Ok(false);
            }
            LeaseAction::Renew => {
                spec.renew_time = micro_time(now);
            }
            LeaseAction::Create | LeaseAction::TakeOver => {
                spec = LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: i32::try_from(self.duration_seconds).ok(),
                    acquire_time: micro_time(now),
                    renew_time: micro_time(now),
                    lease_transitions: Some(
                        spec.lease_transitions.unwrap_or(0)
                            + i32::from(action == LeaseAction::TakeOver),
                    ),
                    ..LeaseSpec::default()
                };
                tracing::info!(identity = %self.identity, ?action, "taking the leader lease");
            }
        }
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: current
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        let written = match current {
            None => self.api.create(&PostParams::default(), &lease).await,
            Some(_) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(true),
            // Another replica wrote first: it leads, we follow.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Gives the lease up on shutdown, so that a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "could not release the leader lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_at: i64) -> LeaseView {
        LeaseView {
            holder: Some(holder.into()),
            renewed_at: Some(renewed_at),
            duration_seconds: 15,
        }
    }

    #[test]
    fn one_leads_the_others_follow_until_it_lapses() {
        assert_eq!(decide(None, "a", 100), LeaseAction::Create);
        assert_eq!(decide(Some(&lease("a", 100)), "a", 105), LeaseAction::Renew);
        assert_eq!(
            decide(Some(&lease("a", 100)), "b", 105),
            LeaseAction::Follow {
                holder: "a".into(),
                expires_in: 10
            }
        );
        assert_eq!(
            decide(Some(&lease("a", 100)), "b", 115),
            LeaseAction::TakeOver
        );
        let released = LeaseView {
            holder: None,
            ..lease("a", 100)
        };
        assert_eq!(decide(Some(&released), "b", 101), LeaseAction::TakeOver);
    }
}
