//! Depth Anything V2 as transformers' `DepthAnythingForDepthEstimation` lays it out (the
//! `depth-anything/Depth-Anything-V2-*-hf` repositories): a DINOv2 vision transformer whose
//! hidden states at four depths a DPT neck reassembles into feature maps, fuses coarse to fine
//! and a small head turns into relative depth (larger = nearer).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use candle_nn::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, LayerNorm, Linear};
use serde::Deserialize;

/// Most transformer layers, heads and widths a config may ask for (the published Large model:
/// 24 layers, width 1024).
const MAX_LAYERS: usize = 64;
const MAX_WIDTH: usize = 4096;

#[derive(Debug, Clone, Deserialize)]
pub struct BackboneConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "four")]
    pub mlp_ratio: usize,
    #[serde(default = "fourteen")]
    pub patch_size: usize,
    #[serde(default = "eps6")]
    pub layer_norm_eps: f64,
    /// Layers whose outputs the neck takes (1-based: layer k's output).
    pub out_indices: Vec<usize>,
    #[serde(default = "yes")]
    pub apply_layernorm: bool,
    #[serde(default)]
    pub use_swiglu_ffn: bool,
    #[serde(default = "gelu")]
    pub hidden_act: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DepthAnythingConfig {
    pub backbone_config: BackboneConfig,
    pub reassemble_hidden_size: usize,
    #[serde(default = "fourteen")]
    pub patch_size: usize,
    pub reassemble_factors: Vec<f64>,
    pub neck_hidden_sizes: Vec<usize>,
    pub fusion_hidden_size: usize,
    pub head_hidden_size: usize,
    #[serde(default = "minus_one")]
    pub head_in_index: i64,
    #[serde(default = "relative")]
    pub depth_estimation_type: String,
    #[serde(default = "one")]
    pub max_depth: f64,
}

fn four() -> usize {
    4
}
fn fourteen() -> usize {
    14
}
fn eps6() -> f64 {
    1e-6
}
fn yes() -> bool {
    true
}
fn gelu() -> String {
    "gelu".into()
}
fn minus_one() -> i64 {
    -1
}
fn relative() -> String {
    "relative".into()
}
fn one() -> f64 {
    1.0
}

impl DepthAnythingConfig {
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let b = &self.backbone_config;
        let width = |name: &str, v: usize| {
            if v == 0 || v > MAX_WIDTH {
                Err(format!("{name} {v} is outside 1–{MAX_WIDTH}"))
            } else {
                Ok(())
            }
        };
        width("hidden_size", b.hidden_size)?;
        width("reassemble_hidden_size", self.reassemble_hidden_size)?;
        width("fusion_hidden_size", self.fusion_hidden_size)?;
        width("head_hidden_size", self.head_hidden_size)?;
        width(
            "mlp_ratio × hidden_size",
            b.mlp_ratio.saturating_mul(b.hidden_size),
        )?;
        if b.num_hidden_layers == 0 || b.num_hidden_layers > MAX_LAYERS {
            return Err(format!("{} layers", b.num_hidden_layers));
        }
        if b.num_attention_heads == 0 || !b.hidden_size.is_multiple_of(b.num_attention_heads) {
            return Err(format!(
                "{} heads do not divide width {}",
                b.num_attention_heads, b.hidden_size
            ));
        }
        if b.patch_size == 0 || b.patch_size > 64 || self.patch_size != b.patch_size {
            return Err(format!("patch size {}", b.patch_size));
        }
        if b.use_swiglu_ffn || b.hidden_act != "gelu" {
            return Err("only the GELU feed-forward of Depth Anything V2 is supported".into());
        }
        let n = self.neck_hidden_sizes.len();
        if n == 0
            || self.reassemble_factors.len() != n
            || b.out_indices.len() != n
            || b.out_indices
                .iter()
                .any(|&i| i == 0 || i > b.num_hidden_layers)
        {
            return Err("the neck's sizes, factors and backbone outputs disagree".into());
        }
        for &c in &self.neck_hidden_sizes {
            width("neck_hidden_sizes", c)?;
        }
        for &f in &self.reassemble_factors {
            if ![4.0, 2.0, 1.0, 0.5].contains(&f) {
                return Err(format!("reassemble factor {f} (4, 2, 1 or 0.5)"));
            }
        }
        if self.head_in_index != -1 && self.head_in_index != n as i64 - 1 {
            return Err("the head reads the last fused map".into());
        }
        if self.depth_estimation_type != "relative" && self.depth_estimation_type != "metric" {
            return Err(format!(
                "depth estimation type {:?}",
                self.depth_estimation_type
            ));
        }
        if !self.max_depth.is_finite() {
            return Err("max_depth is not a number".into());
        }
        Ok(())
    }
}

