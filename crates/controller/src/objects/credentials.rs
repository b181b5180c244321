//! The namespace and the Secret: who may run here (the restricted Pod Security Standard) and the credentials,
//! generated once and never rotated.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::Rng;
use rand::distr::Alphanumeric;

use super::*;

/// What goes into the Secret.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// Real values, stored as `data`.
    Values(BTreeMap<String, ByteString>),
    /// Marked placeholders for the checked-in YAML, stored as `stringData` so a reader sees what to change.
    Placeholders,
}

impl Credentials {
    /// Keeps every value an existing Secret already has and generates only the missing ones, so a re-apply
    /// never rotates a password a running PostgreSQL was initialised with. Returns the keys it generated.
    pub fn reuse_or_generate(existing: Option<&Secret>) -> (Credentials, Vec<&'static str>) {
        Self::reuse_or_generate_with(existing, generate_secret_value)
    }

    /// [`Credentials::reuse_or_generate`] with the generator supplied.
    pub fn reuse_or_generate_with(
        existing: Option<&Secret>,
        mut generate: impl FnMut() -> String,
    ) -> (Credentials, Vec<&'static str>) {
        let data = existing.and_then(|s| s.data.as_ref());
        let mut values = BTreeMap::new();
        let mut generated = Vec::new();
        for key in secret_keys::ALL {
            match data.and_then(|d| d.get(key)).filter(|v| !v.0.is_empty()) {
                Some(value) => {
                    values.insert(key.to_owned(), value.clone());
                }
                None => {
                    values.insert(key.to_owned(), ByteString(generate().into_bytes()));
                    generated.push(key);
                }
            }
        }
        (Credentials::Values(values), generated)
    }
}

/// 32 random alphanumeric characters.
pub fn generate_secret_value() -> String {
    rand::rng().sample_iter(&Alphanumeric).take(GENERATED_LEN).map(char::from).collect()
}

/// The placeholder `render` writes for a Secret key.
pub fn placeholder(key: &str) -> String {
    format!("CHANGE-ME-{key}")
}

pub fn namespace(s: &Settings) -> Namespace {
    let mut labels = BTreeMap::from([
        (LABEL_PART_OF.to_owned(), names::PART_OF.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), names::FIELD_MANAGER.to_owned()),
    ]);
    // Every pod here meets the "restricted" Pod Security Standard; let the cluster hold us to it.
    labels.insert("pod-security.kubernetes.io/enforce".into(), "restricted".into());
    labels.insert("pod-security.kubernetes.io/warn".into(), "restricted".into());
    Namespace {
        metadata: ObjectMeta { name: Some(s.namespace.clone()), labels: Some(labels), ..ObjectMeta::default() },
        ..Namespace::default()
    }
}

pub fn secret(s: &Settings, credentials: &Credentials) -> Secret {
    let mut metadata = meta(s, names::SECRET, labels(names::PART_OF, "credentials"));
    let mut secret = Secret { type_: Some("Opaque".into()), ..Secret::default() };
    match credentials {
        Credentials::Values(values) => {
            let ours = values.iter().filter(|(k, _)| secret_keys::ALL.contains(&k.as_str()));
            secret.data = Some(ours.map(|(k, v)| (k.clone(), v.clone())).collect());
        }
        Credentials::Placeholders => {
            metadata.annotations = Some(BTreeMap::from([(
                NOTICE_ANNOTATION.to_owned(),
                "placeholder values: replace every CHANGE-ME value (alphanumeric only) before applying".to_owned(),
            )]));
            secret.string_data = Some(secret_keys::ALL.iter().map(|k| (k.to_string(), placeholder(k))).collect());
        }
    }
    secret.metadata = metadata;
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_visible_and_marked() {
        let secret = secret(&Settings::default(), &Credentials::Placeholders);
        assert!(secret.data.is_none());
        let data = secret.string_data.unwrap();
        assert_eq!(data["postgres-password"], "CHANGE-ME-postgres-password");
        assert_eq!(data.len(), 5);
        assert!(secret.metadata.annotations.unwrap()[NOTICE_ANNOTATION].contains("CHANGE-ME"));
    }

    #[test]
    fn existing_values_are_kept_and_only_missing_keys_generated() {
        let existing = Secret {
            data: Some(BTreeMap::from([
                ("postgres-password".to_owned(), ByteString(b"keep-me".to_vec())),
                ("redis-password".to_owned(), ByteString(Vec::new())),
                ("unrelated".to_owned(), ByteString(b"x".to_vec())),
            ])),
            ..Secret::default()
        };
        let (creds, generated) = Credentials::reuse_or_generate_with(Some(&existing), || "fresh".into());
        assert_eq!(generated, ["redis-password", "admin-token", "app-db-password", "app-redis-password"]);
        let Credentials::Values(values) = &creds else { panic!("placeholders") };
        assert_eq!(values["postgres-password"].0, b"keep-me");
        assert_eq!(values["redis-password"].0, b"fresh");
        let built = secret(&Settings::default(), &creds).data.unwrap();
        assert_eq!(
            built.keys().collect::<Vec<_>>(),
            ["admin-token", "app-db-password", "app-redis-password", "postgres-password", "redis-password"]
        );
    }

    #[test]
    fn generated_values_are_long_and_url_safe() {
        let (creds, generated) = Credentials::reuse_or_generate(None);
        assert_eq!(generated.len(), 5);
        let Credentials::Values(values) = creds else { panic!("placeholders") };
        let all: Vec<_> = values.values().map(|v| String::from_utf8(v.0.clone()).unwrap()).collect();
        for v in &all {
            assert_eq!(v.len(), GENERATED_LEN);
            assert!(v.bytes().all(|b| b.is_ascii_alphanumeric()), "{v}");
        }
        assert!(all[0] != all[1] && all[1] != all[2]);
    }
}
