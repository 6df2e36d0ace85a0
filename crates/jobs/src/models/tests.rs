//! The pool with stand-in models: loads, failures, eviction and pinning,
//! driven through the public handle on the real loader thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use easel_core::{SamplerKind, Size};
use easel_engine::{
    Architecture, CancelToken, EngineError, GeneratedImage, ImageRequest, ModelInfo, ProgressSink,
};

use super::*;

struct Fake(ModelInfo);

impl Generator for Fake {
    fn info(&self) -> &ModelInfo {
        &self.0
    }

    fn generate(
        &self,
        _: &[ImageRequest],
        _: &mut dyn ProgressSink,
        _: &CancelToken,
    ) -> Result<Vec<GeneratedImage>, EngineError> {
        Ok(Vec::new())
    }
}

fn info(name: &str, bytes: u64) -> ModelInfo {
    ModelInfo {
        name: name.into(),
        path: PathBuf::from(name),
        architecture: Architecture::Pixel,
        content_hash: format!("blake3:{name}"),
        default_size: Size::new(16, 16).unwrap(),
        max_side: 64,
        size_multiple: 8,
        default_steps: 3,
        default_guidance: 5.0,
        default_sampler: SamplerKind::Euler,
        weight_bytes: bytes,
        inpainting: false,
    }
}

/// A pool of models `(name, bytes)`; names starting with `bad` fail to
/// load with `corrupt_weights`, `panic` panics.
fn pool(models: &[(&str, u64)], budget: u64, preload: Preload) -> Models {
    let sizes: Vec<(String, u64)> = models.iter().map(|(n, b)| (n.to_string(), *b)).collect();
    let specs = models
        .iter()
        .map(|(name, bytes)| {
            (
                ModelSpec {
                    name: name.to_string(),
                    path: PathBuf::from(name),
                },
                *bytes,
            )
        })
        .collect();
    let options = PoolOptions {
        budget_bytes: budget,
        load_wait: Duration::from_millis(300),
        preload,
        ..PoolOptions::default()
    };
    let load = move |spec: &ModelSpec| -> Result<Arc<dyn Generator>, (String, String)> {
        if spec.name.starts_with("bad") {
            return Err(("corrupt_weights".into(), "corrupt weights file x".into()));
        }
        if spec.name == "panic" {
            panic!("engine bug");
        }
        // A LoRA combination weighs what its model does.
        let base = split_lora_slot(&spec.name).0;
        if base != spec.name && spec.name.contains("foreign") {
            return Err(("lora_unmatched_key".into(), "no layer `x`".into()));
        }
        let bytes = sizes.iter().find(|(n, _)| *n == base).unwrap().1;
        Ok(Arc::new(Fake(info(base, bytes))))
    };
    let default = models[0].0;
    Models::with_loader(specs, default, options, Box::new(load))
}

fn wait_settled(models: &Models) {
    let start = Instant::now();
    while !models.settled() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "loads never settled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn state(models: &Models, name: &str) -> ModelState {
    models.status(name).unwrap().state
}

#[test]
fn an_unloaded_model_starts_loading_when_asked_for_and_then_serves() {
    let models = pool(&[("a", 10)], 100, Preload::default());
    let err = models.get(Some("a")).err().unwrap();
    assert!(matches!(err, ModelLookupError::NotReady { .. }), "{err:?}");
    wait_settled(&models);
    assert!(models.is_ready("a"));
    assert_eq!(models.get(None).unwrap().info().name, "a");
    assert!(matches!(
        models.get(Some("zzz")),
        Err(ModelLookupError::NotFound { .. })
    ));
}

#[test]
fn a_model_that_fails_to_load_is_reported_and_the_others_serve() {
    let models = pool(&[("good", 10), ("bad", 10)], 100, Preload::default());
    models.preload();
    wait_settled(&models);
    assert!(models.get(Some("good")).is_ok());
    assert_eq!(
        state(&models, "bad"),
        ModelState::Failed {
            code: "corrupt_weights".into(),
            message: "corrupt weights file x".into()
        }
    );
    let err = models.get(Some("bad")).err().unwrap().to_string();
    assert!(err.contains("corrupt_weights"), "{err}");
    // Asking again does not retry a broken model: only an admin load does.
    assert!(models.settled());
    assert_eq!(models.load("bad").unwrap(), ModelState::Loading);
    wait_settled(&models);
    assert_eq!(state(&models, "bad").name(), "failed");
}

