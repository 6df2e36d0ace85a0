//! The `config.loaded` audit event: what the server started with, minus
//! every secret, so an auditor can tell which settings were in force when.
//!
//! Kept: the listener, the data folder, the models, the pool (its device
//! included), each API key's name and scopes (never its hash), which
//! settings were generated rather than given, the worker, limits and queue,
//! and the moderation and provenance sections as they stand (whatever
//! fields they have; the prompt rule list is counted, not copied, as it is
//! long and the policy's business).
//! Dropped: key hashes and the URL signing key (`[urls] signing_key` says
//! only whether one was configured).

use serde_json::{Value, json};

use crate::config::Config;

/// The audit event type.
pub const CONFIG_LOADED: &str = "config.loaded";

/// The event's `detail`: the effective configuration without secrets.
pub fn config_summary(config: &Config) -> Value {
    let keys: Vec<Value> = config
        .auth
        .api_keys
        .iter()
        .map(|k| json!({"name": k.name, "scopes": k.scopes, "project": k.project}))
        .collect();
    let mut summary = json!({
        "listen": config.server.listen.to_string(),
        "public_url": config.server.public_url,
        "body_limit_bytes": config.server.body_limit_bytes,
        "data_dir": config.data_dir.display().to_string(),
        "database": {
            "url": crate::storage::redact_password(&config.database.url_or_default(&config.data_dir)),
        },
        "storage": serde_json::to_value(&config.storage).unwrap_or(Value::Null),
        "models": config
            .models
            .iter()
            .map(|m| json!({"name": m.name, "path": m.path.display().to_string()}))
            .collect::<Vec<_>>(),
        "default_model": config.default_model_name(),
        "pool": {
            "memory_budget_mb": config.pool.memory_budget_mb,
            "preload": config.pool.preload,
            "load_wait_seconds": config.pool.load_wait_seconds,
            "device": config.pool.device,
            "precision": config.pool.precision,
        },
        "auth": {
            "api_keys": keys,
            "insecure_no_auth": config.auth.insecure_no_auth,
        },
        "urls": {
            "signing_key": if config.urls.signing_key.is_some() { "configured" } else { "generated" },
            "ttl_seconds": config.urls.ttl_seconds,
        },
        "worker": serde_json::to_value(&config.worker).unwrap_or(Value::Null),
        "limits": serde_json::to_value(&config.limits).unwrap_or(Value::Null),
        "tenancy": serde_json::to_value(&config.tenancy).unwrap_or(Value::Null),
        "rollouts": serde_json::to_value(&config.rollouts).unwrap_or(Value::Null),
        "review": serde_json::to_value(&config.review).unwrap_or(Value::Null),
        "drift": serde_json::to_value(&config.drift).unwrap_or(Value::Null),
        "batches": serde_json::to_value(&config.batches).unwrap_or(Value::Null),
        "queue": serde_json::to_value(&config.queue).unwrap_or(Value::Null),
    });
    // Sections added by later features, taken as serialized (a `Secret`
    // serializes as `***`), so they are audited without this file knowing
    // their fields.
    let full = serde_json::to_value(config).unwrap_or(Value::Null);
    for section in ["moderation", "provenance"] {
        if let Some(mut value) = full.get(section).cloned() {
            if let Some(prompt) = value.get_mut("prompt") {
                *prompt = count_rules(prompt);
            }
            summary[section] = value;
        }
    }
    summary
}

/// `{"blocked_terms": 12, ...}` for a section of rule lists.
fn count_rules(section: &Value) -> Value {
    match section.as_object() {
        Some(fields) => fields
            .iter()
            .map(|(k, v)| {
                let counted = v.as_array().map_or_else(|| v.clone(), |a| json!(a.len()));
                (k.clone(), counted)
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        None => section.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKeyEntry, Secret};
    use crate::keys::{KeyHash, Scope};

    #[test]
    fn the_summary_names_keys_and_scopes_but_holds_no_hash_or_signing_key() {
        let mut config = Config::default();
        let hash = KeyHash::blake3_of("easel_sk_secret");
        config.auth.api_keys = vec![ApiKeyEntry {
            name: "ops".into(),
            hash: hash.clone(),
            scopes: vec![Scope::Admin],
            project: easel_core::ProjectId::default_project(),
        }];
        config.urls.signing_key = Some(Secret::new("hmac-secret-value"));
        let summary = config_summary(&config);
        let text = summary.to_string();
        assert!(!text.contains(&hash.to_string()[7..]), "{text}");
        assert!(!text.contains("hmac-secret-value"), "{text}");
        assert!(!text.contains("easel_sk_secret"), "{text}");
        assert_eq!(
            summary["auth"]["api_keys"],
            json!([{"name": "ops", "scopes": ["admin"], "project": "default"}])
        );
        assert_eq!(summary["urls"]["signing_key"], "configured");
        assert_eq!(summary["data_dir"], "./easel-data");
        assert_eq!(summary["models"][0]["name"], "easel-emoji");
        assert_eq!(summary["pool"]["device"], "cpu");
    }

    #[test]
    fn rule_lists_are_counted() {
        let counted = count_rules(&json!({"blocked_terms": [1, 2, 3], "concepts": [], "x": true}));
        assert_eq!(
            counted,
            json!({"blocked_terms": 3, "concepts": 0, "x": true})
        );
    }
}
