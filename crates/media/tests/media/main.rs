//! Integration tests of encoding and decoding through the public API.

mod decode;
mod encode;
mod helpers;
