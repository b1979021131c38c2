//! LoRA files as users have them, read into the weight changes they make: kohya/AUTOMATIC1111
//! (`lora_unet_…`, `lora_te_…`, `.lora_down`/`.lora_up`/`.alpha`, LoCon on 3×3 convolutions,
//! UNet names in diffusers or LDM form), LyCORIS (LoHa `hada_*`, LoKr `lokr_*`, Tucker-form
//! convolutions) and diffusers/PEFT (`unet.….lora_A`/`lora_B`, and the older
//! `.lora.down`/`.lora.up`). A layer's change is `scale · ΔW` with `scale = alpha / dim`
//! (1 without an alpha, i.e. alpha defaults to the rank, as kohya and PEFT do), the semantics
//! of AUTOMATIC1111's Lora extension and diffusers; `factors` computes each kind's `ΔW`.
//!
//! Opening a file reads its header only; each layer's factors are checked against the shape of
//! the weight they change (and their element type) before a byte of them is read, so a file
//! cannot make the reader allocate more than the model's own layer sizes.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::model::checkpoint::weights::WeightFile;

/// Which network a change belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Net {
    Unet,
    Text,
}

/// How a file names a layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerName {
    /// Dotted diffusers names (PEFT files): `down_blocks.0.attentions.0.…to_q`.
    Dotted(String),
    /// kohya's underscored names without the `lora_unet_` / `lora_te_` prefix.
    Underscored(String),
}

impl std::fmt::Display for LayerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerName::Dotted(n) | LayerName::Underscored(n) => f.write_str(n),
        }
    }
}

/// What one tensor of an adapter file is to its layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// LoRA / LoCon: `up · down`, with a Tucker core `mid` for CP-decomposed convolutions.
    Down,
    Up,
    Mid,
    /// LoHa: `(w1a · w1b) ⊙ (w2a · w2b)`, each optionally in Tucker form with `t1` / `t2`.
    HadaW1A,
    HadaW1B,
    HadaW2A,
    HadaW2B,
    HadaT1,
    HadaT2,
    /// LoKr: `w1 ⊗ w2`, each whole or as a product (`w2` optionally in Tucker form).
    LokrW1,
    LokrW1A,
    LokrW1B,
    LokrW2,
    LokrW2A,
    LokrW2B,
    LokrT2,
    Alpha,
}

/// The tensor names of one layer's parts.
pub type LayerParts = BTreeMap<Part, String>;

/// The adapter kinds AUTOMATIC1111's Lora extension applies that Pentimento reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lora,
    Loha,
    Lokr,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Lora => "LoRA",
            Kind::Loha => "LoHa",
            Kind::Lokr => "LoKr",
        })
    }
}

pub struct LoraFile {
    file: WeightFile,
    pub layers: BTreeMap<(Net, LayerName), LayerParts>,
}

/// Most tensors a LoRA file may hold (SD 1.5 LoRAs hold about 800; LyCORIS full-rank ones some
/// thousands).
pub const MAX_LORA_TENSORS: usize = 20_000;
/// Largest |alpha / rank|: trained files stay at or below 1; far beyond it a file is broken.
pub const MAX_ALPHA_SCALE: f32 = 1000.0;

