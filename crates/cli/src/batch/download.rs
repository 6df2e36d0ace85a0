//! `easel batch download ID -o DIR`: the batch's export
//! (`GET /v1/batches/{id}/export`, `application/zip`: `manifest.jsonl`,
//! `manifest.csv`, `images/…`) streamed to a temporary file in DIR, never
//! held in memory, then extracted into DIR. An entry whose name would
//! land outside DIR (`../x`, `/etc/x`, `C:/x`) is refused, and nothing
//! after it is written.

use std::fs::File;
use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use super::Api;
use crate::admin_api::{block_on, checked, urlencode};

/// Flags of `easel batch download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The batch's id (`batch_…`).
    id: String,
    /// The folder to extract into (made if missing; files already there
    /// with the same names are replaced). With `--json`, what was written
    /// is printed as JSON.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
}

/// What an extraction wrote.
#[derive(Debug, Default, PartialEq)]
pub struct Extracted {
    /// Files under `images/`.
    pub images: usize,
    /// Every file written.
    pub files: usize,
}

/// Runs `easel batch download`.
pub fn run(api: &Api, args: DownloadArgs) -> anyhow::Result<()> {
    let dir = &args.output;
    let made = !dir.exists();
    std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
    let result = download_into(api, &args, dir);
    if result.is_err() && made {
        // Only if still empty: nothing extracted is ever removed.
        let _ = std::fs::remove_dir(dir);
    }
    result
}

/// Fetches and extracts into `dir`, which exists.
fn download_into(api: &Api, args: &DownloadArgs, dir: &Path) -> anyhow::Result<()> {
    // In DIR, so it is on the same disk as what it is extracted into, and
    // removed when dropped, whatever happens.
    let mut zip = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("making a temporary file in {}", dir.display()))?;
    let url = format!("{}/v1/batches/{}/export", api.base, urlencode(&args.id));
    let bytes = block_on(fetch(api, &url, zip.as_file_mut()))?;
    zip.as_file_mut().rewind()?;
    let done = extract(zip.as_file(), dir)
        .with_context(|| format!("extracting the export of {} ({bytes} bytes)", args.id))?;
    let manifests: Vec<PathBuf> = ["manifest.jsonl", "manifest.csv"]
        .iter()
        .map(|m| dir.join(m))
        .filter(|p| p.is_file())
        .collect();
    if api.json {
        let report = serde_json::json!({
            "batch": args.id, "dir": dir, "bytes": bytes,
            "images": done.images, "files": done.files, "manifests": manifests,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} images in {}", done.images, dir.join("images").display());
        for path in &manifests {
            println!("manifest: {}", path.display());
        }
    }
    Ok(())
}

/// Streams the answer of `url` into `to`; returns its size.
async fn fetch(api: &Api, url: &str, to: &mut File) -> anyhow::Result<u64> {
    // No overall timeout (an export may be gigabytes), but one on each
    // read, so a stalled server does not hang the command.
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")?;
    let mut req = client.get(url);
    if let Some(key) = &api.key {
        req = req.bearer_auth(key);
    }
    let r = req.send().await.with_context(|| format!("calling {url}"))?;
    let mut r = checked(r, url).await?;
    let mut written = 0u64;
    while let Some(chunk) = r
        .chunk()
        .await
        .with_context(|| format!("reading the export from {url}"))?
    {
        to.write_all(&chunk).context("writing the export to disk")?;
        written += chunk.len() as u64;
    }
    to.flush()?;
    Ok(written)
}

/// Extracts the zip `archive` into `dir`; refuses an entry whose name is
/// not enclosed in `dir`.
pub fn extract(archive: &File, dir: &Path) -> anyhow::Result<Extracted> {
    let mut zip = zip::ZipArchive::new(archive).context("the export is not a zip file")?;
    let mut done = Extracted::default();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        // `enclosed_name` refuses a `..` that climbs out but turns an
        // absolute name into a relative one; that is refused too.
        let raw = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let absolute = raw.starts_with(['/', '\\']) || raw.get(1..2) == Some(":");
        let Some(name) = entry.enclosed_name().filter(|_| !absolute) else {
            bail!(
                "refusing the entry {raw:?}: its path leads outside {}",
                dir.display()
            );
        };
        let path = dir.join(&name);
        if entry.is_dir() {
            std::fs::create_dir_all(&path).with_context(|| format!("making {}", path.display()))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("making {}", parent.display()))?;
        }
        let mut out = File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        std::io::copy(&mut entry, &mut out)
            .with_context(|| format!("writing {}", path.display()))?;
        done.files += 1;
        if name.starts_with("images") {
            done.images += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn archive(entries: &[(&str, &[u8])]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        let mut w = zip::ZipWriter::new(&mut file);
        for (name, bytes) in entries {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap();
        file.rewind().unwrap();
        file
    }

    #[test]
    fn an_export_is_extracted_with_its_images_counted() {
        let zip = archive(&[
            ("manifest.jsonl", b"{}\n"),
            ("manifest.csv", b"custom_id\n"),
            ("images/row-0.png", b"png"),
            ("images/row-1.png", b"png"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let done = extract(&zip, dir.path()).unwrap();
        assert_eq!(
            done,
            Extracted {
                images: 2,
                files: 4
            }
        );
        assert_eq!(
            std::fs::read(dir.path().join("images/row-1.png")).unwrap(),
            b"png"
        );
        assert!(dir.path().join("manifest.csv").is_file());
    }

    /// A zip holding one entry stored under exactly `name`: the writer
    /// may clean names up, so the entry is written under a harmless name
    /// of the same length that is then replaced in the bytes (the
    /// checksums cover the data, not the name).
    fn archive_with_raw_name(name: &str) -> File {
        let harmless: String = name
            .chars()
            .enumerate()
            .map(|(i, c)| match c {
                '.' => 'a',
                '/' if i == 0 => 'a',
                c => c,
            })
            .collect();
        let mut bytes = std::io::Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut bytes);
        w.start_file(harmless.as_str(), SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
        let mut bytes = bytes.into_inner();
        let (from, to) = (harmless.as_bytes(), name.as_bytes());
        let mut replaced = 0;
        let mut i = 0;
        while i + from.len() <= bytes.len() {
            if &bytes[i..i + from.len()] == from {
                bytes[i..i + from.len()].copy_from_slice(to);
                replaced += 1;
            }
            i += 1;
        }
        assert_eq!(replaced, 2, "the local header and the central directory");
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        file.rewind().unwrap();
        file
    }

    #[test]
    fn an_entry_that_escapes_the_folder_is_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("out");
        for name in [
            "../evil.txt",
            "/tmp/evil.txt",
            "C:/evil.txt",
            "images/../../evil.txt",
        ] {
            let zip = archive_with_raw_name(name);
            let e = extract(&zip, &dir).unwrap_err().to_string();
            assert!(e.contains("leads outside"), "{name}: {e}");
        }
        assert!(!outer.path().join("evil.txt").exists());
        // `..` that stays inside is fine.
        let zip = archive_with_raw_name("images/../manifest.csv");
        assert_eq!(extract(&zip, &dir).unwrap().files, 1);
        assert!(dir.join("manifest.csv").is_file());
    }
}
