//! ControlNet units in image records, as AUTOMATIC1111's ControlNet extension writes them:
//! `ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, …"`.

use serde::{Deserialize, Serialize};

use crate::control::{ControlMode, ControlUnit};

/// Most units read back from a record (AUTOMATIC1111 offers up to 10).
pub const MAX_RECORDED_UNITS: usize = 10;

/// A unit as a record names it. The condition image itself is not in the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRecord {
    /// The preprocessor (`canny`, `scribble`, `none`…).
    pub module: String,
    /// The ControlNet's file stem or folder name.
    pub model: String,
    #[serde(default)]
    pub hash: Option<String>,
    pub weight: f64,
    pub start: f64,
    pub end: f64,
    /// AUTOMATIC1111's words for the control mode.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_a: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_b: Option<f64>,
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl ControlRecord {
    pub fn of(unit: &ControlUnit) -> Self {
        let name = unit
            .model
            .file_stem()
            .or_else(|| unit.model.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hash = unit
            .model
            .is_file()
            .then(|| crate::model::hash::model_hash(&unit.model).ok())
            .flatten();
        let thresholds = unit.module.thresholds();
        Self {
            module: unit.module.name().into(),
            model: name,
            hash,
            weight: unit.weight,
            start: unit.start,
            end: unit.end,
            mode: unit.mode.a1111_name().into(),
            threshold_a: thresholds.map(|t| f64::from(t.0)),
            threshold_b: thresholds.and_then(|t| t.1).map(f64::from),
        }
    }

    /// The field's value as the extension writes it (the writer quotes it).
    pub fn a1111_value(&self) -> String {
        let model = match &self.hash {
            Some(h) => format!("{} [{h}]", self.model),
            None => self.model.clone(),
        };
        let mut parts = vec![
            format!("Module: {}", self.module),
            format!("Model: {model}"),
            format!("Weight: {}", number(self.weight)),
            "Resize Mode: Just Resize".to_string(),
        ];
        if let Some(a) = self.threshold_a {
            parts.push(format!("Threshold A: {}", number(a)));
        }
        if let Some(b) = self.threshold_b {
            parts.push(format!("Threshold B: {}", number(b)));
        }
        parts.push(format!("Guidance Start: {}", number(self.start)));
        parts.push(format!("Guidance End: {}", number(self.end)));
        parts.push(format!("Control Mode: {}", self.mode));
        parts.join(", ")
    }

    /// A `ControlNet N` value, as the extension writes it (with or without the quotes), or
    /// `None` when it names no model.
    pub fn parse_a1111(value: &str) -> Option<Self> {
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let mut fields = std::collections::HashMap::new();
        for part in value.split(", ") {
            if let Some((k, v)) = part.split_once(':') {
                fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let num = |k: &str| {
            fields
                .get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        let model_field = fields.get("model")?.clone();
        let (model, hash) = match model_field.rsplit_once(" [") {
            Some((m, h)) => (m.to_string(), h.strip_suffix(']').map(|h| h.to_string())),
            None => (model_field, None),
        };
        let mode = fields
            .get("control mode")
            .and_then(|m| ControlMode::parse(m))
            .unwrap_or_default();
        Some(Self {
            module: fields
                .get("module")
                .cloned()
                .unwrap_or_else(|| "none".into()),
            model,
            hash,
            weight: num("weight").unwrap_or(1.0),
            start: num("guidance start").unwrap_or(0.0),
            end: num("guidance end").unwrap_or(1.0),
            mode: mode.a1111_name().into(),
            threshold_a: num("threshold a"),
            threshold_b: num("threshold b"),
        })
    }
}

/// The units of an AUTOMATIC1111 field list (`ControlNet 0`, `ControlNet 1`, …), in order.
pub fn from_fields(fields: &[(String, String)]) -> Vec<ControlRecord> {
    fields
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("ControlNet")
                .is_some_and(|n| n.trim().parse::<usize>().is_ok())
        })
        .filter_map(|(_, v)| ControlRecord::parse_a1111(v))
        .take(MAX_RECORDED_UNITS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extensions_own_text_reads_back() {
        // As AUTOMATIC1111 1.x with sd-webui-controlnet 1.1 writes it.
        let theirs = "\"Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.8, Resize Mode: Crop and Resize, Low Vram: False, Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0.1, Guidance End: 0.9, Pixel Perfect: False, Control Mode: ControlNet is more important\"";
        let r = ControlRecord::parse_a1111(theirs).unwrap();
        assert_eq!(r.model, "control_v11p_sd15_canny");
        assert_eq!(r.hash.as_deref(), Some("d14c016b"));
        assert_eq!((r.weight, r.start, r.end), (0.8, 0.1, 0.9));
        assert_eq!(r.mode, "ControlNet is more important");
        assert_eq!((r.threshold_a, r.threshold_b), (Some(100.0), Some(200.0)));
        let again = ControlRecord::parse_a1111(&r.a1111_value()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn odd_values_read_as_far_as_they_go() {
        assert!(ControlRecord::parse_a1111("").is_none());
        assert!(ControlRecord::parse_a1111("Module: none").is_none());
        let r = ControlRecord::parse_a1111("Model: x [, Weight: nan?, Control Mode: 7").unwrap();
        assert_eq!((r.weight, r.mode.as_str()), (1.0, "Balanced"));
        let many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("ControlNet {i}"), "Model: m".to_string()))
            .collect();
        assert_eq!(from_fields(&many).len(), MAX_RECORDED_UNITS);
    }
}
