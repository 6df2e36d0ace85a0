//! Shared fixtures.

use easel_core::{RgbImage, SamplerKind, ScheduleKind};
use easel_media::GenerationInfo;

/// A smooth gradient, so lossy formats stay close to the original.
pub fn gradient(width: u32, height: u32) -> RgbImage {
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            pixels.push((x * 255 / width.max(1)) as u8);
            pixels.push((y * 255 / height.max(1)) as u8);
            pixels.push(128);
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

pub fn info(prompt: &str) -> GenerationInfo {
    GenerationInfo {
        prompt: prompt.into(),
        negative_prompt: "blurry, low quality".into(),
        steps: 20,
        sampler: SamplerKind::Euler,
        schedule: ScheduleKind::Karras,
        cfg_scale: 7.5,
        seed: 42,
        width: 64,
        height: 48,
        model_hash: "0123456789abcdef".into(),
        model: "easel-tiny".into(),
        denoising_strength: None,
        clip_skip: None,
        loras: Vec::new(),
    }
}

/// The chunks of a PNG as (type, data), parsed by hand.
pub fn png_chunks(bytes: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = bytes[at + 4..at + 8].try_into().unwrap();
        chunks.push((kind, bytes[at + 8..at + 8 + len].to_vec()));
        at += 12 + len;
    }
    chunks
}

/// A minimal PNG: signature, an IHDR claiming `width` × `height` RGB, a
/// tiny IDAT and IEND, with correct CRCs. It decodes to nothing sensible:
/// only the header matters.
pub fn png_with_header(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    push_chunk(&mut out, b"IHDR", &ihdr);
    push_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    push_chunk(&mut out, b"IEND", &[]);
    out
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
