//! PyTorch zip checkpoints: every archive `torch.save` writes opens, with the tensors PyTorch
//! itself loads (tests/fixtures/ckpt-zip, 150 files, 13 of which the `zip` crate from 9.1 on
//! rejects), and hostile archives get clean errors.

use std::path::Path;

use crate::common::fixture;
use candle_core::{DType, Device};
use pentimento::engine::model::weights::WeightFile;

#[derive(serde::Deserialize)]
struct ZipCase {
    file: String,
    tensors: usize,
    global_step: i64,
    elements: usize,
    sum: f64,
}

/// Tensor count, element count and value sum (in f64) of a checkpoint, as we read it.
fn totals(path: &Path) -> (usize, usize, f64, Option<i64>) {
    let w = WeightFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let names: Vec<String> = w.names().map(str::to_string).collect();
    let mut elements = 0;
    let mut sum = 0.0;
    for name in &names {
        let t = w.load(name, &Device::Cpu).unwrap();
        elements += t.elem_count();
        sum += t
            .to_dtype(DType::F64)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
    }
    (names.len(), elements, sum, w.global_step())
}

#[test]
fn every_torch_save_archive_opens_with_pytorchs_counts_and_sums() {
    let cases: Vec<ZipCase> =
        serde_json::from_str(&std::fs::read_to_string(fixture("ckpt-zip/cases.json")).unwrap())
            .unwrap();
    assert_eq!(cases.len(), 150);
    for case in &cases {
        let (tensors, elements, sum, step) = totals(&fixture(&format!("ckpt-zip/{}", case.file)));
        assert_eq!(tensors, case.tensors, "{}", case.file);
        assert_eq!(elements, case.elements, "{}", case.file);
        assert!(
            (sum - case.sum).abs() <= 1e-6 * case.sum.abs().max(1.0),
            "{}: sum {sum}, PyTorch {}",
            case.file,
            case.sum
        );
        assert_eq!(step, Some(case.global_step), "{}", case.file);
    }
}

/// Every prefix of a real checkpoint, and copies with bytes overwritten all through its zip
/// records and pickle, open with an error or a consistent index: never a panic or a hang.
#[test]
fn damaged_checkpoints_fail_cleanly() {
    let bytes = std::fs::read(fixture("ckpt-zip/sd15inp-13.ckpt")).unwrap();
    let dir = std::env::temp_dir().join(format!("pentimento-damaged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("damaged.ckpt");
    let step = (bytes.len() / 97).max(1);
    for n in (0..bytes.len()).step_by(step) {
        std::fs::write(&path, &bytes[..n]).unwrap();
        assert!(WeightFile::open(&path).is_err(), "truncated at {n} opened");
    }
    for i in (0..bytes.len()).step_by(7) {
        for v in [0x00, 0xff, 0x80] {
            let mut b = bytes.clone();
            b[i] = v;
            std::fs::write(&path, &b).unwrap();
            if let Ok(w) = WeightFile::open(&path) {
                let names: Vec<String> = w.names().map(str::to_string).collect();
                for name in names {
                    let _ = w.load(&name, &Device::Cpu);
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[derive(serde::Deserialize)]
struct NamedCase {
    file: String,
    tensors: usize,
    elements: usize,
    sum: f64,
    #[serde(default)]
    global_step: Option<i64>,
}

/// The files users name first, saved by torch.save under those names (the archive's root is
/// named after the file): the tiny models open with every tensor PyTorch reads.
#[test]
fn checkpoints_under_the_names_users_have_open() {
    let cases: Vec<NamedCase> =
        serde_json::from_str(&std::fs::read_to_string(fixture("ckpt-names/cases.json")).unwrap())
            .unwrap();
    assert_eq!(cases.len(), 4);
    for case in &cases {
        let (tensors, elements, sum, step) = totals(&fixture(&format!("ckpt-names/{}", case.file)));
        assert_eq!(tensors, case.tensors, "{}", case.file);
        assert_eq!(elements, case.elements, "{}", case.file);
        assert!(
            (sum - case.sum).abs() <= 1e-6 * case.sum.abs().max(1.0),
            "{}: sum {sum}, PyTorch {}",
            case.file,
            case.sum
        );
        assert_eq!(step, case.global_step, "{}", case.file);
    }
}

/// The inpainting checkpoint under its published name holds exactly the weights of the fixture it
/// was saved from (so it generates the same), and `models inspect` reads it.
#[test]
fn sd_v1_5_inpainting_ckpt_holds_the_fixtures_weights_and_inspects() {
    let model = fixture("ckpt-names/sd-v1-5-inpainting.ckpt");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(["models", "inspect", model.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("inpainting"), "{out}");
    let a = WeightFile::open(&model).unwrap();
    let b = WeightFile::open(&fixture("tiny-sd15-inpainting.ckpt")).unwrap();
    let mut names: Vec<String> = a.names().map(str::to_string).collect();
    names.sort();
    for name in &names {
        let (x, y) = (
            a.load(name, &Device::Cpu).unwrap(),
            b.load(name, &Device::Cpu).unwrap(),
        );
        assert_eq!(x.dtype(), y.dtype(), "{name}");
        let d = (x.to_dtype(DType::F64).unwrap() - y.to_dtype(DType::F64).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_eq!(d, 0.0, "{name}");
    }
}
