//! Best-effort readers for the JSON other tools embed: InvokeAI's `invokeai_metadata` and
//! ComfyUI's `prompt` (its node graph).

use serde_json::Value;

use super::a1111::Parameters;

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn push(p: &mut Parameters, key: &str, v: Option<&Value>) {
    if let Some(text) = v.and_then(text_of) {
        p.fields.push((key.to_string(), text));
    }
}

/// InvokeAI 3+/4+: `positive_prompt`, `negative_prompt`, `seed`, `steps`, `cfg_scale`,
/// `scheduler`, `width`, `height`, `model`.
pub fn invokeai(json: &str) -> Option<Parameters> {
    let v: Value = serde_json::from_str(json).ok()?;
    let obj = v.as_object()?;
    let mut p = Parameters {
        prompt: obj
            .get("positive_prompt")
            .and_then(text_of)
            .unwrap_or_default(),
        negative_prompt: obj
            .get("negative_prompt")
            .and_then(text_of)
            .unwrap_or_default(),
        fields: vec![],
    };
    push(&mut p, "Steps", obj.get("steps"));
    push(&mut p, "Sampler", obj.get("scheduler"));
    push(&mut p, "CFG scale", obj.get("cfg_scale"));
    push(&mut p, "Seed", obj.get("seed"));
    if let (Some(w), Some(h)) = (
        obj.get("width").and_then(text_of),
        obj.get("height").and_then(text_of),
    ) {
        p.fields.push(("Size".into(), format!("{w}x{h}")));
    }
    let model = obj
        .get("model")
        .and_then(|m| m.get("name").or_else(|| m.get("model_name")).or(Some(m)));
    push(&mut p, "Model", model);
    push(&mut p, "Denoising strength", obj.get("strength"));
    Some(p)
}

/// ComfyUI: find a sampler node and follow its links to the prompt texts, the latent size and
/// the checkpoint loader.
pub fn comfyui(json: &str) -> Option<Parameters> {
    let graph: Value = serde_json::from_str(json).ok()?;
    let nodes = graph.as_object()?;
    let node = |link: &Value| -> Option<&Value> {
        let id = link.as_array()?.first()?;
        let key = text_of(id)?;
        nodes.get(&key)
    };
    let sampler = nodes.values().find(|n| {
        n.get("class_type")
            .and_then(Value::as_str)
            .is_some_and(|c| c.starts_with("KSampler"))
    })?;
    let inputs = sampler.get("inputs")?;
    // A prompt node's text may itself be a link to a primitive or string node.
    let prompt_text = |link: Option<&Value>| -> String {
        let mut current = link.and_then(node);
        for _ in 0..8 {
            let Some(n) = current else { break };
            let inputs = n.get("inputs");
            match inputs.and_then(|i| {
                i.get("text")
                    .or_else(|| i.get("value"))
                    .or_else(|| i.get("string"))
            }) {
                Some(Value::String(s)) => return s.clone(),
                Some(link @ Value::Array(_)) => current = node(link),
                _ => current = inputs.and_then(|i| i.get("conditioning")).and_then(node),
            }
        }
        String::new()
    };
    let mut p = Parameters {
        prompt: prompt_text(inputs.get("positive")),
        negative_prompt: prompt_text(inputs.get("negative")),
        fields: vec![],
    };
    push(&mut p, "Steps", inputs.get("steps"));
    push(&mut p, "Sampler", inputs.get("sampler_name"));
    push(&mut p, "Schedule type", inputs.get("scheduler"));
    push(&mut p, "CFG scale", inputs.get("cfg"));
    push(
        &mut p,
        "Seed",
        inputs.get("seed").or_else(|| inputs.get("noise_seed")),
    );
    if let Some(latent) = inputs
        .get("latent_image")
        .and_then(node)
        .and_then(|n| n.get("inputs"))
    {
        if let (Some(w), Some(h)) = (
            latent.get("width").and_then(text_of),
            latent.get("height").and_then(text_of),
        ) {
            p.fields.push(("Size".into(), format!("{w}x{h}")));
        }
    }
    let loader = nodes
        .values()
        .find(|n| n.get("class_type").and_then(Value::as_str) == Some("CheckpointLoaderSimple"));
    push(
        &mut p,
        "Model",
        loader
            .and_then(|n| n.get("inputs"))
            .and_then(|i| i.get("ckpt_name")),
    );
    push(&mut p, "Denoising strength", inputs.get("denoise"));
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comfyui_graph() {
        let json = r#"{
          "3": {"class_type": "KSampler", "inputs": {"seed": 156680208700286, "steps": 20, "cfg": 8,
                "sampler_name": "euler", "scheduler": "normal", "denoise": 1,
                "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
          "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
          "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "beautiful scenery", "clip": ["4", 1]}},
          "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}}
        }"#;
        let p = comfyui(json).unwrap();
        assert_eq!(p.prompt, "beautiful scenery");
        assert_eq!(p.negative_prompt, "text, watermark");
        assert_eq!(p.get("Seed"), Some("156680208700286"));
        assert_eq!(p.get("Size"), Some("512x768"));
        assert_eq!(p.get("Model"), Some("v1-5-pruned-emaonly.safetensors"));
        assert!(comfyui("{\"1\": 5}").is_none());
        assert!(comfyui("not json").is_none());
    }

    #[test]
    fn invokeai_metadata() {
        let json = r#"{"generation_mode": "txt2img", "positive_prompt": "a lighthouse", "negative_prompt": "",
            "width": 512, "height": 512, "seed": 3, "steps": 30, "cfg_scale": 7.5, "scheduler": "euler_a",
            "model": {"name": "stable-diffusion-v1-5", "base": "sd-1"}}"#;
        let p = invokeai(json).unwrap();
        assert_eq!(p.prompt, "a lighthouse");
        assert_eq!(p.get("Sampler"), Some("euler_a"));
        assert_eq!(p.get("Model"), Some("stable-diffusion-v1-5"));
        assert_eq!(p.get("CFG scale"), Some("7.5"));
    }
}
