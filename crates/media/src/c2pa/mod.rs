//! C2PA Content Credentials: a signed manifest embedded in every generated
//! image that says it was made by a trained algorithm, with which model.
//!
//! # Choices
//! - **c2pa `=0.90.22` with `rust_native_crypto` only**: pure-Rust
//!   signing and validation, no OpenSSL build and no HTTP client (0.91
//!   needs Rust 1.96). Without a timestamp authority a validator checks the
//!   certificate's own validity window at read time, so the generated
//!   certificates are long-lived.
//! - **A private CA plus an end-entity certificate**, generated with rcgen
//!   when none is configured: C2PA validators reject a lone self-signed
//!   certificate. Readers report such a manifest as `Valid`, and as
//!   `Trusted` when given the CA (`ca.pem`) as a trust anchor.
//! - **Credentials are checked when loaded**, not at the first image:
//!   each problem is a [`MediaError`](crate::MediaError) naming the file.
//!
//! # Layout
//! - `manifest`: [`ClaimInfo`] and the manifest definition built from it.
//! - `credentials`: checks of a PEM chain and key before any signing.
//! - `generate`: the private CA and end-entity certificate.
//! - `files`: where credentials are read from and written to.
//! - `signer`: [`C2paSigner`].
//! - `read`: [`read_c2pa`] and its [`C2paSummary`].

mod credentials;
mod files;
mod generate;
mod manifest;
mod read;
mod signer;

pub use manifest::{ClaimInfo, SOFT_BINDING_ALG};
pub use read::{C2paSummary, read_c2pa};
pub use signer::C2paSigner;
