//! A provider's credentials, from the Secret its template's `spec.provider.secretRef` names:
//! `token` (bearer), or `username` and `password` (basic auth). The controller reads the Secret
//! from the cluster and `sluice analyse` from a manifest; both turn it into credentials here.

use k8s_openapi::api::core::v1::Secret;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    None,
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CredentialsError {
    #[error(
        "Secret {0:?} needs the key token (bearer) or the keys username and password (basic auth)"
    )]
    MissingKeys(String),
    #[error("Secret {secret:?}: the value of {key} is not UTF-8 text")]
    NotText { secret: String, key: String },
}

impl Credentials {
    /// The credentials in `secret`; `stringData` wins over `data` for the same key, as the API
    /// server merges them.
    pub fn from_secret(secret: &Secret) -> Result<Self, CredentialsError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let value = |key: &str| secret_text(secret, key);
        if let Some(token) = value("token")? {
            return Ok(Self::Bearer(token));
        }
        match (value("username")?, value("password")?) {
            (Some(username), Some(password)) => Ok(Self::Basic { username, password }),
            _ => Err(CredentialsError::MissingKeys(name)),
        }
    }
}

/// The text under `key` in `secret`, or `None` when it has no such key; `stringData` wins over
/// `data`, as the API server merges them.
pub fn secret_text(secret: &Secret, key: &str) -> Result<Option<String>, CredentialsError> {
    if let Some(text) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Ok(Some(text.clone()));
    }
    match secret.data.as_ref().and_then(|d| d.get(key)) {
        None => Ok(None),
        Some(bytes) => {
            String::from_utf8(bytes.0.clone())
                .map(Some)
                .map_err(|_| CredentialsError::NotText {
                    secret: secret.metadata.name.clone().unwrap_or_default(),
                    key: key.to_string(),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(yaml: &str) -> Secret {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn a_token_is_bearer_and_a_user_with_a_password_is_basic() {
        // "czNjcjN0" is base64 for "s3cr3t".
        let bearer = secret("metadata: {name: p}\ndata: {token: czNjcjN0}\n");
        assert_eq!(
            Credentials::from_secret(&bearer).unwrap(),
            Credentials::Bearer("s3cr3t".into())
        );
        let basic = secret("metadata: {name: p}\nstringData: {username: u, password: pw}\n");
        assert_eq!(
            Credentials::from_secret(&basic).unwrap(),
            Credentials::Basic {
                username: "u".into(),
                password: "pw".into()
            }
        );
    }

    #[test]
    fn string_data_wins_and_missing_keys_are_named() {
        let both =
            secret("metadata: {name: p}\ndata: {token: czNjcjN0}\nstringData: {token: new}\n");
        assert_eq!(
            Credentials::from_secret(&both).unwrap(),
            Credentials::Bearer("new".into())
        );
        let user_only = secret("metadata: {name: p}\nstringData: {username: u}\n");
        let err = Credentials::from_secret(&user_only)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Secret \"p\" needs the key token (bearer) or the keys username and password (basic auth)"
        );
    }
}