#[test]
fn a_panic_while_loading_fails_the_model_not_the_process() {
    let models = pool(&[("good", 10), ("panic", 10)], 100, Preload::default());
    models.preload();
    wait_settled(&models);
    assert!(matches!(
        state(&models, "panic"),
        ModelState::Failed { code, .. } if code == "load_panicked"
    ));
    assert!(models.default_ready());
}

#[test]
fn the_default_preload_loads_what_fits_without_evicting() {
    let models = pool(&[("a", 60), ("b", 60), ("c", 30)], 100, Preload::default());
    models.preload();
    wait_settled(&models);
    assert_eq!(state(&models, "a"), ModelState::Ready);
    assert_eq!(state(&models, "b"), ModelState::Unloaded);
    assert_eq!(state(&models, "c"), ModelState::Ready);
}

#[test]
fn using_a_cold_model_evicts_the_least_recently_used_one() {
    let models = pool(
        &[("a", 40), ("b", 40), ("c", 40)],
        100,
        Preload::Named(vec!["a".into(), "b".into()]),
    );
    models.preload();
    wait_settled(&models);
    drop(models.get(Some("b")).unwrap());
    drop(models.get(Some("a")).unwrap()); // b is now the least recently used
    assert!(models.get(Some("c")).is_err());
    wait_settled(&models);
    assert_eq!(state(&models, "a"), ModelState::Ready);
    assert_eq!(state(&models, "b"), ModelState::Unloaded);
    assert_eq!(state(&models, "c"), ModelState::Ready);
    // Its description is kept, and validating a request for it warms it up.
    assert_eq!(models.info(Some("b")).unwrap().name, "b");
    wait_settled(&models);
    assert!(models.is_ready("b"));
}

#[test]
fn a_model_in_use_is_never_evicted_and_the_load_fails_with_the_reason() {
    let models = pool(&[("a", 60), ("b", 60)], 100, Preload::default());
    models.preload();
    wait_settled(&models);
    let held = models.get(Some("a")).unwrap();
    assert!(models.get(Some("b")).is_err());
    wait_settled(&models);
    assert!(models.is_ready("a"));
    match state(&models, "b") {
        ModelState::Failed { code, message } => {
            assert_eq!(code, "memory_budget_exceeded");
            assert!(message.contains("(a)"), "{message}");
        }
        other => panic!("expected failed, got {other:?}"),
    }
    // Once the batch lets go, the next request retries and evicts `a`.
    drop(held);
    assert!(models.get(Some("b")).is_err());
    wait_settled(&models);
    assert!(models.is_ready("b"));
    assert_eq!(state(&models, "a"), ModelState::Unloaded);
}

#[test]
fn a_model_in_use_cannot_be_unloaded() {
    let models = pool(&[("a", 10)], 100, Preload::default());
    models.preload();
    wait_settled(&models);
    let held = models.get(None).unwrap();
    assert_eq!(models.status("a").unwrap().in_use, 1);
    assert_eq!(
        models.unload("a"),
        Err(UnloadError::InUse {
            name: "a".into(),
            holders: 1
        })
    );
    drop(held);
    models.unload("a").unwrap();
    assert_eq!(state(&models, "a"), ModelState::Unloaded);
    assert!(!models.default_ready());
    assert!(matches!(models.unload("x"), Err(UnloadError::NotFound(_))));
}

#[test]
fn a_model_never_loaded_cannot_be_validated_yet_but_starts_loading() {
    let models = pool(&[("a", 10)], 100, Preload::default());
    assert!(matches!(
        models.info(None),
        Err(ModelLookupError::NotReady { .. })
    ));
    wait_settled(&models);
    assert_eq!(models.info(None).unwrap().name, "a");
    assert!(models.status("a").unwrap().last_used.is_some());
}

