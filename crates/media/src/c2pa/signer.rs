//! [`C2paSigner`]: checked credentials, and signing an encoded image.

use std::io::Cursor;
use std::path::Path;

use c2pa::{BoxedSigner, Builder, Context, Settings};
use easel_core::OutputFormat;

use super::credentials::check;
use super::files::load;
use super::manifest::{ClaimInfo, definition};
use crate::error::MediaError;

/// Signs encoded images with a C2PA manifest. Holds checked credentials;
/// `Send + Sync`, so one instance serves every worker.
pub struct C2paSigner {
    signer: BoxedSigner,
    ca_pem: Option<String>,
}

impl std::fmt::Debug for C2paSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("C2paSigner")
            .field("alg", &self.signer.alg())
            .field("generated_ca", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl C2paSigner {
    /// A signer from PEM texts: the signing certificate first, then its
    /// issuers; the key as unencrypted PKCS#8. The algorithm follows the
    /// certificate's key (ES256 for P-256). Errors name `<chain PEM>` or
    /// `<key PEM>`.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, MediaError> {
        Self::checked(chain_pem, "<chain PEM>", key_pem, "<key PEM>", None)
    }

    /// A signer from `configured` (chain, key) files when given, else from
    /// `dir/chain.pem` and `dir/signer.key` (and `dir/ca.pem`), which are
    /// generated, a private CA and an end-entity certificate, when neither
    /// exists. Errors name the file at fault.
    pub fn load_or_generate(
        dir: &Path,
        configured: Option<(&Path, &Path)>,
    ) -> Result<Self, MediaError> {
        let loaded = load(dir, configured)?;
        Self::checked(
            &loaded.chain_pem,
            &loaded.chain_path,
            &loaded.key_pem,
            &loaded.key_path,
            loaded.ca_pem,
        )
    }

    fn checked(
        chain_pem: &str,
        chain_path: &str,
        key_pem: &str,
        key_path: &str,
        ca_pem: Option<String>,
    ) -> Result<Self, MediaError> {
        let alg = check(chain_pem, chain_path, key_pem, key_path)?;
        let signer =
            c2pa::create_signer::from_keys(chain_pem.as_bytes(), key_pem.as_bytes(), alg, None)
                .map_err(|e| MediaError::C2paCredentialsRejected {
                    path: key_path.into(),
                    reason: e.to_string(),
                })?;
        Ok(Self { signer, ca_pem })
    }

    /// The generated CA certificate (PEM), to give readers as a trust
    /// anchor; `None` for configured credentials.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// `bytes` (an image already encoded as `format`, PNG text chunks
    /// included) with a signed manifest embedded. The manifest binds a hash
    /// of every other byte, so nothing may change after this.
    pub fn sign(
        &self,
        bytes: &[u8],
        format: OutputFormat,
        claim: &ClaimInfo,
    ) -> Result<Vec<u8>, MediaError> {
        let mime = format.mime_type();
        let failed = |e: c2pa::Error| MediaError::C2paSign {
            reason: e.to_string(),
        };
        let context = Context::new()
            .with_settings(Settings::default())
            .map_err(failed)?;
        let mut builder = Builder::from_context(context)
            .with_definition(definition(claim, mime))
            .map_err(failed)?;
        let mut dest = Cursor::new(Vec::with_capacity(bytes.len() + 16 * 1024));
        builder
            .sign(
                self.signer.as_ref(),
                mime,
                &mut Cursor::new(bytes),
                &mut dest,
            )
            .map_err(failed)?;
        Ok(dest.into_inner())
    }
}
