//! The S3 backend against a real S3 server (SeaweedFS in CI; any
//! S3-compatible store works). Configured like production, from the
//! environment:
//!
//! - `EASEL_TEST_S3_URL`: `s3://<bucket>` of an existing bucket; each test
//!   works under a fresh random prefix in it;
//! - `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`.
//!
//! Without `EASEL_TEST_S3_URL` the tests say so and pass, unless
//! `EASEL_REQUIRE_S3=1` (CI sets it), which makes them fail instead.

use std::time::Duration;

use bytes::Bytes;
use easel_store::{Blobs, S3Options};

/// The test bucket's URL, or `None` (after saying why) when S3 tests are
/// not configured here.
fn bucket_url() -> Option<String> {
    match std::env::var("EASEL_TEST_S3_URL") {
        Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_string()),
        _ if std::env::var("EASEL_REQUIRE_S3").as_deref() == Ok("1") => {
            panic!("EASEL_REQUIRE_S3=1 but EASEL_TEST_S3_URL is not set")
        }
        _ => {
            eprintln!("skipped: set EASEL_TEST_S3_URL (and AWS_*) to run the S3 tests");
            None
        }
    }
}

/// The store under a fresh prefix of the test bucket.
fn fresh(bucket: &str) -> Blobs {
    let prefix = format!("test-{}", uuid_like());
    Blobs::connect(&format!("{bucket}/{prefix}"), &S3Options::default()).unwrap()
}

fn uuid_like() -> String {
    format!("{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

#[tokio::test]
async fn objects_round_trip_with_immutable_caching_and_presigned_links() {
    let Some(bucket) = bucket_url() else { return };
    let blobs = fresh(&bucket);
    blobs.check().await.expect("the test bucket is usable");
    assert!(blobs.can_presign());
    let key = "images/2026/12/06/job-0.png";
    assert!(!blobs.exists(key).await.unwrap());
    assert_eq!(blobs.get(key).await.unwrap_err().code(), "object_not_found");

    let bytes = Bytes::from_static(b"\x89PNG not really, but bytes");
    blobs.put(key, bytes.clone()).await.unwrap();
    assert!(blobs.exists(key).await.unwrap());
    assert_eq!(blobs.get(key).await.unwrap(), bytes);

    // A presigned link works without credentials, and the object carries
    // the headers a CDN needs.
    let url = blobs
        .presigned_get(key, Duration::from_secs(300))
        .await
        .unwrap()
        .expect("S3 presigns");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(header("content-type").as_deref(), Some("image/png"));
    assert!(header("etag").is_some(), "S3 answers with an ETag");
    assert_eq!(response.bytes().await.unwrap(), bytes);

    // A tampered signature is refused by the server.
    let tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);

    blobs.delete(key).await.unwrap();
    assert!(!blobs.exists(key).await.unwrap());
    blobs.delete(key).await.unwrap(); // deleting twice is fine
}

#[tokio::test]
async fn prefixes_keep_stores_apart() {
    let Some(bucket) = bucket_url() else { return };
    let (a, b) = (fresh(&bucket), fresh(&bucket));
    a.put("inputs/x.png", Bytes::from_static(b"a"))
        .await
        .unwrap();
    assert!(a.exists("inputs/x.png").await.unwrap());
    assert!(!b.exists("inputs/x.png").await.unwrap());
    assert_eq!(a.keys("").await.unwrap(), vec!["inputs/x.png".to_string()]);
    assert_eq!(a.keys("inputs").await.unwrap().len(), 1);
    assert!(a.keys("images/").await.unwrap().is_empty());
    assert!(b.keys("").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_bucket_stops_the_startup_check() {
    let Some(_) = bucket_url() else { return };
    let blobs =
        Blobs::connect("s3://easel-no-such-bucket-for-tests", &S3Options::default()).unwrap();
    let e = blobs.check().await.unwrap_err();
    assert_eq!(e.code(), "storage_unavailable");
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(e.to_string().contains("storage.url"), "{e}");
}

#[tokio::test]
async fn wrong_credentials_stop_the_startup_check() {
    let Some(bucket) = bucket_url() else { return };
    let env = std::env::vars()
        .filter(|(k, _)| k != "AWS_SECRET_ACCESS_KEY")
        .chain([(
            "AWS_SECRET_ACCESS_KEY".to_string(),
            "wrong-secret".to_string(),
        )]);
    let options = S3Options {
        max_retries: 1,
        retry_timeout: Duration::from_secs(5),
        ..S3Options::default()
    };
    let blobs = Blobs::connect_with_env(&bucket, &options, env).unwrap();
    let e = blobs.check().await.unwrap_err();
    assert_eq!(e.code(), "storage_unavailable");
    assert!(e.to_string().contains("refused the credentials"), "{e}");
}

#[tokio::test]
async fn bad_urls_are_refused_before_anything_is_contacted() {
    for (url, says) in [
        ("s3://", "names no bucket"),
        ("gs://bucket", "unknown scheme `gs`"),
        ("file://", "names no folder"),
    ] {
        let e = Blobs::connect(url, &S3Options::default()).unwrap_err();
        assert_eq!(e.code(), "invalid_storage_url", "{url}");
        assert!(e.to_string().contains(says), "{url}: {e}");
        assert!(e.to_string().starts_with("storage.url: "), "{e}");
    }
}
