//! Parameter sweeps for grids: an axis names one parameter and the values it takes
//! (`cfg=3,5,7`, `sampler=Euler a,DDIM`, `seed=1-8`), as AUTOMATIC1111's X/Y plot does.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::sampler::SamplerKind;
use crate::GenerationParams;

/// The most images one grid may hold: each is a full generation.
pub const MAX_CELLS: usize = 256;

/// A parameter an axis can sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Field {
    Seed,
    Steps,
    Cfg,
    Sampler,
    Strength,
    ClipSkip,
    Eta,
    VariationSeed,
    VariationStrength,
    /// AUTOMATIC1111's "Prompt S/R": the first value is searched for in the prompts and each
    /// value replaces it in turn (the first thus leaves the prompt as it is).
    PromptSr,
}

impl Field {
    const NAMES: [(&'static str, Field); 10] = [
        ("seed", Field::Seed),
        ("steps", Field::Steps),
        ("cfg", Field::Cfg),
        ("sampler", Field::Sampler),
        ("strength", Field::Strength),
        ("clip-skip", Field::ClipSkip),
        ("eta", Field::Eta),
        ("variation-seed", Field::VariationSeed),
        ("variation-strength", Field::VariationStrength),
        ("prompt-sr", Field::PromptSr),
    ];

    /// Accepts the names above in any case, with `_` or spaces for `-`, plus AUTOMATIC1111's
    /// spellings ("CFG Scale", "Denoising", "Prompt S/R").
    pub fn parse(name: &str) -> Option<Field> {
        let key: String = name
            .trim()
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c == '_' || c == ' ' { '-' } else { c })
            .collect();
        let key = match key.as_str() {
            "cfg-scale" | "guidance" => "cfg",
            "denoising" | "denoising-strength" => "strength",
            "prompt-s/r" | "prompt-search-replace" => "prompt-sr",
            "subseed" => "variation-seed",
            "subseed-strength" => "variation-strength",
            other => other,
        };
        Self::NAMES.iter().find(|(n, _)| *n == key).map(|(_, f)| *f)
    }

    pub fn names() -> Vec<&'static str> {
        Self::NAMES.iter().map(|(n, _)| *n).collect()
    }

    /// The label AUTOMATIC1111 puts on a grid.
    pub fn label(self) -> &'static str {
        match self {
            Field::Seed => "Seed",
            Field::Steps => "Steps",
            Field::Cfg => "CFG Scale",
            Field::Sampler => "Sampler",
            Field::Strength => "Denoising",
            Field::ClipSkip => "Clip skip",
            Field::Eta => "Eta",
            Field::VariationSeed => "Var. seed",
            Field::VariationStrength => "Var. strength",
            Field::PromptSr => "Prompt S/R",
        }
    }

    fn integer(self) -> bool {
        matches!(
            self,
            Field::Seed | Field::Steps | Field::ClipSkip | Field::VariationSeed
        )
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SweepError {
    #[error("an axis is NAME=VALUE,VALUE,…; got {0:?}")]
    Syntax(String),
    #[error("unknown axis {name:?}; known: {}", known.join(", "))]
    UnknownField {
        name: String,
        known: Vec<&'static str>,
    },
    #[error("{field}: {message}")]
    Value {
        field: &'static str,
        message: String,
    },
    #[error("a grid of {0} images is too large (at most {MAX_CELLS})")]
    TooLarge(usize),
    #[error("{0}")]
    Layout(String),
}

/// One axis of a grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub field: Field,
    pub values: Vec<String>,
}

impl Axis {
    /// `NAME=V1,V2,…`; integer fields also take ranges `A-B` and `A-B (+S)`.
    pub fn parse(text: &str) -> Result<Axis, SweepError> {
        let (name, list) = text
            .split_once('=')
            .ok_or_else(|| SweepError::Syntax(text.into()))?;
        let field = Field::parse(name).ok_or_else(|| SweepError::UnknownField {
            name: name.trim().into(),
            known: Field::names(),
        })?;
        Self::from_list(field, list)
    }

