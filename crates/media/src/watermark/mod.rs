//! Invisible watermark (work in progress).
