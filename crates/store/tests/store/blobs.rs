//! The object store.

use bytes::Bytes;
use easel_core::{ImageId, OutputFormat};
use easel_store::{Blobs, image_key};

#[tokio::test]
async fn blobs_round_trip_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects/not/yet/there");
    let blobs = Blobs::local(&root).unwrap();
    let key = image_key(ImageId::new(), OutputFormat::Png, chrono::Utc::now());

    assert!(!blobs.exists(&key).await.unwrap());
    assert_eq!(
        blobs.get(&key).await.unwrap_err().code(),
        "object_not_found"
    );

    let bytes = Bytes::from_static(b"\x89PNG not really");
    blobs.put(&key, bytes.clone()).await.unwrap();
    assert!(blobs.exists(&key).await.unwrap());
    assert_eq!(blobs.get(&key).await.unwrap(), bytes);
    assert!(root.join(&key).is_file(), "stored as a file under the root");

    // Overwrite replaces the whole object.
    blobs.put(&key, Bytes::from_static(b"v2")).await.unwrap();
    assert_eq!(blobs.get(&key).await.unwrap(), Bytes::from_static(b"v2"));

    assert_eq!(blobs.keys("").await.unwrap(), vec![key.clone()]);
    assert_eq!(blobs.keys("images").await.unwrap(), vec![key.clone()]);
    assert!(blobs.keys("inputs/").await.unwrap().is_empty());

    blobs.delete(&key).await.unwrap();
    assert!(!blobs.exists(&key).await.unwrap());
    assert!(blobs.keys("").await.unwrap().is_empty());
    blobs.delete(&key).await.unwrap(); // deleting twice is fine
}

#[tokio::test]
async fn a_put_leaves_no_temporary_files_behind() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(dir.path()).unwrap();
    blobs
        .put("a/b/c.bin", Bytes::from(vec![7u8; 100_000]))
        .await
        .unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["c.bin"]);
}

#[tokio::test]
async fn keys_that_escape_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(dir.path()).unwrap();
    let err = blobs
        .put("../outside", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_object_key");
}
