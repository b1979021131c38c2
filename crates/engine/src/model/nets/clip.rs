//! CLIP's text transformer as Stable Diffusion uses it: the hidden states of the last layer
//! that is run, after the final layer norm.
//!
//! Weights come in two layouts: Hugging Face's `CLIPTextModel` (diffusers folders and SD 1.x
//! single files) and OpenCLIP's (SD 2.x single files), whose attention stores q, k and v as one
//! fused `in_proj` matrix.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{layer_norm, Embedding, LayerNorm, LayerNormConfig, VarBuilder};

use crate::model::linear::{linear, Linear};

use crate::model::config::{Activation, ClipConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipLayout {
    /// `embeddings.token_embedding`, `encoder.layers.N.self_attn.q_proj`, `final_layer_norm`.
    HuggingFace,
    /// `token_embedding`, `positional_embedding`, `transformer.resblocks.N.attn.in_proj_weight`, `ln_final`.
    OpenClip,
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &ClipConfig, layout: ClipLayout) -> Result<Self> {
        let d = cfg.hidden_size;
        let (q, k, v, out) = match layout {
            ClipLayout::HuggingFace => (
                linear(d, d, vb.pp("q_proj"))?,
                linear(d, d, vb.pp("k_proj"))?,
                linear(d, d, vb.pp("v_proj"))?,
                linear(d, d, vb.pp("out_proj"))?,
            ),
            ClipLayout::OpenClip => {
                let w = vb.get((3 * d, d), "in_proj_weight")?;
                let b = vb.get(3 * d, "in_proj_bias")?;
                // Registered under their own names, so a LoRA finds q, k and v apart.
                let part = |i: usize| -> Result<Linear> {
                    let name = ["q_proj", "k_proj", "v_proj"][i];
                    Ok(Linear::new(
                        w.narrow(0, i * d, d)?.contiguous()?,
                        Some(b.narrow(0, i * d, d)?.contiguous()?),
                    )
                    .adaptable(format!("{}.{name}", vb.prefix())))
                };
                (
                    part(0)?,
                    part(1)?,
                    part(2)?,
                    linear(d, d, vb.pp("out_proj"))?,
                )
            }
        };
        Ok(Self {
            q,
            k,
            v,
            out,
            heads: cfg.num_heads,
        })
    }

    fn forward(&self, x: &Tensor, causal_mask: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let head_dim = d / self.heads;
        let scale = (head_dim as f64).powf(-0.5);
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, n, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split((self.q.forward(x)? * scale)?)?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(causal_mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        self.out.forward(&y)
    }
}

struct Mlp {
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        let h = match self.activation {
            Activation::QuickGelu => (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?,
            Activation::Gelu => h.gelu_erf()?,
        };
        self.fc2.forward(&h)
    }
}

struct Layer {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &ClipConfig, layout: ClipLayout) -> Result<Self> {
        let ln = |name: &str| {
            layer_norm(
                cfg.hidden_size,
                LayerNormConfig {
                    eps: cfg.layer_norm_eps,
                    ..Default::default()
                },
                vb.pp(name),
            )
        };
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(match layout {
            ClipLayout::HuggingFace => Self {
                norm1: ln("layer_norm1")?,
                attn: Attention::load(vb.pp("self_attn"), cfg, layout)?,
                norm2: ln("layer_norm2")?,
                mlp: Mlp {
                    fc1: linear(d, i, vb.pp("mlp.fc1"))?,
                    fc2: linear(i, d, vb.pp("mlp.fc2"))?,
                    activation: cfg.activation,
                },
            },
            ClipLayout::OpenClip => Self {
                norm1: ln("ln_1")?,
                attn: Attention::load(vb.pp("attn"), cfg, layout)?,
                norm2: ln("ln_2")?,
                mlp: Mlp {
                    fc1: linear(d, i, vb.pp("mlp.c_fc"))?,
                    fc2: linear(i, d, vb.pp("mlp.c_proj"))?,
                    activation: cfg.activation,
                },
            },
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm1.forward(x)?, mask)?)?;
        &x + self.mlp.forward(&self.norm2.forward(&x)?)?
    }
}

/// Token ids from here on stand for rows of an extra table (textual-inversion vectors), not
/// for words of the vocabulary.
pub const EXTRA_TOKEN_BASE: u32 = 1 << 24;

pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Tensor,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    config: ClipConfig,
}

/// An embedding table, in the compute dtype: rows are looked up, not multiplied, so a table the
/// file stores in half precision (kept half, like the matrices, by the loader) is widened here.
fn table(vb: &VarBuilder, shape: (usize, usize), name: &str) -> Result<Tensor> {
    crate::model::cpu_storage::to_dtype(&vb.get(shape, name)?, vb.dtype())
}

impl ClipTextModel {
    /// `vb` points at the model's root: `text_model` for Hugging Face, the OpenCLIP `model`.
    pub fn load(vb: VarBuilder, cfg: &ClipConfig, layout: ClipLayout) -> Result<Self> {
        let d = cfg.hidden_size;
        let ln_cfg = LayerNormConfig {
            eps: cfg.layer_norm_eps,
            ..Default::default()
        };
        let (token_embedding, position_embedding, layers_vb, final_norm) = match layout {
            ClipLayout::HuggingFace => (
                Embedding::new(
                    table(
                        &vb,
                        (cfg.vocab_size, d),
                        "embeddings.token_embedding.weight",
                    )?,
                    d,
                ),
                table(
                    &vb,
                    (cfg.max_position_embeddings, d),
                    "embeddings.position_embedding.weight",
                )?,
                vb.pp("encoder.layers"),
                layer_norm(d, ln_cfg, vb.pp("final_layer_norm"))?,
            ),
            ClipLayout::OpenClip => (
                Embedding::new(
                    table(&vb, (cfg.vocab_size, d), "token_embedding.weight")?,
                    d,
                ),
                table(
                    &vb,
                    (cfg.max_position_embeddings, d),
                    "positional_embedding",
                )?,
                vb.pp("transformer.resblocks"),
                layer_norm(d, ln_cfg, vb.pp("ln_final"))?,
            ),
        };
        let layers = (0..cfg.num_layers)
            .map(|i| Layer::load(layers_vb.pp(i), cfg, layout))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_norm,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Hidden states `(batch, tokens, width)` for token ids `(batch, tokens)`. `skip` drops that
    /// many final layers before the final norm (AUTOMATIC1111's "clip skip" minus one).
    pub fn forward(&self, ids: &Tensor, skip: usize) -> Result<Tensor> {
        self.forward_embeddings(&self.token_embedding.forward(ids)?, skip)
    }

    /// The token embeddings of `ids` (`(1, tokens)` on the host), where ids from
    /// `EXTRA_TOKEN_BASE` on take row `id − EXTRA_TOKEN_BASE` of `extra` (`(rows, width)`):
    /// textual-inversion vectors in the places of their words.
    pub fn embed_with_extra(&self, ids: &[u32], extra: &Tensor, device: &Device) -> Result<Tensor> {
        let base: Vec<u32> = ids
            .iter()
            .map(|&id| if id >= EXTRA_TOKEN_BASE { 0 } else { id })
            .collect();
        let base = Tensor::new(base.as_slice(), device)?.unsqueeze(0)?;
        let x = self.token_embedding.forward(&base)?;
        let extra = extra.to_device(device)?.to_dtype(x.dtype())?;
        let rows = ids
            .iter()
            .enumerate()
            .map(|(p, &id)| match id.checked_sub(EXTRA_TOKEN_BASE) {
                Some(row) => extra.narrow(0, row as usize, 1)?.unsqueeze(0),
                None => x.narrow(1, p, 1),
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&rows, 1)
    }

    /// Hidden states from token embeddings `(batch, tokens, width)` (position embeddings are
    /// added here).
    pub fn forward_embeddings(&self, tokens: &Tensor, skip: usize) -> Result<Tensor> {
        let (_, n, _) = tokens.dims3()?;
        let pos = self.position_embedding.narrow(0, 0, n)?;
        let mut x = tokens.broadcast_add(&pos)?;
        let mask = causal_mask(n, x.dtype(), x.device())?;
        let run = self.layers.len().saturating_sub(skip).max(1);
        for layer in &self.layers[..run] {
            crate::interrupt::check()?;
            x = layer.forward(&x, &mask)?;
        }
        self.final_norm.forward(&x)
    }
}

fn causal_mask(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (n, n), device)?.to_dtype(dtype)
}
