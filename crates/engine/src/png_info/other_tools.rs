//! Best-effort readers for what other tools embed: InvokeAI's `invokeai_metadata` and its older
//! `sd-metadata` JSON and `Dream` command line, ComfyUI's `prompt` (its node graph), NovelAI's
//! `Comment` JSON, Fooocus's `parameters` JSON. Each maps the tool's fields to AUTOMATIC1111's
//! names (`Steps`, `Sampler`, `CFG scale`, `Seed`, `Size`, `Model`, …) and keeps the tool's
//! other fields under their own names.

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
    // The model: the sampler's `model` input followed back through LoRA loaders and the like
    // to the node that names a checkpoint; else any checkpoint loader.
    let mut current = inputs.get("model").and_then(node);
    let mut checkpoint = None;
    for _ in 0..16 {
        let Some(n) = current else { break };
        let i = n.get("inputs");
        if let Some(name) = i.and_then(|i| i.get("ckpt_name").or_else(|| i.get("unet_name"))) {
            checkpoint = Some(name);
            break;
        }
        current = i.and_then(|i| i.get("model")).and_then(node);
    }
    let checkpoint = checkpoint.or_else(|| {
        nodes
            .values()
            .filter_map(|n| n.get("inputs")?.get("ckpt_name"))
            .next()
    });
    push(&mut p, "Model", checkpoint);
    push(&mut p, "Denoising strength", inputs.get("denoise"));
    Some(p)
}

/// The JSON fields of `obj` not in `taken`, verbatim (strings as they are, the rest as JSON).
fn keep_others(p: &mut Parameters, obj: &serde_json::Map<String, Value>, taken: &[&str]) {
    for (k, v) in obj {
        if taken.contains(&k.as_str()) || p.fields.iter().any(|(f, _)| f == k) {
            continue;
        }
        let text = match v {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        p.fields.push((k.clone(), text));
    }
}

/// NovelAI: the `Comment` chunk's JSON (`prompt`, `uc`, `steps`, `scale`, `seed`, `sampler`,
/// `width`, `height`, `strength`, …) with `Description` (the prompt) and `Source` (the model).
pub fn novelai(
    comment: &str,
    description: Option<&str>,
    source: Option<&str>,
) -> Option<Parameters> {
    let v: Value = serde_json::from_str(comment).ok()?;
    let obj = v.as_object()?;
    // NovelAI's own keys, to tell its JSON from another tool's.
    if !(obj.contains_key("uc") || obj.contains_key("scale") || obj.contains_key("n_samples")) {
        return None;
    }
    let mut p = Parameters {
        prompt: obj
            .get("prompt")
            .and_then(text_of)
            .or_else(|| description.map(str::to_string))
            .unwrap_or_default(),
        negative_prompt: obj.get("uc").and_then(text_of).unwrap_or_default(),
        fields: vec![],
    };
    push(&mut p, "Steps", obj.get("steps"));
    push(&mut p, "Sampler", obj.get("sampler"));
    push(&mut p, "CFG scale", obj.get("scale"));
    push(&mut p, "Seed", obj.get("seed"));
    size(&mut p, obj.get("width"), obj.get("height"));
    if let Some(source) = source {
        p.fields.push(("Model".into(), source.to_string()));
    }
    push(&mut p, "Denoising strength", obj.get("strength"));
    keep_others(
        &mut p,
        obj,
        &[
            "prompt", "uc", "steps", "sampler", "scale", "seed", "width", "height", "strength",
        ],
    );
    Some(p)
}

/// `Size` from separate width and height fields.
fn size(p: &mut Parameters, w: Option<&Value>, h: Option<&Value>) {
    if let (Some(w), Some(h)) = (w.and_then(text_of), h.and_then(text_of)) {
        p.fields.push(("Size".into(), format!("{w}x{h}")));
    }
}

/// InvokeAI 2's `sd-metadata`: `{"model_weights", "model_hash", "app_version", "image": {"prompt"
/// (a string or `[{"prompt", "weight"}]`), "steps", "cfg_scale", "seed", "sampler", "width",
/// "height", "strength", …}}`. A negative prompt is the prompt's `[bracketed]` part, as
/// InvokeAI 2 wrote it.
pub fn invokeai_sd_metadata(json: &str) -> Option<Parameters> {
    let v: Value = serde_json::from_str(json).ok()?;
    let image = v.get("image")?.as_object()?;
    let prompt = match image.get("prompt")? {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("prompt").and_then(text_of))
            .collect::<Vec<_>>()
            .join(" "),
        _ => return None,
    };
    let (prompt, negative_prompt) = split_invoke_negative(&prompt);
    let mut p = Parameters {
        prompt,
        negative_prompt,
        fields: vec![],
    };
    push(&mut p, "Steps", image.get("steps"));
    push(&mut p, "Sampler", image.get("sampler"));
    push(&mut p, "CFG scale", image.get("cfg_scale"));
    push(&mut p, "Seed", image.get("seed"));
    size(&mut p, image.get("width"), image.get("height"));
    push(&mut p, "Model", v.get("model_weights"));
    push(&mut p, "Model hash", v.get("model_hash"));
    push(&mut p, "Denoising strength", image.get("strength"));
    keep_others(
        &mut p,
        image,
        &[
            "prompt",
            "steps",
            "sampler",
            "cfg_scale",
            "seed",
            "width",
            "height",
            "strength",
        ],
    );
    Some(p)
}