    pub fn from_list(field: Field, list: &str) -> Result<Axis, SweepError> {
        let mut values = vec![];
        for item in list.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            match (field.integer(), parse_range(item)) {
                (true, Some(range)) => values.extend(range?.into_iter().map(|v| v.to_string())),
                _ => values.push(item.to_string()),
            }
            if values.len() > MAX_CELLS {
                return Err(SweepError::TooLarge(values.len()));
            }
        }
        if values.is_empty() {
            return Err(SweepError::Value {
                field: field.label(),
                message: "no values".into(),
            });
        }
        let axis = Axis { field, values };
        // Catch a bad value now rather than after half the grid has been generated.
        let probe = GenerationParams::default();
        for v in &axis.values {
            axis.apply(&probe, v)?;
        }
        Ok(axis)
    }

    /// `params` with this axis at `value`.
    pub fn apply(
        &self,
        params: &GenerationParams,
        value: &str,
    ) -> Result<GenerationParams, SweepError> {
        let field = self.field;
        let bad = |message: String| SweepError::Value {
            field: field.label(),
            message,
        };
        let int = || {
            value
                .parse::<u64>()
                .map_err(|_| bad(format!("{value:?} is not a whole number")))
        };
        let float = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("{value:?} is not a number")))
        };
        let mut p = params.clone();
        match field {
            Field::Seed => p.seed = int()?,
            Field::Steps => p.steps = int()? as usize,
            Field::ClipSkip => p.clip_skip = int()? as usize,
            Field::VariationSeed => p.variation_seed = Some(int()?),
            Field::Cfg => p.cfg_scale = float()?,
            Field::Strength => p.strength = float()?,
            Field::Eta => p.eta = float()?,
            Field::VariationStrength => p.variation_strength = float()?,
            Field::Sampler => {
                let kind = SamplerKind::from_name(value)
                    .ok_or_else(|| bad(format!("unknown sampler {value:?}")))?;
                p.sampler = kind.name();
            }
            Field::PromptSr => {
                let search = &self.values[0];
                p.prompt = p.prompt.replace(search.as_str(), value);
                p.negative_prompt = p.negative_prompt.replace(search.as_str(), value);
            }
        }
        Ok(p)
    }

    /// The caption of one value: "CFG Scale: 7".
    pub fn caption(&self, value: &str) -> String {
        format!("{}: {value}", self.field.label())
    }
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.field.label(), self.values.join(","))
    }
}

/// `A-B` or `A-B (+S)`: `None` when `item` is not a range at all.
fn parse_range(item: &str) -> Option<Result<Vec<u64>, SweepError>> {
    let re = regex::Regex::new(r"^(\d+)\s*-\s*(\d+)\s*(?:\(\s*\+\s*(\d+)\s*\))?$").ok()?;
    let c = re.captures(item)?;
    let num = |i: usize| c.get(i).and_then(|m| m.as_str().parse::<u64>().ok());
    let (Some(a), Some(b)) = (num(1), num(2)) else {
        return Some(Err(SweepError::Syntax(item.into())));
    };
    let step = num(3).unwrap_or(1).max(1);
    if b < a {
        return Some(Err(SweepError::Syntax(format!(
            "{item}: the range runs backwards"
        ))));
    }
    if (b - a) / step >= MAX_CELLS as u64 {
        return Some(Err(SweepError::TooLarge(((b - a) / step + 1) as usize)));
    }
    Some(Ok((a..=b).step_by(step as usize).collect()))
}

/// A whole sweep: up to two axes. Cells run row by row.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sweep {
    pub x: Option<Axis>,
    pub y: Option<Axis>,
}

impl Sweep {
    pub fn columns(&self) -> usize {
        self.x.as_ref().map_or(1, |a| a.values.len())
    }

    pub fn rows(&self) -> usize {
        self.y.as_ref().map_or(1, |a| a.values.len())
    }

    /// Every cell's parameters, row by row.
    pub fn cells(&self, base: &GenerationParams) -> Result<Vec<GenerationParams>, SweepError> {
        let n = self.columns() * self.rows();
        if n > MAX_CELLS {
            return Err(SweepError::TooLarge(n));
        }
        if let (Some(x), Some(y)) = (&self.x, &self.y) {
            // The inner axis would overwrite the outer one: cells labelled with values they
            // were not made with.
            if x.field == y.field && x.field != Field::PromptSr {
                return Err(SweepError::Layout(format!(
                    "both axes set {}: sweep it on one axis",
                    x.field.label()
                )));
            }
        }
        for axis in [&self.x, &self.y].into_iter().flatten() {
            // AUTOMATIC1111's rule: the first value is the text each cell replaces, so it must
            // be there, or every cell is the same picture.
            if axis.field == Field::PromptSr {
                let search = &axis.values[0];
                if !base.prompt.contains(search.as_str())
                    && !base.negative_prompt.contains(search.as_str())
                {
                    return Err(SweepError::Value {
                        field: Field::PromptSr.label(),
                        message: format!(
                            "{search:?} (the first value) is in neither the prompt nor the negative prompt"
                        ),
                    });
                }
            }
        }
        let mut cells = Vec::with_capacity(n);
        for row in 0..self.rows() {
            let p = match &self.y {
                Some(axis) => axis.apply(base, &axis.values[row])?,
                None => base.clone(),
            };
            for col in 0..self.columns() {
                cells.push(match &self.x {
                    Some(axis) => axis.apply(&p, &axis.values[col])?,
                    None => p.clone(),
                });
            }
        }
        Ok(cells)
    }

