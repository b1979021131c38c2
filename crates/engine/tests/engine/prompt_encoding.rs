//! AUTOMATIC1111-style prompt encoding against diffusers and against AUTOMATIC1111's rules.

use crate::common::{assert_close, fixture, max_abs_diff, reference};
use candle_core::{DType, Device, Tensor};
use pentimento_engine::model::clip::{ClipLayout, ClipTextModel};
use pentimento_engine::model::config::ClipConfig;
use pentimento_engine::model::{LoadOptions, StableDiffusion};
use pentimento_engine::GenerationParams;

fn model() -> StableDiffusion {
    StableDiffusion::load(&fixture("tiny-sd15"), &LoadOptions::cpu()).unwrap()
}

fn prompts() -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(fixture("tiny-sd15-prompts.json")).unwrap())
        .unwrap()
}

#[test]
fn plain_prompts_encode_as_diffusers() {
    let sd = model();
    let r = reference();
    // Prompts 0 and 1 have no emphasis syntax and fit in one chunk.
    for i in [0, 1] {
        let got = sd
            .text
            .encode_weighted(&prompts()[i], 1, &Device::Cpu)
            .unwrap();
        assert_eq!(got.dims(), &[1, 77, 32]);
        assert_close(
            &format!("text_embeddings.{i}"),
            &got,
            &r[&format!("text_embeddings.{i}")],
            1e-4,
        );
    }
}

#[test]
fn long_prompts_are_chunked_not_truncated() {
    let sd = model();
    let r = reference();
    let long = &prompts()[3];
    let tokens = sd.text.tokenizer.tokens(long).unwrap().len();
    assert!(tokens > 75);
    let got = sd.text.encode_weighted(long, 1, &Device::Cpu).unwrap();
    let chunks = tokens.div_ceil(75);
    assert_eq!(got.dims(), &[1, 77 * chunks, 32]);
    // The first chunk is exactly what diffusers encodes when it truncates.
    assert_close(
        "first chunk",
        &got.narrow(1, 0, 77).unwrap(),
        &r["text_embeddings.3"],
        1e-4,
    );
    // The second chunk is the rest of the prompt, not padding.
    let empty = sd.text.encode_weighted("", 1, &Device::Cpu).unwrap();
    assert!(max_abs_diff(&got.narrow(1, 77, 77).unwrap(), &empty) > 1e-2);
}

#[test]
fn emphasis_multiplies_outputs_then_restores_the_mean() {
    let sd = model();
    let prompt = "a (cat:1.5) on a [mat]";
    let got = sd.text.encode_weighted(prompt, 1, &Device::Cpu).unwrap();

    // AUTOMATIC1111's "Original" rule, computed here by hand from the unweighted encoding.
    let tok = &sd.text.tokenizer;
    let pieces: [(&str, f64); 5] = [
        ("a ", 1.0),
        ("cat", 1.5),
        (" on a ", 1.0),
        ("mat", 1.0 / 1.1),
        ("", 1.0),
    ];
    let mut tokens = vec![];
    let mut weights = vec![1.0f32]; // BOS
    for (text, w) in pieces {
        for t in tok.tokens(text).unwrap() {
            tokens.push(t);
            weights.push(w as f32);
        }
    }
    weights.resize(77, 1.0);
    let z = sd
        .text
        .encode_ids(&tok.ids_for_pass(&tokens), &Device::Cpu)
        .unwrap();
    let w = Tensor::from_vec(weights, (1, 77, 1), &Device::Cpu).unwrap();
    let weighted = z.broadcast_mul(&w).unwrap();
    let scale = (z.mean_all().unwrap() / weighted.mean_all().unwrap()).unwrap();
    let want = weighted.broadcast_mul(&scale).unwrap();

    assert_close("emphasis", &got, &want, 1e-5);
    assert!(max_abs_diff(&got, &z) > 1e-3, "emphasis changed nothing");
}

#[test]
fn escaped_brackets_are_literal_text() {
    let sd = model();
    let escaped = sd
        .text
        .encode_weighted("a \\(cat\\)", 1, &Device::Cpu)
        .unwrap();
    let ids = sd
        .text
        .tokenizer
        .ids_for_pass(&sd.text.tokenizer.tokens("a (cat)").unwrap());
    let literal = sd.text.encode_ids(&ids, &Device::Cpu).unwrap();
    assert_close("escaped", &escaped, &literal, 1e-6);
}

#[test]
fn break_starts_a_new_chunk() {
    let sd = model();
    let got = sd
        .text
        .encode_weighted("a cat BREAK a dog", 1, &Device::Cpu)
        .unwrap();
    assert_eq!(got.dims(), &[1, 154, 32]);
    let dog = sd.text.encode_weighted("a dog", 1, &Device::Cpu).unwrap();
    assert_close("second chunk", &got.narrow(1, 77, 77).unwrap(), &dog, 1e-6);
}

#[test]
fn negative_and_positive_are_padded_to_the_same_length() {
    let sd = model();
    let params = GenerationParams {
        prompt: prompts()[3].clone(),
        negative_prompt: String::new(),
        ..Default::default()
    };
    let context = sd.prompt_context(&params).unwrap();
    assert_eq!(context.dims()[0], 2);
    assert_eq!(context.dims()[1] % 77, 0);
    assert!(context.dims()[1] > 77);
    // The negative prompt's extra chunks are encodings of the empty prompt.
    let empty = sd.text.encode_weighted("", 1, &Device::Cpu).unwrap();
    let uncond_tail = context.narrow(0, 0, 1).unwrap().narrow(1, 77, 77).unwrap();
    assert_close("padding", &uncond_tail, &empty, 1e-6);
}

#[test]
fn clip_skip_uses_an_earlier_layer_then_the_final_norm() {
    let sd = model();
    let path = fixture("tiny-sd15/text_encoder/model.safetensors");
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[path], DType::F32, &Device::Cpu)
    }
    .unwrap();
    let json = std::fs::read_to_string(fixture("tiny-sd15/text_encoder/config.json")).unwrap();
    let mut cfg = ClipConfig::from_transformers_json(&json).unwrap();
    cfg.num_layers -= 1;
    let shallow = ClipTextModel::load(vb.pp("text_model"), &cfg, ClipLayout::HuggingFace).unwrap();

    let prompt = &prompts()[0];
    let ids = sd
        .text
        .tokenizer
        .ids_for_pass(&sd.text.tokenizer.tokens(prompt).unwrap());
    let ids_t = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let want = shallow.forward(&ids_t, 0).unwrap();
    let got = sd.text.encode_weighted(prompt, 2, &Device::Cpu).unwrap();
    assert_close("clip skip 2", &got, &want, 1e-6);
    let last = sd.text.encode_weighted(prompt, 1, &Device::Cpu).unwrap();
    assert!(max_abs_diff(&got, &last) > 1e-3);
}