impl LoraFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = WeightFile::open(path)?;
        let bad = |m: String| EngineError::bad_model(path, m);
        let names: Vec<String> = file.names().map(str::to_string).collect();
        if names.len() > MAX_LORA_TENSORS {
            return Err(bad(format!(
                "{} tensors (a LoRA holds at most {MAX_LORA_TENSORS})",
                names.len()
            )));
        }
        let mut layers: BTreeMap<(Net, LayerName), LayerParts> = BTreeMap::new();
        let mut sorted = names.clone();
        sorted.sort();
        for name in &sorted {
            let (net, layer, part) = match classify(name) {
                Classified::Part(net, layer, part) => (net, layer, part),
                Classified::Unread(what) => {
                    // Skipping it would make a different picture than the file's author saw.
                    return Err(bad(format!(
                        "{name}: {what}, which Pentimento does not read"
                    )));
                }
                Classified::Other => continue,
            };
            let entry = layers.entry((net, layer.clone())).or_default();
            // Two names for one part (kohya's `lora_te_` and `lora_te1_`, or a layer in two
            // layouts): which one counts would be a guess.
            if let Some(first) = entry.insert(part, name.clone()) {
                return Err(bad(format!(
                    "{first} and {name} are the same part of layer {layer}: which one counts?"
                )));
            }
        }
        if layers.is_empty() {
            let kind = if names
                .iter()
                .any(|n| n == "emb_params" || n.starts_with("string_to_param"))
            {
                "a textual-inversion embedding, not a LoRA".to_string()
            } else {
                format!(
                    "no LoRA layers in it (first tensors: {})",
                    sorted
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(bad(kind));
        }
        Ok(Self { file, layers })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The change `scale · ΔW` of one layer, shaped like `target` (the weight it changes:
    /// `[out, in]` or `[out, in, kh, kw]`), in f32 on the CPU. `ΔW` is LoRA's `up · down`,
    /// LoHa's `(w1a · w1b) ⊙ (w2a · w2b)` or LoKr's `w1 ⊗ w2`; `scale` is `alpha / dim` (1 without
    /// an alpha or a dimension, as AUTOMATIC1111 has it). Every factor's shape must fit the target
    /// before any is read, and no factor may hold more numbers than the target itself.
    pub fn change(&self, layer: &(Net, LayerName), target: &[usize]) -> Result<Tensor> {
        let bad = |m: String| EngineError::bad_model(self.path(), format!("{}: {m}", layer.1));
        let parts = self
            .layers
            .get(layer)
            .ok_or_else(|| bad("no such layer".into()))?;
        let Some((&out, inner)) = target.split_first().filter(|(_, r)| !r.is_empty()) else {
            return Err(bad(format!(
                "a weight of shape {target:?} cannot take a LoRA"
            )));
        };
        let inner_n: usize = inner.iter().product();
        let target_n = out * inner_n;
        let shape = |p: Part| -> Option<Vec<usize>> {
            parts.get(&p).map(|n| {
                self.file
                    .shape(n)
                    .map(<[usize]>::to_vec)
                    .unwrap_or_default()
            })
        };
        for (part, name) in parts {
            let dtype = self.file.dtype(name);
            if !matches!(
                dtype,
                Some(DType::F16 | DType::BF16 | DType::F32 | DType::F64)
            ) {
                return Err(bad(format!(
                    "{name} is stored as {dtype:?}, not as floating point"
                )));
            }
            let n: usize = shape(*part).unwrap_or_default().iter().product();
            if n > target_n.max(1) {
                return Err(bad(format!(
                    "{name} holds {n} numbers, more than the {target_n} of the weight it changes"
                )));
            }
        }
        let kinds: Vec<Kind> = [Kind::Lora, Kind::Loha, Kind::Lokr]
            .into_iter()
            .filter(|k| parts.keys().any(|p| kind_of(*p) == Some(*k)))
            .collect();
        let kind = match kinds.as_slice() {
            [k] => *k,
            [] => return Err(bad("an alpha without factors".into())),
            _ => {
                let kinds: Vec<String> = kinds.iter().map(Kind::to_string).collect();
                return Err(bad(format!(
                    "parts of several adapter kinds in one layer ({})",
                    kinds.join(", ")
                )));
            }
        };
        let load = |p: Part| -> Result<Tensor> {
            let n = parts
                .get(&p)
                .ok_or_else(|| bad(format!("no {p:?} factor")))?;
            let t = self
                .file
                .load(n, &Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| bad(format!("{n}: {e}")))?;
            if !crate::model::checkpoint::weights::all_finite(&t).map_err(internal)? {
                return Err(bad(format!("{n}: NaN or infinite values")));
            }
            Ok(t)
        };
        let mismatch = || {
            let shapes: Vec<String> = parts
                .iter()
                .filter(|(p, _)| **p != Part::Alpha)
                .map(|(p, _)| format!("{p:?} {:?}", shape(*p).unwrap_or_default()))
                .collect();
            bad(format!(
                "factors ({}) are not a {kind} of a weight of {target:?}",
                shapes.join(", ")
            ))
        };
        let shapes = FactorShapes {
            out,
            inner,
            shape: &shape,
        };
        let (dim, plan) = match kind {
            Kind::Lora => shapes.lora().ok_or_else(mismatch)?,
            Kind::Loha => shapes.loha().ok_or_else(mismatch)?,
            Kind::Lokr => shapes.lokr().ok_or_else(mismatch)?,
        };
        let alpha = match parts.get(&Part::Alpha) {
            Some(_) => {
                let v = load(Part::Alpha)?
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>());
                match v.as_deref() {
                    Ok([a]) => Some(*a),
                    _ => return Err(bad("alpha is not one number".into())),
                }
            }
            None => None,
        };
        let scale = match (alpha, dim) {
            (Some(a), Some(d)) => a / d as f32,
            _ => 1.0,
        };
        if scale.abs() > MAX_ALPHA_SCALE {
            return Err(bad(format!(
                "alpha {} for dimension {} (alpha / dimension at most {MAX_ALPHA_SCALE})",
                alpha.unwrap_or(1.0),
                dim.unwrap_or(1)
            )));
        }
        let product = plan.compute(&load)?;
        product
            .reshape(target)
            .and_then(|p| p * scale as f64)
            .map_err(internal)
    }
}

/// How a layer's factors combine, once their shapes are known to fit.
enum Plan {
    /// `up · down`, or with a Tucker core `mid`.
    LowRank { mid: bool },
    /// `w1 ⊙ w2`, each from `a · b` or a Tucker core.
    Hadamard { t1: bool, t2: bool },
    /// `w1 ⊗ w2`, each whole, a product, or (`w2`) a Tucker core.
    Kronecker { w1: Whole, w2: Whole },
}

#[derive(Clone, Copy)]
enum Whole {
    Stored,
    Product,
    Tucker,
}

impl Plan {
    fn compute(&self, load: &dyn Fn(Part) -> Result<Tensor>) -> Result<Tensor> {
        use super::factors::{kron, low_rank, tucker};
        let r = |x: candle_core::Result<Tensor>| x.map_err(internal);
        match *self {
            Plan::LowRank { mid: false } => r(low_rank(&load(Part::Up)?, &load(Part::Down)?)),
            Plan::LowRank { mid: true } => {
                let up = r(load(Part::Up)?.flatten_from(1))?;
                let down = r(load(Part::Down)?.flatten_from(1))?;
                let up_t = r(up.t().and_then(|t| t.contiguous()))?;
                r(tucker(&load(Part::Mid)?, &up_t, &down))
            }
            Plan::Hadamard { t1, t2 } => {
                let half = |t: bool, a: Part, b: Part, core: Part| -> Result<Tensor> {
                    if t {
                        r(tucker(&load(core)?, &load(a)?, &load(b)?))
                    } else {
                        r(low_rank(&load(a)?, &load(b)?))
                    }
                };
                let w1 = half(t1, Part::HadaW1A, Part::HadaW1B, Part::HadaT1)?;
                let w2 = half(t2, Part::HadaW2A, Part::HadaW2B, Part::HadaT2)?;
                r(w1.flatten_from(1).and_then(|a| a * w2.flatten_from(1)?))
            }
            Plan::Kronecker { w1, w2 } => {
                let w1 = match w1 {
                    Whole::Stored => load(Part::LokrW1)?,
                    _ => r(low_rank(&load(Part::LokrW1A)?, &load(Part::LokrW1B)?))?,
                };
                let w2 = match w2 {
                    Whole::Stored => load(Part::LokrW2)?,
                    Whole::Product => r(low_rank(&load(Part::LokrW2A)?, &load(Part::LokrW2B)?))?,
                    Whole::Tucker => r(tucker(
                        &load(Part::LokrT2)?,
                        &load(Part::LokrW2A)?,
                        &load(Part::LokrW2B)?,
                    ))?,
                };
                r(w2.flatten_from(1).and_then(|w2| kron(&w1, &w2)))
            }
        }
    }
}

/// The target's shape and the shapes of a layer's factors, checked against each other.
struct FactorShapes<'a> {
    out: usize,
    /// The target's shape after its first dimension: `[in]` or `[in, kh, kw]`.
    inner: &'a [usize],
    shape: &'a dyn Fn(Part) -> Option<Vec<usize>>,
}

