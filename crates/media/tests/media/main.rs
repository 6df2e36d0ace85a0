//! Integration tests of encoding and decoding through the public API.

mod c2pa;
mod c2pa_python;
mod decode;
mod encode;
mod helpers;
mod watermark;
mod watermark_python;
mod watermark_robust;
