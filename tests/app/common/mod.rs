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

/// The CRC-32 of PNG chunks (for hand-made, hostile PNGs).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
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