struct Layer {
    norm1: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    scale1: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    scale2: Tensor,
    heads: usize,
}

impl Layer {
    fn load(vb: VarBuilder, b: &BackboneConfig) -> Result<Self> {
        let h = b.hidden_size;
        let ln = |name: &str| candle_nn::layer_norm(h, b.layer_norm_eps, vb.pp(name));
        let att = vb.pp("attention");
        Ok(Self {
            norm1: ln("norm1")?,
            query: candle_nn::linear(h, h, att.pp("attention.query"))?,
            key: candle_nn::linear(h, h, att.pp("attention.key"))?,
            value: candle_nn::linear(h, h, att.pp("attention.value"))?,
            output: candle_nn::linear(h, h, att.pp("output.dense"))?,
            scale1: vb.get(h, "layer_scale1.lambda1")?,
            norm2: ln("norm2")?,
            fc1: candle_nn::linear(h, h * b.mlp_ratio, vb.pp("mlp.fc1"))?,
            fc2: candle_nn::linear(h * b.mlp_ratio, h, vb.pp("mlp.fc2"))?,
            scale2: vb.get(h, "layer_scale2.lambda1")?,
            heads: b.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::interrupt::check()?;
        let (batch, tokens, width) = x.dims3()?;
        let hd = width / self.heads;
        let h = self.norm1.forward(x)?;
        let split = |t: Tensor| {
            t.reshape((batch, tokens, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.query.forward(&h)?)?;
        let k = split(self.key.forward(&h)?)?;
        let v = split(self.value.forward(&h)?)?;
        let scores = (q.matmul(&k.t()?)? * (hd as f64).powf(-0.5))?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let attended = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, tokens, width))?;
        let a = self
            .output
            .forward(&attended)?
            .broadcast_mul(&self.scale1)?;
        let x = (x + a)?;
        let h = self.norm2.forward(&x)?;
        let m = self
            .fc2
            .forward(&self.fc1.forward(&h)?.gelu_erf()?)?
            .broadcast_mul(&self.scale2)?;
        x + m
    }
}

/// `torch.nn.functional.interpolate(mode="bicubic", align_corners=False)` of a small CPU map
/// `(c, h, w)` to `(c, oh, ow)`, in f32 as torch computes it (A = −0.75).
fn bicubic(data: &[f32], (c, h, w): (usize, usize, usize), (oh, ow): (usize, usize)) -> Vec<f32> {
    const A: f32 = -0.75;
    let cubic1 = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let cubic2 = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let weights = |t: f32| [cubic2(t + 1.0), cubic1(t), cubic1(1.0 - t), cubic2(2.0 - t)];
    let taps = |out: usize, inp: usize, n: usize| -> (isize, [f32; 4]) {
        let scale = inp as f32 / n as f32;
        let src = (out as f32 + 0.5) * scale - 0.5;
        let floor = src.floor();
        (floor as isize, weights(src - floor))
    };
    let mut out = vec![0f32; c * oh * ow];
    for y in 0..oh {
        let (y0, wy) = taps(y, h, oh);
        for x in 0..ow {
            let (x0, wx) = taps(x, w, ow);
            for ch in 0..c {
                let plane = &data[ch * h * w..(ch + 1) * h * w];
                let at = |yy: isize, xx: isize| {
                    let yy = yy.clamp(0, h as isize - 1) as usize;
                    let xx = xx.clamp(0, w as isize - 1) as usize;
                    plane[yy * w + xx]
                };
                let mut rows = [0f32; 4];
                for (i, row) in rows.iter_mut().enumerate() {
                    let yy = y0 - 1 + i as isize;
                    *row = at(yy, x0 - 1) * wx[0]
                        + at(yy, x0) * wx[1]
                        + at(yy, x0 + 1) * wx[2]
                        + at(yy, x0 + 2) * wx[3];
                }
                out[ch * oh * ow + y * ow + x] =
                    rows[0] * wy[0] + rows[1] * wy[1] + rows[2] * wy[2] + rows[3] * wy[3];
            }
        }
    }
    out
}

enum Resize {
    Up(ConvTranspose2d),
    Same,
    Down(Conv2d),
}

struct Reassemble {
    projection: Conv2d,
    resize: Resize,
}

struct ResidualUnit {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResidualUnit {
    fn load(vb: VarBuilder, c: usize) -> Result<Self> {
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Self {
            conv1: candle_nn::conv2d(c, c, 3, cfg, vb.pp("convolution1"))?,
            conv2: candle_nn::conv2d(c, c, 3, cfg, vb.pp("convolution2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&x.relu()?)?;
        let h = self.conv2.forward(&h.relu()?)?;
        h + x
    }
}

struct Fusion {
    projection: Conv2d,
    residual1: ResidualUnit,
    residual2: ResidualUnit,
}

pub struct DepthAnything {
    patch: Conv2d,
    cls: Tensor,
    positions: Tensor,
    layers: Vec<Layer>,
    layernorm: LayerNorm,
    reassemble: Vec<Reassemble>,
    neck_convs: Vec<Conv2d>,
    fusion: Vec<Fusion>,
    head: [Conv2d; 3],
    config: DepthAnythingConfig,
}

impl DepthAnything {
    pub fn load(vb: VarBuilder, cfg: &DepthAnythingConfig) -> Result<Self> {
        let b = &cfg.backbone_config;
        let h = b.hidden_size;
        let emb = vb.pp("backbone.embeddings");
        let patch = candle_nn::conv2d(
            3,
            h,
            b.patch_size,
            Conv2dConfig {
                stride: b.patch_size,
                ..Default::default()
            },
            emb.pp("patch_embeddings.projection"),
        )?;
        let cls = emb.get((1, 1, h), "cls_token")?;
        let stored = emb.get_unchecked("position_embeddings")?;
        let (one, n, width) = stored.dims3()?;
        let side = ((n.saturating_sub(1)) as f64).sqrt() as usize;
        if one != 1 || width != h || side * side + 1 != n {
            candle_core::bail!(
                "position_embeddings {:?}: expected (1, 1 + side², {h})",
                stored.dims()
            );
        }
        let layers = (0..b.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("backbone.encoder.layer.{i}")), b))
            .collect::<Result<Vec<_>>>()?;
        let layernorm = candle_nn::layer_norm(h, b.layer_norm_eps, vb.pp("backbone.layernorm"))?;
        let neck = vb.pp("neck");
        let mut reassemble = vec![];
        for (i, (&c, &factor)) in cfg
            .neck_hidden_sizes
            .iter()
            .zip(&cfg.reassemble_factors)
            .enumerate()
        {
            let vb = neck.pp(format!("reassemble_stage.layers.{i}"));
            let projection = candle_nn::conv2d(
                cfg.reassemble_hidden_size,
                c,
                1,
                Default::default(),
                vb.pp("projection"),
            )?;
            let resize = if factor > 1.0 {
                let k = factor as usize;
                Resize::Up(candle_nn::conv_transpose2d(
                    c,
                    c,
                    k,
                    ConvTranspose2dConfig {
                        stride: k,
                        ..Default::default()
                    },
                    vb.pp("resize"),
                )?)
            } else if factor == 1.0 {
                Resize::Same
            } else {
                Resize::Down(candle_nn::conv2d(
                    c,
                    c,
                    3,
                    Conv2dConfig {
                        stride: 2,
                        padding: 1,
                        ..Default::default()
                    },
                    vb.pp("resize"),
                )?)
            };
            reassemble.push(Reassemble { projection, resize });
        }
        let f = cfg.fusion_hidden_size;
        let neck_convs = cfg
            .neck_hidden_sizes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                candle_nn::conv2d_no_bias(
                    c,
                    f,
                    3,
                    Conv2dConfig {
                        padding: 1,
                        ..Default::default()
                    },
                    neck.pp(format!("convs.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let fusion = (0..cfg.neck_hidden_sizes.len())
            .map(|i| {
                let vb = neck.pp(format!("fusion_stage.layers.{i}"));
                Ok(Fusion {
                    projection: candle_nn::conv2d(
                        f,
                        f,
                        1,
                        Default::default(),
                        vb.pp("projection"),
                    )?,
                    residual1: ResidualUnit::load(vb.pp("residual_layer1"), f)?,
                    residual2: ResidualUnit::load(vb.pp("residual_layer2"), f)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let pad1 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let head = vb.pp("head");
        let head = [
            candle_nn::conv2d(f, f / 2, 3, pad1, head.pp("conv1"))?,
            candle_nn::conv2d(f / 2, cfg.head_hidden_size, 3, pad1, head.pp("conv2"))?,
            candle_nn::conv2d(
                cfg.head_hidden_size,
                1,
                1,
                Default::default(),
                head.pp("conv3"),
            )?,
        ];
        Ok(Self {
            patch,
            cls,
            positions: stored,
            layers,
            layernorm,
            reassemble,
            neck_convs,
            fusion,
            head,
            config: cfg.clone(),
        })
    }

    pub fn patch_size(&self) -> usize {
        self.config.patch_size
    }

    /// The position embeddings for a `ph`×`pw` grid of patches: as trained, or interpolated
    /// (bicubic, in f32) as DINOv2 does for other grids.
    fn positions_for(&self, ph: usize, pw: usize) -> Result<Tensor> {
        let (_, n, width) = self.positions.dims3()?;
        let side = ((n - 1) as f64).sqrt() as usize;
        if ph * pw == n - 1 && ph == pw {
            return Ok(self.positions.clone());
        }
        let cls = self.positions.narrow(1, 0, 1)?;
        let grid: Vec<f32> = self
            .positions
            .narrow(1, 1, n - 1)?
            .reshape((side, side, width))?
            .permute((2, 0, 1))?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let resized = bicubic(&grid, (width, side, side), (ph, pw));
        let patches = Tensor::from_vec(resized, (width, ph * pw), self.positions.device())?
            .t()?
            .unsqueeze(0)?
            .to_dtype(self.positions.dtype())?;
        Tensor::cat(&[&cls, &patches], 1)
    }

    /// Relative depth `(batch, H, W)` of normalised pixels `(batch, 3, H, W)` whose sides are
    /// multiples of the patch size.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (batch, _, height, width) = pixels.dims4()?;
        let p = self.config.patch_size;
        let (ph, pw) = (height / p, width / p);
        let patches = self
            .patch
            .forward(pixels)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let cls = self.cls.broadcast_as((batch, 1, self.cls.dim(2)?))?;
        let mut x =
            Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.positions_for(ph, pw)?)?;
        let b = &self.config.backbone_config;
        let mut taken = vec![];
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if b.out_indices.contains(&(i + 1)) {
                let h = if b.apply_layernorm {
                    self.layernorm.forward(&x)?
                } else {
                    x.clone()
                };
                taken.push(h);
            }
        }
        // Reassemble: drop the class token, back to maps, project, resize.
        let mut features = vec![];
        for ((h, r), conv) in taken.iter().zip(&self.reassemble).zip(&self.neck_convs) {
            let tokens = h.dim(1)? - 1;
            let map = h
                .narrow(1, 1, tokens)?
                .reshape((batch, ph, pw, h.dim(2)?))?
                .permute((0, 3, 1, 2))?
                .contiguous()?;
            let map = r.projection.forward(&map)?;
            let map = match &r.resize {
                Resize::Up(t) => t.forward(&map)?,
                Resize::Same => map,
                Resize::Down(c) => c.forward(&map)?,
            };
            features.push(conv.forward(&map)?);
        }
        // Fuse from the coarsest map to the finest.
        features.reverse();
        let mut fused: Option<Tensor> = None;
        for (idx, (feature, layer)) in features.iter().zip(&self.fusion).enumerate() {
            crate::interrupt::check()?;
            let mut h = match &fused {
                None => feature.clone(),
                Some(previous) => {
                    let mut residual = feature.clone();
                    if previous.dims() != residual.dims() {
                        let (_, _, th, tw) = previous.dims4()?;
                        residual = residual.upsample_bilinear2d(th, tw, false)?;
                    }
                    (previous + layer.residual1.forward(&residual)?)?
                }
            };
            h = layer.residual2.forward(&h)?;
            h = match features.get(idx + 1) {
                Some(next) => {
                    let (_, _, nh, nw) = next.dims4()?;
                    h.upsample_bilinear2d(nh, nw, true)?
                }
                None => {
                    let (_, _, hh, hw) = h.dims4()?;
                    h.upsample_bilinear2d(hh * 2, hw * 2, true)?
                }
            };
            fused = Some(layer.projection.forward(&h)?);
        }
        let fused = fused.ok_or_else(|| candle_core::Error::Msg("no features".into()))?;
        let d = self.head[0].forward(&fused)?;
        let d = d.upsample_bilinear2d(ph * p, pw * p, true)?;
        let d = self.head[1].forward(&d)?.relu()?;
        let d = self.head[2].forward(&d)?;
        let d = if self.config.depth_estimation_type == "metric" {
            candle_nn::ops::sigmoid(&d)?
        } else {
            d.relu()?
        };
        (d * self.config.max_depth)?.squeeze(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_keeps_a_constant_and_a_size() {
        let data = vec![2.5f32; 2 * 3 * 3];
        let out = bicubic(&data, (2, 3, 3), (4, 6));
        assert_eq!(out.len(), 2 * 4 * 6);
        assert!(out.iter().all(|v| (v - 2.5).abs() < 1e-5));
        // Same size: the identity.
        let ramp: Vec<f32> = (0..9).map(|v| v as f32).collect();
        assert_eq!(bicubic(&ramp, (1, 3, 3), (3, 3)), ramp);
    }

    #[test]
    fn configs_out_of_bounds_are_refused() {
        let good = r#"{"backbone_config":{"hidden_size":32,"num_hidden_layers":4,"num_attention_heads":2,"out_indices":[1,2,3,4]},
            "reassemble_hidden_size":32,"reassemble_factors":[4,2,1,0.5],"neck_hidden_sizes":[8,16,32,32],
            "fusion_hidden_size":16,"head_hidden_size":8}"#;
        assert!(DepthAnythingConfig::from_json(good).is_ok());
        for (from, to) in [
            ("\"num_hidden_layers\":4", "\"num_hidden_layers\":100000"),
            ("\"num_attention_heads\":2", "\"num_attention_heads\":3"),
            ("[1,2,3,4]", "[1,2,3,9]"),
            ("[4,2,1,0.5]", "[4,2,1,3]"),
            ("\"hidden_size\":32", "\"hidden_size\":0"),
            ("[8,16,32,32]", "[8,16,32]"),
        ] {
            let bad = good.replace(from, to);
            assert!(DepthAnythingConfig::from_json(&bad).is_err(), "{to}");
        }
    }
}