    pub fn column_labels(&self) -> Option<Vec<String>> {
        self.x
            .as_ref()
            .map(|a| a.values.iter().map(|v| a.caption(v)).collect())
    }

    pub fn row_labels(&self) -> Option<Vec<String>> {
        self.y
            .as_ref()
            .map(|a| a.values.iter().map(|v| a.caption(v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_on_both_axes_and_a_replacement_not_in_the_prompt_are_refused() {
        let base = GenerationParams {
            prompt: "a lighthouse at dusk".into(),
            ..GenerationParams::default()
        };
        let both = Sweep {
            x: Some(Axis::parse("steps=4,8").unwrap()),
            y: Some(Axis::parse("steps=2,3").unwrap()),
        };
        let err = both.cells(&base).unwrap_err().to_string();
        assert!(err.contains("both axes"), "{err}");

        let absent = Sweep {
            x: Some(Axis::parse("prompt-sr=windmill,castle").unwrap()),
            y: None,
        };
        let err = absent.cells(&base).unwrap_err().to_string();
        assert!(err.contains("windmill"), "{err}");

        let present = Sweep {
            x: Some(Axis::parse("prompt-sr=lighthouse,castle").unwrap()),
            y: Some(Axis::parse("prompt-sr=dusk,dawn").unwrap()),
        };
        let cells = present.cells(&base).unwrap();
        assert_eq!(cells[3].prompt, "a castle at dawn");
    }

    #[test]
    fn parses_lists_ranges_and_names() {
        let a = Axis::parse("CFG Scale=3, 5,7").unwrap();
        assert_eq!(a.field, Field::Cfg);
        assert_eq!(a.values, ["3", "5", "7"]);
        assert_eq!(
            Axis::parse("seed=1-4").unwrap().values,
            ["1", "2", "3", "4"]
        );
        assert_eq!(
            Axis::parse("steps=10-20 (+5)").unwrap().values,
            ["10", "15", "20"]
        );
        assert_eq!(
            Axis::parse("sampler=euler a,DDIM").unwrap().values,
            ["euler a", "DDIM"]
        );
    }

    #[test]
    fn refuses_bad_axes_before_any_work() {
        assert!(matches!(Axis::parse("cfg"), Err(SweepError::Syntax(_))));
        assert!(matches!(
            Axis::parse("size=1,2"),
            Err(SweepError::UnknownField { .. })
        ));
        assert!(matches!(
            Axis::parse("cfg=3,x"),
            Err(SweepError::Value { .. })
        ));
        assert!(matches!(
            Axis::parse("sampler=Nope"),
            Err(SweepError::Value { .. })
        ));
        assert!(matches!(
            Axis::parse("seed=1-100000"),
            Err(SweepError::TooLarge(_))
        ));
        assert!(Axis::parse("seed=5-1").is_err());
        assert!(Axis::parse("cfg=").is_err());
    }

    #[test]
    fn cells_run_row_by_row() {
        let sweep = Sweep {
            x: Some(Axis::parse("cfg=3,5").unwrap()),
            y: Some(Axis::parse("sampler=Euler a,DDIM").unwrap()),
        };
        let cells = sweep.cells(&GenerationParams::default()).unwrap();
        let got: Vec<(f64, String)> = cells
            .iter()
            .map(|p| (p.cfg_scale, p.sampler.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (3.0, "Euler a".to_string()),
                (5.0, "Euler a".to_string()),
                (3.0, "DDIM".to_string()),
                (5.0, "DDIM".to_string())
            ]
        );
    }

    #[test]
    fn prompt_search_and_replace() {
        let axis = Axis::parse("prompt-sr=cat,dog,fox").unwrap();
        let base = GenerationParams {
            prompt: "a cat on a mat".into(),
            ..Default::default()
        };
        let prompts: Vec<String> = axis
            .values
            .iter()
            .map(|v| axis.apply(&base, v).unwrap().prompt)
            .collect();
        assert_eq!(
            prompts,
            ["a cat on a mat", "a dog on a mat", "a fox on a mat"]
        );
    }
}
