//! `easel verify FILE`: what an image says about where it came from, read
//! offline: the PNG `parameters` text and `easel` record, the invisible
//! watermark, and the C2PA Content Credentials, validated against a trust
//! anchor (`--ca`, else `<data_dir>/c2pa/ca.pem` when that file exists).
//!
//! It exits 0 whenever it could read the image, including when it finds
//! nothing: "no watermark, no manifest" is an answer. A file that cannot be
//! read, or is not a PNG, JPEG or WebP image, is an error (exit 1).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use easel_config::{Config, Overrides};
use easel_core::OutputFormat;
use easel_media::{C2paSummary, DecodeLimits, EASEL_KEY, PARAMETERS_KEY, WatermarkReading};
use serde::Serialize;
use serde_json::{Value, json};

/// Images this large are refused rather than decoded: about 1 GiB of RGB.
const MAX_PIXELS: u64 = 16384 * 16384;

/// `easel verify` flags.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image file (PNG, JPEG or WebP).
    file: PathBuf,
    /// PEM certificate(s) to trust as C2PA signers' root. Default: the
    /// server's generated CA, `<data_dir>/c2pa/ca.pem`, when present.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The server's data folder, for its CA. Default: the configured one
    /// (`./easel-data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Everything read from one file.
#[derive(Debug, Serialize)]
struct Report {
    file: String,
    format: &'static str,
    width: u32,
    height: u32,
    bytes: usize,
    /// PNG text: `parameters` (A1111 style) and the `easel` JSON record.
    metadata: Metadata,
    /// The watermark, or null.
    watermark: Option<Watermark>,
    /// The C2PA manifest's summary, or null when there is none.
    c2pa: Option<C2paSummary>,
    /// Why the manifest could not be read, when it could not.
    c2pa_error: Option<String>,
    /// The trust anchor used, or null.
    trust_anchor: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct Metadata {
    parameters: Option<String>,
    easel: Option<Value>,
}

#[derive(Debug, Serialize)]
struct Watermark {
    id: String,
    server: u16,
    image: u32,
    confidence: f32,
    method: &'static str,
    scale: Option<f64>,
}

impl From<WatermarkReading> for Watermark {
    fn from(r: WatermarkReading) -> Self {
        Self {
            id: r.payload.id(),
            server: r.payload.server,
            image: r.payload.image,
            confidence: r.confidence,
            method: r.method.as_str(),
            scale: r.transform.map(|t| t.scale),
        }
    }
}

/// Runs `easel verify`.
pub fn run(config_file: Option<PathBuf>, args: VerifyArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let Some(format) = sniff(&bytes) else {
        bail!("{} is not a PNG, JPEG or WebP image", args.file.display());
    };
    let limits = DecodeLimits {
        max_side: 16384,
        max_pixels: MAX_PIXELS,
        max_bytes: bytes.len().max(1),
    };
    let image = easel_media::decode_untrusted(&bytes, &limits)
        .with_context(|| format!("decoding {}", args.file.display()))?;

    let metadata = match format {
        OutputFormat::Png => png_metadata(&bytes)?,
        _ => Metadata::default(),
    };
    let watermark = easel_media::detect_watermark(&image).map(Watermark::from);
    let anchor = trust_anchor(config_file, args.ca.as_deref(), args.data_dir)?;
    let (c2pa, c2pa_error) = match easel_media::read_c2pa(
        &bytes,
        format,
        anchor.as_ref().map(|(_, pem)| pem.as_str()),
    ) {
        Ok(summary) => (summary, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let report = Report {
        file: args.file.display().to_string(),
        format: format.as_str(),
        width: image.width,
        height: image.height,
        bytes: bytes.len(),
        metadata,
        watermark,
        c2pa,
        c2pa_error,
        trust_anchor: anchor.map(|(path, _)| path.display().to_string()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(())
}

/// The format from the file's first bytes.
fn sniff(bytes: &[u8]) -> Option<OutputFormat> {
    easel_media::sniff_format(bytes)
}

/// The PNG's `parameters` and `easel` text chunks. A record that is not
/// JSON is shown as the string it is.
fn png_metadata(bytes: &[u8]) -> anyhow::Result<Metadata> {
    let chunks = easel_media::read_png_text(bytes).context("reading the PNG's text chunks")?;
    let mut metadata = Metadata::default();
    for (key, value) in chunks {
        if key == PARAMETERS_KEY {
            metadata.parameters = Some(value);
        } else if key == EASEL_KEY {
            metadata.easel =
                Some(serde_json::from_str(&value).unwrap_or_else(|_| Value::String(value)));
        }
    }
    Ok(metadata)
}

/// `--ca`, else the data folder's generated `c2pa/ca.pem` when present.
/// A `--ca` that cannot be read is an error; a config that does not load
/// only loses the default.
fn trust_anchor(
    config_file: Option<PathBuf>,
    ca: Option<&Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Option<(PathBuf, String)>> {
    if let Some(path) = ca {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading the trust anchor {}", path.display()))?;
        return Ok(Some((path.to_path_buf(), pem)));
    }
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => match Config::load(&Overrides {
            config_file,
            ..Default::default()
        }) {
            Ok(config) => config.data_dir,
            Err(e) => {
                eprintln!("warning: the config did not load ({e:#}); using ./easel-data");
                PathBuf::from("./easel-data")
            }
        },
    };
    let path = data_dir.join("c2pa/ca.pem");
    Ok(std::fs::read_to_string(&path).ok().map(|pem| (path, pem)))
}

/// The report as text for a terminal.
fn text(r: &Report) -> String {
    let mut out = format!(
        "file: {} ({}, {}x{}, {} bytes)\n",
        r.file, r.format, r.width, r.height, r.bytes
    );
    out.push_str("metadata:\n");
    match (&r.metadata.parameters, &r.metadata.easel) {
        (None, None) => out.push_str("  none\n"),
        (parameters, easel) => {
            if let Some(p) = parameters {
                out.push_str(&format!("  parameters: {}\n", p.replace('\n', "\n    ")));
            }
            if let Some(e) = easel {
                let pretty = serde_json::to_string_pretty(e).unwrap_or_default();
                out.push_str(&format!("  easel: {}\n", pretty.replace('\n', "\n    ")));
            }
        }
    }
    match &r.watermark {
        Some(w) => out.push_str(&format!(
            "watermark: {} (server {:#06x}, image {}; {}, confidence {:.3})\n",
            w.id, w.server, w.image, w.method, w.confidence
        )),
        None => out.push_str("watermark: none found\n"),
    }
    match (&r.c2pa, &r.c2pa_error) {
        (Some(c), _) => {
            out.push_str(&format!("c2pa: {}\n", c.validation_state));
            let fields = json!({
                "claim_generator": c.claim_generator,
                "actions": c.actions,
                "digital_source_type": c.digital_source_type,
                "model_hash": c.model_hash,
                "soft_binding": c.soft_binding,
                "errors": c.errors,
            });
            for (k, v) in fields.as_object().into_iter().flatten() {
                out.push_str(&format!("  {k}: {v}\n"));
            }
        }
        (None, Some(e)) => out.push_str(&format!("c2pa: unreadable manifest: {e}\n")),
        (None, None) => out.push_str("c2pa: no manifest\n"),
    }
    match &r.trust_anchor {
        Some(a) => out.push_str(&format!("trust anchor: {a}\n")),
        None => out.push_str("trust anchor: none (pass --ca PEM to check the signer)\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_sniffed_from_their_magic_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some(OutputFormat::Png));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some(OutputFormat::Jpeg));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(OutputFormat::Webp));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b""), None);
    }
}
