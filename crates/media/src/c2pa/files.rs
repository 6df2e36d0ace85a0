//! Where signing credentials come from: configured files, or
//! `ca.pem`, `chain.pem` and `signer.key` in a data directory, generated
//! there on first use.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::generate::generate;
use crate::error::MediaError;

/// The generated CA certificate (for readers' trust anchors).
pub(crate) const CA_FILE: &str = "ca.pem";
/// The signing certificate followed by the CA.
pub(crate) const CHAIN_FILE: &str = "chain.pem";
/// The signing key (PKCS#8, mode 0600).
pub(crate) const KEY_FILE: &str = "signer.key";

/// PEM texts and the names of the files they came from.
pub(crate) struct Loaded {
    pub chain_pem: String,
    pub chain_path: String,
    pub key_pem: String,
    pub key_path: String,
    pub ca_pem: Option<String>,
}

/// Reads the configured pair, or reuses or generates the pair in `dir`.
pub(crate) fn load(dir: &Path, configured: Option<(&Path, &Path)>) -> Result<Loaded, MediaError> {
    if let Some((chain, key)) = configured {
        return Ok(Loaded {
            chain_pem: read(chain)?,
            chain_path: chain.display().to_string(),
            key_pem: read(key)?,
            key_path: key.display().to_string(),
            ca_pem: None,
        });
    }
    let (ca, chain, key) = (dir.join(CA_FILE), dir.join(CHAIN_FILE), dir.join(KEY_FILE));
    match (chain.exists(), key.exists()) {
        (true, true) => {}
        (false, false) => write_generated(dir, &ca, &chain, &key)?,
        // Half a pair: never overwrite a key that may have signed images.
        (true, false) => return Err(missing(&key)),
        (false, true) => return Err(missing(&chain)),
    }
    Ok(Loaded {
        chain_pem: read(&chain)?,
        chain_path: chain.display().to_string(),
        key_pem: read(&key)?,
        key_path: key.display().to_string(),
        ca_pem: if ca.exists() { Some(read(&ca)?) } else { None },
    })
}

/// Generates a pair into a fresh folder beside `dir` and renames it to
/// `dir` in one step, so a process starting at the same moment on the same
/// data folder never sees half a pair: of two that generate at once, the
/// second rename fails on the first's complete folder, and it uses that.
fn write_generated(dir: &Path, ca: &Path, chain: &Path, key: &Path) -> Result<(), MediaError> {
    let generated = generate()?;
    if dir.exists() {
        // Another process's complete pair appeared since the caller
        // looked (a rename places all three files at once): use it.
        if chain.exists() && key.exists() {
            return Ok(());
        }
        // A folder made by hand: fill it in place. The key first and the
        // chain last: a crash in between leaves a key without a chain,
        // which the next start reports instead of replacing.
        write_new(key, &generated.key_pem, 0o600)?;
        write_new(ca, &generated.ca_pem, 0o644)?;
        return write_new(chain, &generated.chain_pem, 0o644);
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| unreadable(parent, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = dir
        .file_name()
        .map_or("c2pa".into(), |n| n.to_string_lossy().into_owned());
    // Unique per process, thread and call.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = parent.join(format!(".{name}.new-{}-{nanos}-{call}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(|e| unreadable(&tmp, e))?;
    let staged = (|| {
        write_new(&tmp.join(KEY_FILE), &generated.key_pem, 0o600)?;
        write_new(&tmp.join(CA_FILE), &generated.ca_pem, 0o644)?;
        write_new(&tmp.join(CHAIN_FILE), &generated.chain_pem, 0o644)
    })();
    let placed = staged.and_then(|()| match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Another process placed its pair first: use that one.
        Err(_) if chain.exists() && key.exists() => Ok(()),
        Err(e) => Err(unreadable(dir, e)),
    });
    let _ = std::fs::remove_dir_all(&tmp);
    placed
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), MediaError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| unreadable(path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| unreadable(path, e))
}

fn read(path: &Path) -> Result<String, MediaError> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            missing(path)
        } else {
            unreadable(path, e)
        }
    })?;
    String::from_utf8(bytes).map_err(|_| MediaError::C2paCredentialsNotPem {
        path: path.display().to_string(),
        reason: "not UTF-8 text (a DER file? convert it to PEM)".into(),
    })
}

fn missing(path: &Path) -> MediaError {
    MediaError::C2paCredentialsMissing {
        path: PathBuf::from(path).display().to_string(),
    }
}

fn unreadable(path: &Path, e: std::io::Error) -> MediaError {
    MediaError::C2paCredentialsUnreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_starting_together_share_one_generated_pair() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c2pa");
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6).map(|_| s.spawn(|| load(&dir, None))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().expect("every start gets a pair").key_pem)
                .collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "one key for all");
        // No staging folder is left behind.
        let names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["c2pa"]);
    }
}
