//! `pool.device`: the device every model of the pool computes on, chosen
//! at startup and refused there when it is not a device or this build
//! cannot compute on it.

use crate::helpers::{MODEL, small_request, spawn_app_with, startup_error, test_config};

#[tokio::test]
async fn a_pool_on_the_cpu_starts_generates_and_labels_its_device_time_cpu() {
    let app = spawn_app_with(|c| c.pool.device = "cpu".into()).await;
    assert_eq!(
        app.generate(&small_request("a red apple")).await.status(),
        200
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let busy = format!("easel_device_busy_seconds_total{{model=\"{MODEL}\",device=\"cpu\"}}");
    assert!(metrics.contains(&busy), "{metrics}");
    assert!(!metrics.contains("device=\"cuda"), "{metrics}");
}

#[tokio::test]
async fn a_device_that_is_not_one_stops_startup_naming_the_key_the_value_and_the_forms() {
    for bad in ["tpu", "cuda:x", "cuda:-1"] {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path());
        config.pool.device = bad.into();
        let err = startup_error(config).await;
        assert!(err.contains(&format!("pool.device = \"{bad}\"")), "{err}");
        assert!(err.contains("`cpu`") && err.contains("`cuda:N`"), "{err}");
    }
}

#[tokio::test]
async fn cuda_stops_startup_in_a_build_without_gpu_support() {
    if easel_engine::CUDA_BUILT {
        eprintln!("skipped: this build has GPU support");
        return;
    }
    for device in ["cuda", "cuda:0"] {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path());
        config.pool.device = device.into();
        let err = startup_error(config).await;
        assert!(
            err.contains(&format!("pool.device = \"{device}\"")),
            "{err}"
        );
        assert!(err.contains("no GPU support"), "{err}");
        assert!(err.contains("--features easel-engine/cuda"), "{err}");
        // Refused before the data folder is opened.
        assert!(!data_dir.path().join("easel.db").exists());
    }
}