/// The audit log's `model.*` events, once `n` have been appended.
async fn model_events(db: &easel_store::Db, n: usize) -> Vec<easel_store::AuditEvent> {
    let start = Instant::now();
    loop {
        let events = db
            .list_audit(&easel_store::AuditQuery::default())
            .await
            .unwrap();
        if events.len() >= n || start.elapsed() > Duration::from_secs(10) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_failures_evictions_and_unloads_are_audited_with_who_asked() {
    let dir = tempfile::tempdir().unwrap();
    let db = easel_store::Db::open(dir.path().join("easel.db"))
        .await
        .unwrap();
    // Room for one of `a` and `b` at a time.
    let models = pool(
        &[("a", 60), ("b", 60), ("bad", 1)],
        100,
        Preload::Named(vec!["a".into()]),
    );
    models.attach_audit_log(db.clone());
    models.preload();
    wait_settled(&models);
    models.load_as("b", Some("ops")).unwrap(); // evicts `a`
    wait_settled(&models);
    models.load_as("bad", Some("ops")).unwrap();
    wait_settled(&models);
    models.unload_as("b", Some("root")).unwrap();
    models.unload_as("bad", Some("root")).unwrap(); // failed, not ready: no event

    let events = model_events(&db, 5).await;
    let summary: Vec<(&str, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.event_type.as_str(),
                e.subject.as_deref(),
                e.actor.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("model.loaded", Some("a"), None),
            ("model.unloaded", Some("a"), None),
            ("model.loaded", Some("b"), Some("ops")),
            ("model.load_failed", Some("bad"), Some("ops")),
            ("model.unloaded", Some("b"), Some("root")),
        ]
    );
    assert_eq!(events[0].detail["model_hash"], "blake3:a");
    assert_eq!(events[0].detail["bytes"], 60);
    assert_eq!(
        events[1].detail,
        serde_json::json!({"reason": "evicted", "for_model": "b"})
    );
    assert_eq!(events[3].detail["code"], "corrupt_weights");
    assert_eq!(events[4].detail["reason"], "requested");
}

fn lora(name: &str, weight: f32) -> easel_core::LoraRef {
    easel_core::LoraRef {
        name: name.into(),
        weight,
        hash: Some(format!("sha256:{name}")),
    }
}

#[test]
fn a_lora_combination_is_its_own_entry_counted_and_evicted_like_a_model() {
    let models = pool(&[("a", 40), ("b", 40)], 100, Preload::default());
    models.preload();
    wait_settled(&models);
    assert!(models.is_ready("a") && models.is_ready("b"));
    let combo = lora_slot_name("a", &[lora("grain", 0.8)]);
    assert!(models.get(Some(&combo)).is_err(), "it loads on first use");
    wait_settled(&models);
    // 40 + 40 + 40 > 100: the least recently used model made room.
    assert!(models.is_ready(&combo));
    assert_eq!(state(&models, "a"), ModelState::Unloaded);
    assert!(models.is_ready("b"));
    let slots = models.lora_slots();
    assert_eq!(slots.len(), 1);
    assert_eq!(
        (slots[0].name.as_str(), slots[0].memory_bytes),
        (combo.as_str(), 40)
    );
    assert_eq!(
        models.list().len(),
        2,
        "a combination is no configured model"
    );
    // Another weight is another combination.
    let other = lora_slot_name("a", &[lora("grain", 0.5)]);
    assert_ne!(other, combo);
    assert!(models.get(Some(&other)).is_err());
    wait_settled(&models);
    assert!(models.is_ready(&other));
    assert_eq!(models.lora_slots().len(), 2);
}

#[test]
fn a_combination_that_fails_to_load_keeps_the_loras_code_and_its_model_serves() {
    let models = pool(&[("a", 10)], 100, Preload::default());
    let combo = lora_slot_name("a", &[lora("foreign", 1.0)]);
    assert!(models.get(Some(&combo)).is_err());
    wait_settled(&models);
    match state(&models, &combo) {
        ModelState::Failed { code, .. } => assert_eq!(code, "lora_unmatched_key"),
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(models.get(Some("a")).is_err());
    wait_settled(&models);
    assert!(models.is_ready("a"));
    // A combination of an unknown model is unknown.
    let unknown = lora_slot_name("zzz", &[lora("grain", 1.0)]);
    assert!(matches!(
        models.get(Some(&unknown)),
        Err(ModelLookupError::NotFound { .. })
    ));
}

#[test]
fn idle_lora_combinations_make_room_for_new_ones_past_the_cap() {
    let models = pool(&[("a", 1)], u64::MAX, Preload::default());
    let names: Vec<String> = (0..MAX_LORA_ENTRIES + 5)
        .map(|i| lora_slot_name("a", &[lora("foreign", i as f32 / 100.0)]))
        .collect();
    for name in &names {
        assert!(models.get(Some(name)).is_err());
        wait_settled(&models);
    }
    // Each failed to load (a foreign LoRA): idle, so the oldest went.
    assert_eq!(models.lora_slots().len(), MAX_LORA_ENTRIES);
    let kept: Vec<String> = models.lora_slots().into_iter().map(|s| s.name).collect();
    assert!(kept.contains(names.last().unwrap()));
    assert!(!kept.contains(&names[0]));
    assert!(models.state("a").is_some());
}
