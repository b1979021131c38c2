//! AUTOMATIC1111's "parameters" text: the prompt, `Negative prompt: …` on its own line(s), and
//! one last line of `Key: value` pairs, values quoted as JSON strings when they hold a comma, a
//! colon or a newline. Forge, Krita AI Diffusion and Civitai read and write the same text.

use std::sync::OnceLock;

use regex::Regex;

/// The parsed text: prompt, negative prompt and the key–value pairs in their order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters {
    pub prompt: String,
    pub negative_prompt: String,
    pub fields: Vec<(String, String)>,
}

impl Parameters {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// AUTOMATIC1111's `quote`: plain unless the value holds `,`, `:` or a newline.
pub fn quote(value: &str) -> String {
    if value.contains([',', ':', '\n']) {
        serde_json::to_string(value).unwrap_or_else(|_| format!("\"{}\"", value.replace('"', "'")))
    } else {
        value.to_string()
    }
}

fn unquote(value: &str) -> String {
    serde_json::from_str::<String>(value).unwrap_or_else(|_| value.to_string())
}

pub fn format(p: &Parameters) -> String {
    let mut text = p.prompt.clone();
    if !p.negative_prompt.is_empty() {
        text.push_str("\nNegative prompt: ");
        text.push_str(&p.negative_prompt);
    }
    let line: Vec<String> = p
        .fields
        .iter()
        .map(|(k, v)| format!("{k}: {}", quote(v)))
        .collect();
    text.push('\n');
    text.push_str(&line.join(", "));
    text
}

fn param_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)"#)
            .unwrap_or_else(|_| unreachable!("constant regex"))
    })
}

/// AUTOMATIC1111's `parse_generation_parameters`: the last line holds the settings when it
/// has at least three `Key: value` pairs; lines from `Negative prompt:` on are the negative.
pub fn parse(text: &str) -> Parameters {
    let mut lines: Vec<&str> = text.trim().split('\n').collect();
    let mut last = lines.pop().unwrap_or("");
    if param_re().captures_iter(last).count() < 3 {
        lines.push(last);
        last = "";
    }
    let mut out = Parameters::default();
    let mut in_negative = false;
    for line in lines {
        let mut line = line.trim();
        if let Some(rest) = line.strip_prefix("Negative prompt:") {
            in_negative = true;
            line = rest.trim();
        }
        let target = if in_negative {
            &mut out.negative_prompt
        } else {
            &mut out.prompt
        };
        if !target.is_empty() {
            target.push('\n');
        }
        target.push_str(line);
    }
    for cap in param_re().captures_iter(last) {
        let key = cap[1].trim().to_string();
        let raw = cap[2].trim();
        let value = if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
            unquote(raw)
        } else {
            raw.to_string()
        };
        out.fields.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Parameters {
        Parameters {
            prompt: "a cat, (masterpiece:1.2)\nsecond line".into(),
            negative_prompt: "blurry, lowres".into(),
            fields: vec![
                ("Steps".into(), "20".into()),
                ("Sampler".into(), "DPM++ 2M".into()),
                ("Schedule type".into(), "Karras".into()),
                ("CFG scale".into(), "7".into()),
                ("Seed".into(), "42".into()),
                ("Size".into(), "512x768".into()),
                ("Model".into(), "v1-5, pruned: emaonly".into()),
                ("Version".into(), "pentimento 0.1.0".into()),
            ],
        }
    }

    #[test]
    fn round_trips() {
        let p = sample();
        let text = format(&p);
        assert!(text.contains("Model: \"v1-5, pruned: emaonly\""));
        assert_eq!(parse(&text), p);
    }

    #[test]
    fn parses_automatic1111_output() {
        let text = "masterpiece, a castle\nNegative prompt: ugly\nSteps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 123, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1";
        let p = parse(text);
        assert_eq!(p.prompt, "masterpiece, a castle");
        assert_eq!(p.negative_prompt, "ugly");
        assert_eq!(p.get("sampler"), Some("Euler a"));
        assert_eq!(p.get("Model hash"), Some("6ce0161689"));
    }

    #[test]
    fn hostile_texts_do_not_panic() {
        for text in [
            "",
            "\n\n\n",
            "Negative prompt:",
            "only a prompt",
            "a: b, c: \"unbalanced, d: e, f: g",
            "Steps: \"\\\", Seed: \"\"\"",
            "Negative prompt: x\nNegative prompt: y\nSteps: 1, Seed: 2, Size: 3x3",
        ] {
            let _ = parse(text);
        }
        let p = parse("a prompt with Negative prompt: inside\nSteps: 1, Seed: 2, Size: 8x8");
        assert_eq!(p.prompt, "a prompt with Negative prompt: inside");
    }
}
