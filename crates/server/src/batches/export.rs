//! A batch's zip export: every image it made, under `images/` as the
//! manifest's `file` column names them, then `manifest.csv` and
//! `manifest.jsonl`. The archive is streamed while it is written: a
//! thread runs the zip writer (images stored as they are, since PNG, JPEG
//! and WebP are compressed already; the manifests deflated) and hands its
//! output to the response through a bounded channel, so a 10,000-image
//! export holds one image and one chunk in memory at a time, and stops
//! when the client goes away.

use std::io::Write;

use axum::http::HeaderMap;
use bytes::Bytes;
use easel_store::BatchRecord;
use tokio::sync::mpsc;
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

use super::manifest::{self, PAGE_LINES};
use crate::state::AppState;

/// Bytes buffered before a chunk is sent.
const CHUNK: usize = 256 * 1024;

/// Chunks in flight between the writer and the response.
const CHANNEL: usize = 4;

type Chunk = Result<Bytes, std::io::Error>;

/// A `Write` that sends what it is given to the response in chunks.
struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The export of `batch` as a stream of chunks.
pub fn stream(
    state: AppState,
    headers: HeaderMap,
    batch: BatchRecord,
) -> impl futures::Stream<Item = Chunk> + Send {
    let (tx, rx) = mpsc::channel::<Chunk>(CHANNEL);
    let runtime = tokio::runtime::Handle::current();
    let errors = tx.clone();
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx,
            buffer: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = write(&runtime, &state, &headers, &batch, writer) {
            tracing::warn!(batch = %batch.id, error = %e, "a batch export stopped");
            // The client sees the body end with an error, not a short zip
            // that looks whole.
            let _ = errors.blocking_send(Err(e));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

fn write(
    runtime: &tokio::runtime::Handle,
    state: &AppState,
    headers: &HeaderMap,
    batch: &BatchRecord,
    writer: ChannelWriter,
) -> std::io::Result<()> {
    let io = |e: crate::error::ApiError| std::io::Error::other(e.message().to_string());
    let stored = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .unix_permissions(0o644);
    let deflated = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let mut zip = zip::ZipWriter::new_stream(writer);
    let mut csv = manifest::csv_header();
    let mut jsonl = String::new();
    let mut from = 0u32;
    while let Some(rows) = runtime
        .block_on(manifest::page(state, headers, batch, from))
        .map_err(io)?
    {
        for (row, entry) in rows {
            csv.push_str(&manifest::csv_line(&entry));
            jsonl.push_str(&manifest::jsonl_line(&entry).map_err(io)?);
            let (Some(image), Some(name)) = (&row.image, &entry.file) else {
                continue;
            };
            let bytes = runtime
                .block_on(state.jobs.blobs().get(&image.object_key))
                .map_err(std::io::Error::other)?;
            zip.start_file(name.as_str(), stored)
                .map_err(std::io::Error::other)?;
            zip.write_all(&bytes)?;
        }
        from = from.saturating_add(PAGE_LINES);
    }
    zip.start_file("manifest.csv", deflated)
        .map_err(std::io::Error::other)?;
    zip.write_all(csv.as_bytes())?;
    zip.start_file("manifest.jsonl", deflated)
        .map_err(std::io::Error::other)?;
    zip.write_all(jsonl.as_bytes())?;
    let mut inner = zip.finish().map_err(std::io::Error::other)?.into_inner();
    inner.flush()
}
