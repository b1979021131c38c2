//! LyCORIS layers (LoHa, LoKr, Tucker-form convolutions) rebuild the change AUTOMATIC1111's Lora
//! extension makes: each checked against a plain LoRA of the same change or against the
//! definition written out as sums; files that do not fit the layer are refused before a factor
//! is read. (Whole pictures against PEFT's LoHa/LoKr are in the app's `extra_cases`.)

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use pentimento_engine::model::adapters::lora::{LayerName, LoraFile, Net};

const LAYER: &str = "down_blocks_0_resnets_0_conv1";

fn write(name: &str, tensors: &[(&str, Tensor)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pentimento-lycoris-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let map: std::collections::HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (format!("lora_unet_{LAYER}.{k}"), v.clone()))
        .collect();
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

/// The change the file makes to a weight of `target`'s shape.
fn change(name: &str, tensors: &[(&str, Tensor)], target: &[usize]) -> Result<Vec<f32>, String> {
    let file = LoraFile::open(&write(name, tensors)).map_err(|e| e.to_string())?;
    let key = (Net::Unet, LayerName::Underscored(LAYER.into()));
    file.change(&key, target)
        .map_err(|e| e.to_string())?
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| e.to_string())
}

/// Deterministic values in [-1, 1].
fn t(shape: &[usize], seed: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i as f32 + seed) * 0.731).sin()).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn scalar(v: f32) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{i}: {x} vs {y}");
    }
}

#[test]
fn loha_with_an_all_ones_half_is_the_lora_of_its_other_half() {
    for target in [&[6usize, 4][..], &[6, 4, 3, 3]] {
        let inner: usize = target[1..].iter().product();
        let (w1a, w1b) = (t(&[6, 2], 1.0), t(&[2, inner], 2.0));
        let ones = |s: &[usize]| Tensor::ones(s, DType::F32, &Device::Cpu).unwrap();
        let loha = change(
            "loha.safetensors",
            &[
                ("hada_w1_a", w1a.clone()),
                ("hada_w1_b", w1b.clone()),
                // A rank-1 product of ones: `(w1a·w1b) ⊙ 1`.
                ("hada_w2_a", ones(&[6, 1])),
                ("hada_w2_b", ones(&[1, inner])),
                ("alpha", scalar(3.0)),
            ],
            target,
        )
        .unwrap();
        let down = w1b.reshape(&[&[2][..], &target[1..]].concat()[..]).unwrap();
        let lora = change(
            "lora.safetensors",
            &[
                ("lora_up.weight", w1a),
                ("lora_down.weight", down),
                ("alpha", scalar(3.0)),
            ],
            target,
        )
        .unwrap();
        close(&loha, &lora);
    }
}

#[test]
fn loha_is_the_elementwise_product_of_its_halves() {
    let (w1a, w1b, w2a, w2b) = (
        t(&[5, 2], 1.0),
        t(&[2, 3], 2.0),
        t(&[5, 3], 3.0),
        t(&[3, 3], 4.0),
    );
    let got = change(
        "loha2.safetensors",
        &[
            ("hada_w1_a", w1a.clone()),
            ("hada_w1_b", w1b.clone()),
            ("hada_w2_a", w2a.clone()),
            ("hada_w2_b", w2b.clone()),
            ("alpha", scalar(1.0)),
        ],
        &[5, 3],
    )
    .unwrap();
    let m = |a: &Tensor, b: &Tensor| a.matmul(b).unwrap().to_vec2::<f32>().unwrap();
    let (p, q) = (m(&w1a, &w1b), m(&w2a, &w2b));
    // alpha 1 over w1b's dimension 2.
    let want: Vec<f32> = (0..5)
        .flat_map(|i| (0..3).map(move |j| (i, j)))
        .map(|(i, j)| p[i][j] * q[i][j] * 0.5)
        .collect();
    close(&got, &want);
}

