//! The API's integration tests: one binary, the real server on port 0 with
//! a fresh database per test, driven by a real HTTP client. SQLite and a
//! folder by default; PostgreSQL and S3 when the environment names them
//! (`backend`).

mod a1111;
mod audit;
mod backend;
mod backpressure;
mod bad_input;
mod batch_results;
mod batches;
mod device;
mod drift;
mod edits;
mod fleet;
mod generations;
mod helpers;
mod jobs;
mod loras;
mod metrics;
mod middleware;
mod models;
mod openai_sdk;
mod quality;
mod queue;
mod responsible;
mod review;
mod rollouts;
mod seeds;
mod service;
mod shadow;
mod tenancy;
mod tracing;
mod watermark;
mod web;
mod workers;
