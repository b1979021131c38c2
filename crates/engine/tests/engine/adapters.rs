//! LoRAs change a loaded model for a job and leave it as it was: the next job without them is
//! bit-identical to a fresh load; the same LoRAs twice give the same picture; hostile LoRA files
//! are refused with the file and the layer named, never a panic or a silent no-op.

use std::ops::ControlFlow;
use std::path::PathBuf;

use crate::common::fixture;
use pentimento_engine::denoise::StepInfo;
use pentimento_engine::model::adapters::LoraRef;
use pentimento_engine::model::{LoadOptions, StableDiffusion};
use pentimento_engine::{GenerationParams, Job, JobKind, RgbImage};

fn image(sd: &StableDiffusion, loras: Vec<LoraRef>) -> pentimento_engine::error::Result<RgbImage> {
    let params = GenerationParams {
        prompt: "an ink drawing of a heron".into(),
        steps: 3,
        width: 64,
        height: 64,
        seed: 5,
        ..Default::default()
    };
    let job = Job::new(JobKind::Txt2Img, params).with_loras(loras);
    let mut go = |_: StepInfo| ControlFlow::Continue(());
    Ok(sd.run(&job, &mut go)?.remove(0).image)
}

fn lora(name: &str, weight: f32) -> LoraRef {
    LoraRef::new(fixture(&format!("extra/loras/{name}.safetensors")), weight)
}

#[test]
fn a_job_without_loras_after_one_with_them_is_bit_identical_to_a_fresh_load() {
    let sd = StableDiffusion::load(&fixture("tiny-sd15.safetensors"), &LoadOptions::cpu()).unwrap();
    let fresh = image(&sd, vec![]).unwrap();
    let with = image(&sd, vec![lora("ink_kohya", 0.8), lora("glow_peft", -0.5)]).unwrap();
    assert_ne!(fresh.pixels, with.pixels, "the LoRAs change the picture");
    let again = image(&sd, vec![lora("ink_kohya", 0.8), lora("glow_peft", -0.5)]).unwrap();
    assert_eq!(with.pixels, again.pixels);
    let after = image(&sd, vec![]).unwrap();
    assert_eq!(
        fresh.pixels, after.pixels,
        "the model is restored bit for bit"
    );
    // Weight 0 is no change at all.
    assert_eq!(
        image(&sd, vec![lora("ink_kohya", 0.0)]).unwrap().pixels,
        fresh.pixels
    );
}