#[test]
fn tucker_loha_and_cp_locon_equal_the_convolution_they_decompose() {
    // A LoCon with a Tucker core `mid [r, r, 3, 3]` is the plain LoCon whose down is
    // `mid · down` at each kernel position.
    let (up, down, mid) = (
        t(&[6, 2, 1, 1], 1.0),
        t(&[2, 4, 1, 1], 2.0),
        t(&[2, 2, 3, 3], 3.0),
    );
    let cp = change(
        "cp.safetensors",
        &[
            ("lora_up.weight", up.clone()),
            ("lora_down.weight", down.clone()),
            ("lora_mid.weight", mid.clone()),
        ],
        &[6, 4, 3, 3],
    )
    .unwrap();
    let (m, d) = (
        mid.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        down.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    let mut full = vec![0f32; 2 * 4 * 9];
    for r in 0..2 {
        for i in 0..4 {
            for k in 0..9 {
                full[(r * 4 + i) * 9 + k] =
                    (0..2).map(|s| m[(r * 2 + s) * 9 + k] * d[s * 4 + i]).sum();
            }
        }
    }
    let plain = change(
        "plain.safetensors",
        &[
            ("lora_up.weight", up.clone()),
            (
                "lora_down.weight",
                Tensor::from_vec(full, (2, 4, 3, 3), &Device::Cpu).unwrap(),
            ),
        ],
        &[6, 4, 3, 3],
    )
    .unwrap();
    close(&cp, &plain);
    // A LoHa half in Tucker form (`w1a [r, out]`, `w1b [r, in]`) is that same product.
    let ones = |s: &[usize]| Tensor::ones(s, DType::F32, &Device::Cpu).unwrap();
    let loha = change(
        "tucker.safetensors",
        &[
            ("hada_t1", mid),
            (
                "hada_w1_a",
                up.flatten_from(1)
                    .unwrap()
                    .t()
                    .unwrap()
                    .contiguous()
                    .unwrap(),
            ),
            ("hada_w1_b", down.flatten_from(1).unwrap()),
            ("hada_w2_a", ones(&[6, 1])),
            ("hada_w2_b", ones(&[1, 36])),
        ],
        &[6, 4, 3, 3],
    )
    .unwrap();
    close(&loha, &plain);
}

#[test]
fn lokr_is_the_kronecker_product_scaled_as_automatic1111_does() {
    let (w1, w2a, w2b) = (t(&[2, 2], 1.0), t(&[3, 1], 2.0), t(&[1, 18], 3.0));
    // Target [6, 4, 3, 3]: w1 [2, 2] ⊗ w2 [3, 2·9].
    let got = change(
        "lokr.safetensors",
        &[
            ("lokr_w1", w1.clone()),
            ("lokr_w2_a", w2a.clone()),
            ("lokr_w2_b", w2b.clone()),
            ("alpha", scalar(0.5)),
        ],
        &[6, 4, 3, 3],
    )
    .unwrap();
    let a = w1.to_vec2::<f32>().unwrap();
    let b = w2a.matmul(&w2b).unwrap().to_vec2::<f32>().unwrap();
    let mut want = vec![0f32; 6 * 36];
    for i in 0..2 {
        for j in 0..2 {
            for p in 0..3 {
                for q in 0..18 {
                    // alpha 0.5 over w2_b's dimension 1.
                    want[(i * 3 + p) * 36 + j * 18 + q] = a[i][j] * b[p][q] * 0.5;
                }
            }
        }
    }
    close(&got, &want);
    // Both factors whole: no dimension, so scale 1 whatever the alpha.
    let whole = change(
        "lokr_whole.safetensors",
        &[
            ("lokr_w1", w1),
            (
                "lokr_w2",
                w2a.matmul(&w2b).unwrap().reshape((3, 2, 3, 3)).unwrap(),
            ),
            ("alpha", scalar(0.5)),
        ],
        &[6, 4, 3, 3],
    )
    .unwrap();
    let twice: Vec<f32> = want.iter().map(|v| v * 2.0).collect();
    close(&whole, &twice);
}

#[test]
fn lycoris_layers_that_do_not_fit_are_refused_before_loading() {
    let target = [6usize, 4, 3, 3];
    let ones = |s: &[usize]| Tensor::ones(s, DType::F32, &Device::Cpu).unwrap();
    // (file name, its tensors, what the error must say)
    type Case<'a> = (&'a str, Vec<(&'a str, Tensor)>, &'a str);
    let cases: Vec<Case> = vec![
        // w1's rows do not divide the output channels.
        (
            "lokr_rows",
            vec![("lokr_w1", ones(&[4, 2])), ("lokr_w2", ones(&[2, 18]))],
            "not a LoKr",
        ),
        // A factor larger than the weight itself.
        (
            "lokr_big",
            vec![("lokr_w1", ones(&[1, 1])), ("lokr_w2", ones(&[6, 4000]))],
            "more than the 216",
        ),
        // A Tucker core for another kernel.
        (
            "loha_kernel",
            vec![
                ("hada_t1", ones(&[2, 2, 5, 5])),
                ("hada_w1_a", ones(&[2, 6])),
                ("hada_w1_b", ones(&[2, 4])),
                ("hada_w2_a", ones(&[6, 1])),
                ("hada_w2_b", ones(&[1, 36])),
            ],
            "not a LoHa",
        ),
        // LoHa and LoRA parts in one layer.
        (
            "mixed",
            vec![
                ("hada_w1_a", ones(&[6, 1])),
                ("hada_w1_b", ones(&[1, 36])),
                ("hada_w2_a", ones(&[6, 1])),
                ("hada_w2_b", ones(&[1, 36])),
                ("lora_down.weight", ones(&[1, 4, 3, 3])),
            ],
            "several adapter kinds",
        ),
        // A LoKr rank of zero.
        (
            "lokr_rank0",
            vec![
                ("lokr_w1", ones(&[2, 2])),
                ("lokr_w2_a", ones(&[3, 0])),
                ("lokr_w2_b", ones(&[0, 18])),
            ],
            "not a LoKr",
        ),
        // Non-finite Hadamard factors.
        (
            "loha_inf",
            vec![
                ("hada_w1_a", (ones(&[6, 1]) * f64::INFINITY).unwrap()),
                ("hada_w1_b", ones(&[1, 36])),
                ("hada_w2_a", ones(&[6, 1])),
                ("hada_w2_b", ones(&[1, 36])),
            ],
            "NaN or infinite",
        ),
        // A scalar where a matrix belongs.
        (
            "lokr_scalar",
            vec![("lokr_w1", scalar(1.0)), ("lokr_w2", ones(&[6, 36]))],
            "not a LoKr",
        ),
    ];
    for (name, tensors, expected) in cases {
        let e = change(&format!("{name}.safetensors"), &tensors, &target)
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        assert!(e.contains(expected) && e.contains(name), "{name}: {e}");
    }
}
