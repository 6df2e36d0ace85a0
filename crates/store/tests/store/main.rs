//! Integration tests of the store: each test opens a fresh database in a
//! temporary folder and drives it through the public API only.

mod admission;
mod audit;
mod blobs;
mod helpers;
mod images;
mod jobs;
mod provenance;
mod queue;
mod s3;
