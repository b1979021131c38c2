//! ControlNet units in requests, as AUTOMATIC1111's ControlNet extension takes them
//! (`alwayson_scripts.controlnet.args`, what webuiapi's `ControlNetUnit` sends), and the
//! extension's `/controlnet/model_list` and `/controlnet/module_list`. Models are named, never
//! given as paths: a name is looked up among the files of the server's ControlNet folders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::api::{decode_image, BadRequest};
use crate::engine::control::preprocess::DEFAULT_CANNY;
use crate::engine::control::{ControlMode, ControlUnit, Preprocessor};
use crate::engine::image::RgbImage;

/// A unit as the request gives it, before its image is preprocessed.
pub struct RequestedUnit {
    pub model: PathBuf,
    pub image: RgbImage,
    pub module: Preprocessor,
    pub weight: f64,
    pub start: f64,
    pub end: f64,
    pub mode: ControlMode,
}

impl RequestedUnit {
    /// Runs its preprocessor (`depth` needs the loaded network).
    pub fn into_unit(
        self,
        depth: Option<&crate::engine::control::depth::DepthEstimator>,
    ) -> Result<ControlUnit, BadRequest> {
        let image = self
            .module
            .run(&self.image, depth)
            .map_err(|e| BadRequest(format!("ControlNet: {e}")))?;
        Ok(ControlUnit {
            model: self.model,
            image: Arc::new(image),
            module: self.module,
            weight: self.weight,
            start: self.start,
            end: self.end,
            mode: self.mode,
        })
    }
}

fn bad(m: impl Into<String>) -> BadRequest {
    BadRequest(m.into())
}

/// The ControlNet name a client sends (`control_v11p_sd15_canny [d14c016b]`) without its hash.
fn bare_name(name: &str) -> &str {
    match name.rsplit_once(" [") {
        Some((n, h)) if h.ends_with(']') => n.trim(),
        _ => name.trim(),
    }
}

/// The files of `dirs` a client may name.
pub fn model_list(dirs: &[PathBuf]) -> Vec<PathBuf> {
    crate::library::adapter_dirs::controlnet_files(dirs)
}

fn display_name(p: &Path) -> String {
    p.file_stem()
        .or_else(|| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `/controlnet/model_list`: names as the extension lists them.
pub fn model_list_json(dirs: &[PathBuf]) -> Value {
    let names: Vec<String> = model_list(dirs).iter().map(|p| display_name(p)).collect();
    json!({ "model_list": names })
}

/// `/controlnet/module_list`.
pub fn module_list_json() -> Value {
    json!({ "module_list": ["none", "canny", "scribble", "invert", "threshold", "depth_anything_v2", "inpaint_only"] })
}

fn number(unit: &Map<String, Value>, key: &str, default: f64) -> Result<f64, BadRequest> {
    match unit.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad(format!("ControlNet {key}: a number"))),
    }
}