/// InvokeAI 2's prompt syntax: `a castle [blurry, lowres]` — bracketed parts are the negative
/// prompt.
fn split_invoke_negative(prompt: &str) -> (String, String) {
    let mut positive = String::new();
    let mut negative = vec![];
    let mut rest = prompt;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        positive.push_str(&rest[..open]);
        negative.push(rest[open + 1..open + close].trim().to_string());
        rest = &rest[open + close + 1..];
    }
    positive.push_str(rest);
    (
        positive.split_whitespace().collect::<Vec<_>>().join(" "),
        negative.join(", "),
    )
}

/// InvokeAI 1's `Dream` chunk: its command line, `"a castle [blurry]" -s 50 -S 42 -W 512
/// -H 512 -C 7.5 -A k_lms` (`-f` strength).
pub fn invokeai_dream(line: &str) -> Option<Parameters> {
    let line = line.trim();
    let (prompt, flags) = if let Some(rest) = line.strip_prefix('"') {
        let end = rest.find('"')?;
        (&rest[..end], &rest[end + 1..])
    } else {
        match line.find(" -") {
            Some(at) => (&line[..at], &line[at..]),
            None => (line, ""),
        }
    };
    let (prompt, negative_prompt) = split_invoke_negative(prompt);
    let mut p = Parameters {
        prompt,
        negative_prompt,
        fields: vec![],
    };
    let words: Vec<&str> = flags.split_whitespace().collect();
    let mut size = (None, None);
    for pair in words.windows(2) {
        let value = pair[1].to_string();
        let key = match pair[0] {
            "-s" | "--steps" => "Steps",
            "-S" | "--seed" => "Seed",
            "-C" | "--cfg_scale" => "CFG scale",
            "-A" | "--sampler" => "Sampler",
            "-f" | "--strength" => "Denoising strength",
            "-W" | "--width" => {
                size.0 = Some(value);
                continue;
            }
            "-H" | "--height" => {
                size.1 = Some(value);
                continue;
            }
            _ => continue,
        };
        p.fields.push((key.into(), value));
    }
    if let (Some(w), Some(h)) = size {
        p.fields.push(("Size".into(), format!("{w}x{h}")));
    }
    (!p.fields.is_empty()).then_some(p)
}

/// Fooocus with its own scheme: `parameters` is JSON (`prompt`, `negative_prompt`, `steps`,
/// `guidance_scale`, `seed`, `sampler`, `scheduler`, `resolution` "(w, h)", `base_model`, …).
/// With its "a1111" scheme the text is AUTOMATIC1111's and is read as such.
pub fn fooocus(json: &str) -> Option<Parameters> {
    let v: Value = serde_json::from_str(json).ok()?;
    let obj = v.as_object()?;
    let get = |k: &str| obj.get(k).or_else(|| obj.get(&capitalised(k)));
    let mut p = Parameters {
        prompt: get("prompt").and_then(text_of).unwrap_or_default(),
        negative_prompt: get("negative_prompt").and_then(text_of).unwrap_or_default(),
        fields: vec![],
    };
    push(&mut p, "Steps", get("steps"));
    push(&mut p, "Sampler", get("sampler"));
    push(&mut p, "Schedule type", get("scheduler"));
    push(&mut p, "CFG scale", get("guidance_scale"));
    push(&mut p, "Seed", get("seed"));
    if let Some(res) = get("resolution").and_then(text_of) {
        let nums: Vec<&str> = res
            .trim_matches(|c| c == '(' || c == ')' || c == '[' || c == ']')
            .split(',')
            .map(str::trim)
            .collect();
        if let [w, h] = nums.as_slice() {
            p.fields.push(("Size".into(), format!("{w}x{h}")));
        }
    }
    push(&mut p, "Model", get("base_model"));
    push(&mut p, "Model hash", get("base_model_hash"));
    keep_others(
        &mut p,
        obj,
        &[
            "prompt",
            "negative_prompt",
            "steps",
            "sampler",
            "scheduler",
            "guidance_scale",
            "seed",
            "resolution",
            "base_model",
            "base_model_hash",
        ],
    );
    Some(p)
}

