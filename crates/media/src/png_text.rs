//! Reading the text chunks of a PNG.

use std::io::Cursor;

use crate::error::MediaError;

/// Every tEXt, zTXt and iTXt chunk of a PNG, as (keyword, text) in file
/// order by kind (tEXt, then zTXt, then iTXt). Chunks after the image data
/// are included; the pixels are skipped, not decoded. A text that does not
/// decompress within 1 MiB is left out rather than inflated without bound.
pub fn read_png_text(bytes: &[u8]) -> Result<Vec<(String, String)>, MediaError> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(MediaError::invalid("not a PNG file"));
    }
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_ignore_text_chunk(false);
    let mut reader = decoder.read_info().map_err(MediaError::invalid)?;
    reader.finish().map_err(MediaError::invalid)?;
    let info = reader.info();
    let mut out = Vec::new();
    for chunk in &info.uncompressed_latin1_text {
        out.push((chunk.keyword.clone(), chunk.text.clone()));
    }
    for chunk in &info.compressed_latin1_text {
        let mut chunk = chunk.clone();
        if chunk.decompress_text_with_limit(1 << 20).is_ok()
            && let Ok(text) = chunk.get_text()
        {
            out.push((chunk.keyword.clone(), text));
        }
    }
    for chunk in &info.utf8_text {
        let mut chunk = chunk.clone();
        if chunk.decompress_text_with_limit(1 << 20).is_ok()
            && let Ok(text) = chunk.get_text()
        {
            out.push((chunk.keyword.clone(), text));
        }
    }
    Ok(out)
}
