//! The `easel` binary: parses flags, loads the config, calls library code.

mod admin_api;
mod batch;
mod bench;
mod bench_queue;
mod bench_serve;
mod bench_watermark;
mod commands;
mod drift;
mod eval;
mod keys;
mod loadtest;
mod models;
mod progress;
mod rollout;
mod top;
mod verify;
mod workers;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    // Activation buffers are reused across denoising steps instead of being
    // unmapped and faulted in again (easel_engine::alloc).
    easel_engine::alloc::keep_freed_buffers();
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
