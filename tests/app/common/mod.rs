#![allow(dead_code)]

pub mod fake_hub;
pub mod serve_process;

#[path = "../../support/fixtures.rs"]
mod fixtures;
pub use fixtures::*;

/// Runs the `pentimento` binary with its model-hash cache in `cache` (never the user's).
pub fn run_cli(args: &[&str], cache: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(args)
        .env("PENTIMENTO_CACHE_DIR", cache)
        .output()
        .unwrap()
}