impl FactorShapes<'_> {
    fn inner_n(&self) -> usize {
        self.inner.iter().product()
    }

    /// The kernel `[kh, kw]` of a convolution, `None` for a linear weight.
    fn kernel(&self) -> Option<[usize; 2]> {
        match self.inner {
            [_, kh, kw] => Some([*kh, *kw]),
            _ => None,
        }
    }

    /// A rank is at least 1 and at most the smaller side of what it decomposes.
    fn rank_fits(rank: usize, rows: usize, cols: usize) -> bool {
        rank >= 1 && rank <= rows.min(cols)
    }

    /// `[rows, r]` · `[r, cols]` (either possibly with trailing 1×1 dimensions, `b` also as
    /// `[r, in, kh, kw]`): its rank, if the shapes multiply into `[rows, cols]`.
    fn product(&self, a: Part, b: Part, rows: usize, cols: usize) -> Option<usize> {
        let (a, b) = ((self.shape)(a)?, (self.shape)(b)?);
        let rank = match a.as_slice() {
            [o, r] | [o, r, 1, 1] if *o == rows => *r,
            _ => return None,
        };
        let b_ok = match b.as_slice() {
            [r, rest @ ..] if *r == rank && !rest.is_empty() => {
                rest.iter().product::<usize>() == cols
            }
            _ => false,
        };
        (b_ok && Self::rank_fits(rank, rows, cols)).then_some(rank)
    }

    /// A Tucker core `[r1, r2, kh, kw]` with `left [r1, rows]` and `right [r2, cols]`: the
    /// second rank (AUTOMATIC1111's dimension is `right`'s first), if it makes
    /// `[rows, cols, kh, kw]` for this target's kernel.
    fn tucker(
        &self,
        core: Part,
        left: Part,
        right: Part,
        rows: usize,
        cols: usize,
    ) -> Option<usize> {
        let kernel = self.kernel()?;
        let (c, l, r) = (
            (self.shape)(core)?,
            (self.shape)(left)?,
            (self.shape)(right)?,
        );
        match (c.as_slice(), l.as_slice(), r.as_slice()) {
            ([r1, r2, kh, kw], [l1, lo], [r2b, ri])
                if [*kh, *kw] == kernel
                    && l1 == r1
                    && r2b == r2
                    && *lo == rows
                    && *ri == cols
                    && Self::rank_fits(*r1, rows, usize::MAX)
                    && Self::rank_fits(*r2, cols, usize::MAX) =>
            {
                Some(*r2)
            }
            _ => None,
        }
    }

    fn has(&self, p: Part) -> bool {
        (self.shape)(p).is_some()
    }

    /// LoRA / LoCon: down `[r, in]`, `[r, in, 1, 1]` or `[r, in, kh, kw]`, up `[out, r]` or
    /// `[out, r, 1, 1]`; with a `mid` core, down `[r, in, 1, 1]` and up `[out, r, 1, 1]`.
    fn lora(&self) -> Option<(Option<usize>, Plan)> {
        let (out, inner_n) = (self.out, self.inner_n());
        if self.has(Part::Mid) {
            let (down, up) = ((self.shape)(Part::Down)?, (self.shape)(Part::Up)?);
            let (rd, i) = match down.as_slice() {
                [r, i] | [r, i, 1, 1] => (*r, *i),
                _ => return None,
            };
            let (o, ru) = match up.as_slice() {
                [o, r] | [o, r, 1, 1] => (*o, *r),
                _ => return None,
            };
            let mid = (self.shape)(Part::Mid)?;
            let kernel = self.kernel()?;
            let ok = o == out
                && i == self.inner[0]
                && mid == [ru, rd, kernel[0], kernel[1]]
                && Self::rank_fits(ru, out, usize::MAX)
                && Self::rank_fits(rd, self.inner[0], usize::MAX);
            return ok.then_some((Some(rd), Plan::LowRank { mid: true }));
        }
        // A 1×1 down only for a linear or 1×1 weight; a full kernel for a convolution.
        let down = (self.shape)(Part::Down)?;
        let kernel_1 = self.kernel().is_none_or(|k| k == [1, 1]);
        let down_ok = match down.as_slice() {
            [_, i] | [_, i, 1, 1] => kernel_1 && *i == self.inner[0],
            [_, i, kh, kw] => self.inner == [*i, *kh, *kw],
            _ => false,
        };
        let rank = self.product(Part::Up, Part::Down, out, inner_n)?;
        down_ok.then_some((Some(rank), Plan::LowRank { mid: false }))
    }

    /// LoHa: each half `w?a [out, r] · w?b [r, in·kh·kw]`, or a Tucker core `t? [r, r', kh, kw]`
    /// with `w?a [r, out]`, `w?b [r', in]`. AUTOMATIC1111's dimension is `w1b`'s first.
    fn loha(&self) -> Option<(Option<usize>, Plan)> {
        let (out, inner_n) = (self.out, self.inner_n());
        let half = |a: Part, b: Part, core: Part| -> Option<(bool, usize)> {
            if self.has(core) {
                let d = self.tucker(core, a, b, out, self.inner[0])?;
                Some((true, d))
            } else {
                Some((false, self.product(a, b, out, inner_n)?))
            }
        };
        let (t1, dim) = half(Part::HadaW1A, Part::HadaW1B, Part::HadaT1)?;
        let (t2, _) = half(Part::HadaW2A, Part::HadaW2B, Part::HadaT2)?;
        Some((Some(dim), Plan::Hadamard { t1, t2 }))
    }

    /// LoKr: `w1 [a, b]` (whole, or `w1_a [a, r] · w1_b [r, b]`) ⊗ `w2 [c, d]` or
    /// `[c, d, kh, kw]` (whole, `w2_a [c, r] · w2_b [r, d·kh·kw]`, or a Tucker core `t2` with
    /// `w2_a [r, c]`, `w2_b [r', d]`), with `a·c = out` and `b · (d·kh·kw) = in·kh·kw`.
    /// AUTOMATIC1111's dimension is `w2_b`'s first, else `w1_b`'s, else none (scale 1).
    fn lokr(&self) -> Option<(Option<usize>, Plan)> {
        let (out, inner_n) = (self.out, self.inner_n());
        let dims2 = |p: Part| match (self.shape)(p)?.as_slice() {
            [a, b] => Some((*a, *b)),
            _ => None,
        };
        // w1's shape [a, b] first: it fixes what w2 must be.
        // A factor given both whole and as a product: which one counts would be a guess.
        let both =
            |whole: Part, parts: &[Part]| self.has(whole) && parts.iter().any(|p| self.has(*p));
        if both(Part::LokrW1, &[Part::LokrW1A, Part::LokrW1B])
            || both(Part::LokrW2, &[Part::LokrW2A, Part::LokrW2B, Part::LokrT2])
        {
            return None;
        }
        let (w1, a, b, dim1) = if self.has(Part::LokrW1) {
            let (a, b) = dims2(Part::LokrW1)?;
            (Whole::Stored, a, b, None)
        } else {
            let (a, r) = dims2(Part::LokrW1A)?;
            let (r2, b) = dims2(Part::LokrW1B)?;
            let fits = r == r2 && Self::rank_fits(r, a.max(b), usize::MAX);
            (Whole::Product, a, b, fits.then_some(r)?.into())
        };
        if a == 0
            || b == 0
            || !out.is_multiple_of(a)
            || !inner_n.is_multiple_of(b)
            || !self.inner[0].is_multiple_of(b)
        {
            return None;
        }
        let (c, m) = (out / a, inner_n / b);
        let (w2, dim2) = if self.has(Part::LokrW2) {
            let w2 = (self.shape)(Part::LokrW2)?;
            let ok = match w2.as_slice() {
                [rc, rm] => *rc == c && *rm == m,
                [rc, d, kh, kw] => {
                    *rc == c && self.kernel() == Some([*kh, *kw]) && d * kh * kw == m
                }
                _ => false,
            };
            (ok.then_some(Whole::Stored)?, None)
        } else if self.has(Part::LokrT2) {
            let d = self.tucker(
                Part::LokrT2,
                Part::LokrW2A,
                Part::LokrW2B,
                c,
                self.inner[0] / b,
            )?;
            (Whole::Tucker, Some(d))
        } else {
            let (rc, r) = dims2(Part::LokrW2A)?;
            let w2b = (self.shape)(Part::LokrW2B)?;
            let ok = rc == c
                && w2b.first() == Some(&r)
                && w2b[1..].iter().product::<usize>() == m
                && w2b.len() >= 2
                && Self::rank_fits(r, c.max(m), usize::MAX);
            (ok.then_some(Whole::Product)?, Some(r))
        };
        Some((dim2.or(dim1), Plan::Kronecker { w1, w2 }))
    }
}

