//! Helpers both crates' tests share (each includes this file with `#[path]`): fixture paths,
//! reference tensors, differences, PNGs as tensors, temporary folders.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};

/// A file of the workspace's `tests/fixtures`, from whichever crate's tests ask.
pub fn fixture(name: &str) -> PathBuf {
    let mut root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !root.join("tests/fixtures").is_dir() {
        assert!(root.pop(), "no tests/fixtures above the crate");
    }
    root.join("tests/fixtures").join(name)
}

pub fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("tiny-sd15-reference.safetensors"), &Device::Cpu)
        .expect("reference file")
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

pub fn assert_close(name: &str, got: &Tensor, want: &Tensor, tol: f32) {
    let d = max_abs_diff(got, want);
    assert!(d <= tol, "{name}: max abs diff {d:e} exceeds {tol:e}");
}

/// A PNG as a `(1, 3, h, w)` tensor in [0, 1], like diffusers' float output.
pub fn png_tensor(path: &std::path::Path) -> Tensor {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (w, h) = img.dimensions();
    let data: Vec<f32> = img
        .into_raw()
        .into_iter()
        .map(|v| v as f32 / 255.0)
        .collect();
    Tensor::from_vec(data, (h as usize, w as usize, 3), &Device::Cpu)
        .and_then(|t| t.permute((2, 0, 1)))
        .and_then(|t| t.unsqueeze(0))
        .unwrap()
}

/// A fresh-named temporary folder for one test: `pentimento-<group>-<pid>-<name>`.
pub fn temp_dir(group: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pentimento-{group}-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
