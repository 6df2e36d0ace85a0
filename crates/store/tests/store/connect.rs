//! Opening by URL: the backend by scheme, and clear errors for wrong URLs
//! and unreachable servers.

use easel_core::Tier;
use easel_store::Db;

use crate::helpers::new_job;

#[tokio::test]
async fn a_sqlite_url_creates_the_file_and_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not/yet/easel.db");
    let db = Db::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    db.insert_job(new_job(Tier::Batch, "x")).await.unwrap();
    assert!(path.is_file());
    // `Db::open` finds the same database at the same path.
    db.close().await;
    assert_eq!(
        Db::open(&path)
            .await
            .unwrap()
            .queue_depth(None)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_wrong_url_is_refused_naming_database_url() {
    for url in [
        "mysql://root:hunter2@db/easel",
        "easel.db",
        "sqlite://",
        "postgres://",
        "postgres://easel:hunter2@db:notaport/easel",
    ] {
        let err = Db::connect(url).await.unwrap_err();
        assert_eq!(err.code(), "invalid_database_url", "{url}: {err}");
        let text = err.to_string();
        assert!(text.contains("database.url"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[tokio::test]
async fn an_unreachable_postgres_server_is_an_error_naming_its_host() {
    // Port 1 (tcpmux) is closed on any machine that runs these tests.
    let err = Db::connect("postgres://easel:hunter2@127.0.0.1:1/easel")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "database_unreachable", "{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