/// The enabled units of `alwayson_scripts` (none when it names no ControlNet); `fallback` is
/// the image a unit without one uses (img2img's init image, as the extension does).
pub fn units(
    scripts: Option<&Map<String, Value>>,
    dirs: &[PathBuf],
    fallback: Option<&RgbImage>,
) -> Result<Vec<RequestedUnit>, BadRequest> {
    let Some(script) = scripts.and_then(|s| {
        s.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("controlnet"))
            .map(|(_, v)| v)
    }) else {
        return Ok(vec![]);
    };
    let args = script
        .get("args")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("alwayson_scripts.controlnet: give {\"args\": [units]}"))?;
    if args.len() > crate::engine::model::controlnets::MAX_CONTROLNETS * 4 {
        return Err(bad("too many ControlNet units"));
    }
    let available = model_list(dirs);
    let mut units = vec![];
    for unit in args {
        let Some(unit) = unit.as_object() else {
            return Err(bad("a ControlNet unit is an object"));
        };
        if unit.get("enabled").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let name = unit
            .get("model")
            .and_then(Value::as_str)
            .map(bare_name)
            .unwrap_or("");
        if name.is_empty() || name.eq_ignore_ascii_case("none") {
            return Err(bad(
                "a ControlNet unit names no model (see /controlnet/model_list)",
            ));
        }
        let model = available
            .iter()
            .find(|p| display_name(p) == name || p.file_name().is_some_and(|f| f == name))
            .cloned()
            .ok_or_else(|| {
                bad(format!(
                    "no ControlNet {name:?} here (see /controlnet/model_list)"
                ))
            })?;
        let module_name = unit.get("module").and_then(Value::as_str).unwrap_or("none");
        let mut module =
            Preprocessor::parse(module_name).map_err(|e| bad(format!("ControlNet: {e}")))?;
        let threshold = |key: &str, default: u8| -> Result<u8, BadRequest> {
            let v = number(unit, key, f64::from(default))?;
            // The extension sends -1 for "the module's default".
            if v < 0.0 {
                return Ok(default);
            }
            if v > 255.0 {
                return Err(bad(format!("ControlNet {key} {v}: 0–255")));
            }
            Ok(v as u8)
        };
        match &mut module {
            Preprocessor::Canny { low, high } => {
                *low = threshold("threshold_a", DEFAULT_CANNY.0)?;
                *high = threshold("threshold_b", DEFAULT_CANNY.1)?;
                if low > high {
                    return Err(bad("ControlNet canny: threshold_a above threshold_b"));
                }
            }
            Preprocessor::Threshold(t) => *t = threshold("threshold_a", *t)?,
            _ => {}
        }
        // webuiapi sends "" for "no image": the init image, as the extension takes it.
        let given = |v: &&Value| !v.is_null() && v.as_str() != Some("");
        let image = match ["image", "input_image"]
            .iter()
            .find_map(|k| unit.get(*k).filter(given))
        {
            Some(Value::String(b64)) => decode_image(b64)?,
            // The extension's `{"image": b64, "mask": b64}` form.
            Some(Value::Object(o)) => match o.get("image").and_then(Value::as_str) {
                Some(b64) => decode_image(b64)?,
                None => return Err(bad("ControlNet image: base64 text")),
            },
            Some(_) => return Err(bad("ControlNet image: base64 text")),
            None => fallback
                .cloned()
                .ok_or_else(|| bad("a ControlNet unit without an image (txt2img needs one)"))?,
        };
        let mode = match unit.get("control_mode") {
            None | Some(Value::Null) => ControlMode::Balanced,
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|i| ControlMode::ALL.get(i as usize).copied())
                .ok_or_else(|| bad("ControlNet control_mode: 0, 1 or 2"))?,
            Some(Value::String(s)) => ControlMode::parse(s)
                .ok_or_else(|| bad(format!("ControlNet control_mode {s:?}")))?,
            Some(_) => return Err(bad("ControlNet control_mode: 0, 1 or 2")),
        };
        units.push(RequestedUnit {
            model,
            image,
            module,
            weight: number(unit, "weight", 1.0)?,
            start: number(unit, "guidance_start", 0.0)?,
            end: number(unit, "guidance_end", 1.0)?,
            mode,
        });
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_hash_and_paths_name_nothing() {
        assert_eq!(
            bare_name("control_v11p_sd15_canny [d14c016b]"),
            "control_v11p_sd15_canny"
        );
        assert_eq!(bare_name("plain"), "plain");
        let scripts: Map<String, Value> = serde_json::from_value(json!({
            "controlnet": {"args": [{"model": "../../etc/passwd", "image": ""}]}
        }))
        .unwrap();
        let err = units(Some(&scripts), &[], None).err().unwrap();
        assert!(err.0.contains("no ControlNet"), "{}", err.0);
        let disabled: Map<String, Value> = serde_json::from_value(json!({
            "ControlNet": {"args": [{"enabled": false, "model": "x"}]}
        }))
        .unwrap();
        assert!(units(Some(&disabled), &[], None).unwrap().is_empty());
        for bad_args in [json!({"args": 5}), json!({"args": [3]}), json!([1])] {
            let scripts: Map<String, Value> =
                serde_json::from_value(json!({ "controlnet": bad_args })).unwrap();
            assert!(units(Some(&scripts), &[], None).is_err());
        }
    }
}