/// `negative_prompt` → `Negative_prompt`: Fooocus's older logs capitalised their keys.
fn capitalised(k: &str) -> String {
    let mut c = k.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
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

    #[test]
    fn comfyui_model_through_a_lora_loader() {
        let json = r#"{
          "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 7, "sampler_name": "dpmpp_2m",
                "scheduler": "karras", "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0]}},
          "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors", "model": ["4", 0]}},
          "4": {"class_type": "CheckpointLoader|pysssss", "inputs": {"ckpt_name": "dreamshaper_8.safetensors"}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a heron"}},
          "7": {"class_type": "CLIPTextEncode", "inputs": {"text": ""}}
        }"#;
        let p = comfyui(json).unwrap();
        assert_eq!(p.get("Model"), Some("dreamshaper_8.safetensors"));
        assert_eq!(p.get("Sampler"), Some("dpmpp_2m"));
        assert_eq!(p.get("Schedule type"), Some("karras"));
    }

    #[test]
    fn novelai_comment() {
        let comment = r#"{"prompt": "1girl, masterpiece", "steps": 28, "height": 832, "width": 512,
            "scale": 5.0, "uncond_scale": 1.0, "cfg_rescale": 0.0, "seed": 3301185564, "n_samples": 1,
            "strength": 0.7, "noise": 0.0, "sampler": "k_euler_ancestral", "uc": "lowres, bad anatomy"}"#;
        let p = novelai(
            comment,
            Some("1girl, masterpiece"),
            Some("Stable Diffusion 81274D13"),
        )
        .unwrap();
        assert_eq!(p.prompt, "1girl, masterpiece");
        assert_eq!(p.negative_prompt, "lowres, bad anatomy");
        assert_eq!(p.get("Seed"), Some("3301185564"));
        assert_eq!(p.get("Size"), Some("512x832"));
        assert_eq!(p.get("Sampler"), Some("k_euler_ancestral"));
        assert_eq!(p.get("CFG scale"), Some("5.0"));
        assert_eq!(p.get("Model"), Some("Stable Diffusion 81274D13"));
        assert_eq!(p.get("cfg_rescale"), Some("0.0"));
        assert!(novelai(r#"{"prompt": "x"}"#, None, None).is_none());
    }

    #[test]
    fn invokeai_2_and_1() {
        let json = r#"{"model": "stable diffusion", "model_weights": "stable-diffusion-1.5",
            "model_hash": "cc6cb27103417325ff94f52b7a5d2dde45a7515b25c255d8e396c90014281516",
            "app_id": "invoke-ai/InvokeAI", "app_version": "2.2.4",
            "image": {"prompt": [{"prompt": "a castle on a hill [blurry, lowres]", "weight": 1.0}],
              "steps": 50, "cfg_scale": 7.5, "threshold": 0, "perlin": 0, "height": 512, "width": 768,
              "seed": 3357757885, "seamless": false, "type": "txt2img", "sampler": "k_lms", "variations": []}}"#;
        let p = invokeai_sd_metadata(json).unwrap();
        assert_eq!(p.prompt, "a castle on a hill");
        assert_eq!(p.negative_prompt, "blurry, lowres");
        assert_eq!(p.get("Seed"), Some("3357757885"));
        assert_eq!(p.get("Size"), Some("768x512"));
        assert_eq!(p.get("Model"), Some("stable-diffusion-1.5"));
        assert_eq!(p.get("perlin"), Some("0"));
        let p = invokeai_dream(r#""a castle [fog]" -s 50 -S 42 -W 512 -H 640 -C 7.5 -A k_euler_a"#)
            .unwrap();
        assert_eq!(
            (p.prompt.as_str(), p.negative_prompt.as_str()),
            ("a castle", "fog")
        );
        assert_eq!(p.get("Steps"), Some("50"));
        assert_eq!(p.get("Size"), Some("512x640"));
        assert_eq!(p.get("Sampler"), Some("k_euler_a"));
        assert!(invokeai_dream("just words").is_none());
    }

    #[test]
    fn fooocus_scheme() {
        let json = r#"{"adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion",
            "base_model_hash": "aeb7e9e689", "full_negative_prompt": ["(worst quality:1.4)"],
            "guidance_scale": 4, "negative_prompt": "(bad art:1.4), blurry", "performance": "Speed",
            "prompt": "a lighthouse", "resolution": "(1152, 896)", "sampler": "dpmpp_2m_sde_gpu",
            "scheduler": "karras", "seed": "1234567", "steps": 30, "styles": "['Fooocus V2']",
            "version": "Fooocus v2.3.1", "metadata_scheme": "fooocus"}"#;
        let p = fooocus(json).unwrap();
        assert_eq!(p.negative_prompt, "(bad art:1.4), blurry");
        assert_eq!(p.get("Size"), Some("1152x896"));
        assert_eq!(p.get("Seed"), Some("1234567"));
        assert_eq!(p.get("CFG scale"), Some("4"));
        assert_eq!(p.get("Model"), Some("juggernautXL_v8Rundiffusion"));
        assert_eq!(p.get("performance"), Some("Speed"));
        assert!(p.fields.iter().all(|(k, _)| k != "bad art"));
    }
}