fn write(name: &str, tensors: &[(&str, candle_core::Tensor)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pentimento-lora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let map: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

#[test]
fn hostile_lora_files_are_refused_naming_what_is_wrong() {
    use candle_core::{Device, Tensor};
    let sd = StableDiffusion::load(&fixture("tiny-sd15.safetensors"), &LoadOptions::cpu()).unwrap();
    let fresh = image(&sd, vec![]).unwrap();
    let cpu = Device::Cpu;
    let key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    let ones = |shape: &[usize]| Tensor::ones(shape, candle_core::DType::F32, &cpu).unwrap();
    // (file name, its tensors, what the error must say)
    type Case<'a> = (&'a str, Vec<(String, Tensor)>, &'a str);
    let cases: Vec<Case> = vec![
        // A layer this model does not have (an SDXL LoRA on SD 1.5).
        (
            "other_model.safetensors",
            vec![
                (
                    "lora_unet_input_blocks_4_1_transformer_blocks_9_attn1_to_q.lora_down.weight"
                        .into(),
                    ones(&[2, 32]),
                ),
                (
                    "lora_unet_input_blocks_4_1_transformer_blocks_9_attn1_to_q.lora_up.weight"
                        .into(),
                    ones(&[32, 2]),
                ),
            ],
            "no match in this model",
        ),
        // Factors that do not fit the layer.
        (
            "wrong_shape.safetensors",
            vec![
                (format!("{key}.lora_down.weight"), ones(&[2, 7])),
                (format!("{key}.lora_up.weight"), ones(&[32, 2])),
            ],
            "not a LoRA of a weight",
        ),
        // Factors that do not multiply at all.
        (
            "mismatched.safetensors",
            vec![
                (format!("{key}.lora_down.weight"), ones(&[3, 32])),
                (format!("{key}.lora_up.weight"), ones(&[32, 2])),
            ],
            "not a LoRA of a weight",
        ),
        // Half a layer.
        (
            "half.safetensors",
            vec![(format!("{key}.lora_down.weight"), ones(&[2, 32]))],
            "not a LoRA of a weight",
        ),
        // NaN in a factor.
        (
            "nan.safetensors",
            vec![
                (
                    format!("{key}.lora_down.weight"),
                    (ones(&[2, 32]) * f64::NAN).unwrap(),
                ),
                (format!("{key}.lora_up.weight"), ones(&[32, 2])),
            ],
            "NaN",
        ),
        // An alpha that is not one number.
        (
            "alpha.safetensors",
            vec![
                (format!("{key}.lora_down.weight"), ones(&[2, 32])),
                (format!("{key}.lora_up.weight"), ones(&[32, 2])),
                (format!("{key}.alpha"), ones(&[3])),
            ],
            "alpha",
        ),
        // One layer twice, in kohya and PEFT form: it would change twice.
        (
            "twice.safetensors",
            vec![
                (format!("{key}.lora_down.weight"), ones(&[2, 32])),
                (format!("{key}.lora_up.weight"), ones(&[32, 2])),
                (
                    "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight".into(),
                    ones(&[2, 32]),
                ),
                (
                    "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight".into(),
                    ones(&[32, 2]),
                ),
            ],
            "would change twice",
        ),
        // `lora_te_` and `lora_te1_` for one layer: which factors count would be a guess.
        (
            "te_twice.safetensors",
            vec![
                ("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight".into(), ones(&[2, 32])),
                ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight".into(), ones(&[1, 32])),
                ("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight".into(), ones(&[32, 2])),
            ],
            "same part",
        ),
        // Transposed factors whose product has the right number of elements.
        (
            "transposed.safetensors",
            vec![
                ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_2.lora_down.weight".into(), ones(&[4, 32])),
                ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_2.lora_up.weight".into(), ones(&[128, 4])),
            ],
            "not a LoRA of a weight",
        ),
        // A factor of rank 3 whose elements happen to fit.
        (
            "rank3.safetensors",
            vec![
                (format!("{key}.lora_down.weight"), ones(&[2, 16, 2])),
                (format!("{key}.lora_up.weight"), ones(&[32, 2])),
            ],
            "not a LoRA of a weight",
        ),
        // A rank above the weight's own: more bytes than the layer, for nothing.
        (
            "rank_huge.safetensors",
            vec![
                (format!("{key}.lora_down.weight"), ones(&[64, 32])),
                (format!("{key}.lora_up.weight"), ones(&[32, 64])),
            ],
            "more than the 1024",
        ),
        // Integer factors.
        (
            "ints.safetensors",
            vec![
                (format!("{key}.lora_down.weight"), ones(&[2, 32]).to_dtype(candle_core::DType::I64).unwrap()),
                (format!("{key}.lora_up.weight"), ones(&[32, 2])),
            ],
            "not as floating point",
        ),
        // An alpha a trained file never has.
        (
            "alpha_huge.safetensors",
            vec![
                (format!("{key}.lora_down.weight"), ones(&[2, 32])),
                (format!("{key}.lora_up.weight"), ones(&[32, 2])),
                (format!("{key}.alpha"), Tensor::new(&[1e30f32], &cpu).unwrap()),
            ],
            "alpha",
        ),
        // Finite factors whose change dwarfs the layer.
        (
            "enormous.safetensors",
            vec![
                (format!("{key}.lora_down.weight"), (ones(&[2, 32]) * 1e5).unwrap()),
                (format!("{key}.lora_up.weight"), (ones(&[32, 2]) * 1e5).unwrap()),
            ],
            "times its own weights",
        ),
        // Not a LoRA at all.
        (
            "model.safetensors",
            vec![("conv_in.weight".into(), ones(&[4]))],
            "no LoRA layers",
        ),
        // Half a LyCORIS LoHa.
        (
            "loha.safetensors",
            vec![(format!("{key}.hada_w1_a"), ones(&[32, 2]))],
            "not a LoHa of a weight",
        ),
        // A DoRA: its magnitude cannot be dropped without changing the picture.
        (
            "dora.safetensors",
            vec![
                (format!("{key}.lora_down.weight"), ones(&[2, 32])),
                (format!("{key}.lora_up.weight"), ones(&[32, 2])),
                (format!("{key}.dora_scale"), ones(&[32, 1])),
            ],
            "DoRA",
        ),
    ];
    for (name, tensors, expected) in cases {
        let refs: Vec<(&str, Tensor)> = tensors
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let path = write(name, &refs);
        let e = image(&sd, vec![LoraRef::new(path, 1.0)])
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"))
            .to_string();
        assert!(
            e.contains(expected) && (e.contains(name) || name == "enormous.safetensors"),
            "{name}: {e}"
        );
    }
    // A truncated file, a missing one, and weights out of bounds.
    let good = std::fs::read(fixture("extra/loras/glow_peft.safetensors")).unwrap();
    let cut = write("cut.safetensors", &[]);
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    assert!(image(&sd, vec![LoraRef::new(cut, 1.0)]).is_err());
    assert!(image(&sd, vec![lora("no_such_lora", 1.0)]).is_err());
    for weight in [f32::NAN, f32::INFINITY, 1e6] {
        assert!(
            image(&sd, vec![lora("ink_kohya", weight)]).is_err(),
            "{weight}"
        );
    }
    assert!(image(&sd, (0..40).map(|_| lora("glow_peft", 0.1)).collect()).is_err());
    // After all of that, the model is still itself.
    assert_eq!(image(&sd, vec![]).unwrap().pixels, fresh.pixels);
}

#[test]
fn hostile_embedding_files_are_refused_naming_what_is_wrong() {
    use candle_core::{DType, Device, Tensor};
    use pentimento_engine::model::adapters::embedding::{Embedding, EmbeddingRef};
    let cpu = Device::Cpu;
    let cases: Vec<(&str, &str, Tensor, &str)> = vec![
        (
            "scalar.safetensors",
            "emb_params",
            Tensor::new(1f32, &cpu).unwrap(),
            "not vectors",
        ),
        (
            "rank3.safetensors",
            "emb_params",
            Tensor::zeros((1, 2, 32), DType::F32, &cpu).unwrap(),
            "not vectors",
        ),
        (
            "none.safetensors",
            "emb_params",
            Tensor::zeros((0, 32), DType::F32, &cpu).unwrap(),
            "0 vectors",
        ),
        (
            "many.safetensors",
            "emb_params",
            Tensor::zeros((76, 32), DType::F32, &cpu).unwrap(),
            "76 vectors",
        ),
        (
            "nan.safetensors",
            "emb_params",
            (Tensor::ones((2, 32), DType::F32, &cpu).unwrap() * f64::NAN).unwrap(),
            "NaN",
        ),
        (
            "sdxl.safetensors",
            "clip_l",
            Tensor::zeros((2, 768), DType::F32, &cpu).unwrap(),
            "SDXL",
        ),
    ];
    for (file, key, tensor, expected) in cases {
        let mut tensors = vec![(key, tensor.clone())];
        if key == "clip_l" {
            tensors.push(("clip_g", tensor));
        }
        let path = write(file, &tensors);
        let e = Embedding::read(&EmbeddingRef {
            name: "x".into(),
            path,
        })
        .err()
        .unwrap_or_else(|| panic!("{file} was accepted"))
        .to_string();
        assert!(e.contains(expected) && e.contains(file), "{file}: {e}");
    }
    // Two unrelated tensors: not an embedding.
    let path = write(
        "model.safetensors",
        &[
            ("a", Tensor::zeros(2, DType::F32, &cpu).unwrap()),
            ("b", Tensor::zeros(2, DType::F32, &cpu).unwrap()),
        ],
    );
    assert!(Embedding::read(&EmbeddingRef {
        name: "x".into(),
        path
    })
    .is_err());
}