/// Which adapter kind a part belongs to (`None` for alpha, shared by all).
fn kind_of(p: Part) -> Option<Kind> {
    use Part::*;
    match p {
        Down | Up | Mid => Some(Kind::Lora),
        HadaW1A | HadaW1B | HadaW2A | HadaW2B | HadaT1 | HadaT2 => Some(Kind::Loha),
        LokrW1 | LokrW1A | LokrW1B | LokrW2 | LokrW2A | LokrW2B | LokrT2 => Some(Kind::Lokr),
        Alpha => None,
    }
}

enum Classified {
    Part(Net, LayerName, Part),
    /// An adapter part of a kind Pentimento does not apply, and what it is.
    Unread(&'static str),
    /// Not an adapter tensor (metadata tensors, other networks).
    Other,
}

/// The suffixes kohya, LyCORIS and AUTOMATIC1111 give a layer's parts.
const KOHYA_PARTS: [(&str, Part); 17] = [
    (".lora_down.weight", Part::Down),
    (".lora_up.weight", Part::Up),
    (".lora_mid.weight", Part::Mid),
    (".hada_w1_a", Part::HadaW1A),
    (".hada_w1_b", Part::HadaW1B),
    (".hada_w2_a", Part::HadaW2A),
    (".hada_w2_b", Part::HadaW2B),
    (".hada_t1", Part::HadaT1),
    (".hada_t2", Part::HadaT2),
    (".lokr_w1", Part::LokrW1),
    (".lokr_w1_a", Part::LokrW1A),
    (".lokr_w1_b", Part::LokrW1B),
    (".lokr_w2", Part::LokrW2),
    (".lokr_w2_a", Part::LokrW2A),
    (".lokr_w2_b", Part::LokrW2B),
    (".lokr_t2", Part::LokrT2),
    (".alpha", Part::Alpha),
];

/// Parts of adapter kinds AUTOMATIC1111 knows that are not read here.
const UNREAD_PARTS: [(&str, &str); 8] = [
    (".dora_scale", "a DoRA magnitude"),
    (".lora_magnitude_vector", "a DoRA magnitude"),
    (".oft_blocks", "an OFT adapter"),
    (".oft_diag", "an OFT adapter"),
    (".diff", "a full weight difference"),
    (".diff_b", "a full bias difference"),
    (".w_norm", "a norm-layer adapter"),
    (".b_norm", "a norm-layer adapter"),
];

const PEFT_PARTS: [(&str, Part); 5] = [
    (".lora_A.weight", Part::Down),
    (".lora_B.weight", Part::Up),
    (".lora.down.weight", Part::Down),
    (".lora.up.weight", Part::Up),
    (".alpha", Part::Alpha),
];

/// Which network, layer and part a tensor name is.
fn classify(name: &str) -> Classified {
    let kohya_layer = |layer: &str| -> Option<(Net, LayerName)> {
        if let Some(rest) = layer.strip_prefix("lora_unet_") {
            return Some((Net::Unet, LayerName::Underscored(rest.into())));
        }
        ["lora_te_", "lora_te1_"].iter().find_map(|te| {
            let rest = layer.strip_prefix(te)?;
            let rest = rest.strip_prefix("text_model_").unwrap_or(rest);
            Some((Net::Text, LayerName::Underscored(rest.into())))
        })
    };
    let peft_layer = |layer: &str| -> Option<(Net, LayerName)> {
        if let Some(rest) = layer.strip_prefix("unet.") {
            return Some((Net::Unet, LayerName::Dotted(rest.into())));
        }
        let rest = layer.strip_prefix("text_encoder.")?;
        let rest = rest.strip_prefix("text_model.").unwrap_or(rest);
        Some((Net::Text, LayerName::Dotted(rest.into())))
    };
    for (suffix, part) in KOHYA_PARTS {
        if let Some((net, layer)) = name.strip_suffix(suffix).and_then(kohya_layer) {
            return Classified::Part(net, layer, part);
        }
    }
    for (suffix, part) in PEFT_PARTS {
        if let Some((net, layer)) = name.strip_suffix(suffix).and_then(peft_layer) {
            return Classified::Part(net, layer, part);
        }
    }
    for (suffix, what) in UNREAD_PARTS {
        let layer = name.strip_suffix(suffix);
        if layer.is_some_and(|l| kohya_layer(l).is_some() || peft_layer(l).is_some()) {
            return Classified::Unread(what);
        }
    }
    // Another network's layers (SDXL's second text encoder): this LoRA is for another model.
    if [
        "lora_te2_",
        "lora_te3_",
        "text_encoder_2.",
        "text_encoder_3.",
    ]
    .iter()
    .any(|p| name.starts_with(p))
    {
        return Classified::Unread("a layer of a second text encoder (an SDXL LoRA)");
    }
    // Under an adapter's own prefix, a part we do not know changes the picture all the same:
    // skipping it would apply half the file.
    if [
        "lora_unet_",
        "lora_te",
        "unet.",
        "text_encoder.",
        "base_model.model.",
    ]
    .iter()
    .any(|p| name.starts_with(p))
    {
        return Classified::Unread("a part of a kind (or a naming) not known here");
    }
    Classified::Other
}

fn internal(e: candle_core::Error) -> EngineError {
    EngineError::Internal(e.to_string())
}
