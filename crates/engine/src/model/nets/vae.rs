//! diffusers' `AutoencoderKL`, the SD VAE: images in [-1, 1] to latent distributions and back.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::linear::Linear;

use crate::model::conv::Conv2d;

use crate::model::blocks::{conv1x1, conv3x3, Downsample, ResnetBlock, Upsample};
use crate::model::config::VaeConfig;
use crate::model::norm::{group_norm, GroupNorm};
use crate::model::tiling::{Plane, TilePass, Tiling};

/// Single-head self-attention over the pixels of the VAE's mid block.
struct MidAttention {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl MidAttention {
    fn load(vb: VarBuilder, ch: usize, groups: usize) -> Result<Self> {
        Ok(Self {
            norm: group_norm(groups, ch, 1e-6, vb.pp("group_norm"))?,
            q: linear_or_conv1x1(ch, vb.pp("to_q"))?,
            k: linear_or_conv1x1(ch, vb.pp("to_k"))?,
            v: linear_or_conv1x1(ch, vb.pp("to_v"))?,
            out: linear_or_conv1x1(ch, vb.pp("to_out.0"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let tokens = self
            .norm
            .forward(x)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            // One contiguous copy for the three projections (each would make its own).
            .contiguous()?;
        let q = self.q.forward(&tokens)?;
        let k = self.k.forward(&tokens)?;
        let v = self.v.forward(&tokens)?;
        let y = crate::model::attention::scaled_dot_product_attention(&q, &k, &v, 1)?;
        let y = self
            .out
            .forward(&y)?
            .transpose(1, 2)?
            .reshape((b, c, h, w))?;
        y + x
    }
}

/// LDM checkpoints store these projections as 1×1 convolutions `[C, C, 1, 1]`.
fn linear_or_conv1x1(ch: usize, vb: VarBuilder) -> Result<Linear> {
    let w = match vb.get((ch, ch), "weight") {
        Ok(w) => w,
        Err(linear) => match vb.get((ch, ch, 1, 1), "weight") {
            Ok(w) => w.reshape((ch, ch))?,
            Err(_) => return Err(linear),
        },
    };
    Ok(Linear::new(w, Some(vb.get(ch, "bias")?)))
}

struct Mid {
    resnets: [ResnetBlock; 2],
    attention: Option<MidAttention>,
}

impl Mid {
    fn load(vb: VarBuilder, ch: usize, cfg: &VaeConfig) -> Result<Self> {
        let g = cfg.norm_num_groups;
        Ok(Self {
            resnets: [
                ResnetBlock::load(vb.pp("resnets.0"), ch, ch, None, g, 1e-6)?,
                ResnetBlock::load(vb.pp("resnets.1"), ch, ch, None, g, 1e-6)?,
            ],
            attention: if cfg.mid_block_attention {
                Some(MidAttention::load(vb.pp("attentions.0"), ch, g)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.resnets[0].forward(x, None)?;
        if let Some(attn) = &self.attention {
            x = attn.forward(&x)?;
        }
        self.resnets[1].forward(&x, None)
    }
}

struct Encoder {
    conv_in: Conv2d,
    down: Vec<(Vec<ResnetBlock>, Option<Downsample>)>,
    mid: Mid,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn load(vb: VarBuilder, cfg: &VaeConfig) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let g = cfg.norm_num_groups;
        let mut down = vec![];
        for i in 0..ch.len() {
            let bvb = vb.pp(format!("down_blocks.{i}"));
            let cin = if i == 0 { ch[0] } else { ch[i - 1] };
            let resnets = (0..cfg.layers_per_block)
                .map(|j| {
                    ResnetBlock::load(
                        bvb.pp(format!("resnets.{j}")),
                        if j == 0 { cin } else { ch[i] },
                        ch[i],
                        None,
                        g,
                        1e-6,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let ds = if i + 1 < ch.len() {
                Some(Downsample::vae(ch[i], bvb.pp("downsamplers.0"))?)
            } else {
                None
            };
            down.push((resnets, ds));
        }
        let last = *ch.last().unwrap_or(&ch[0]);
        Ok(Self {
            conv_in: conv3x3(cfg.in_channels, ch[0], vb.pp("conv_in"))?,
            down,
            mid: Mid::load(vb.pp("mid_block"), last, cfg)?,
            norm_out: group_norm(g, last, 1e-6, vb.pp("conv_norm_out"))?,
            conv_out: conv3x3(last, 2 * cfg.latent_channels, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.conv_in.forward(x)?;
        for (resnets, ds) in &self.down {
            for r in resnets {
                x = r.forward(&x, None)?;
            }
            if let Some(ds) = ds {
                x = ds.forward(&x)?;
            }
        }
        let x = self.mid.forward(&x)?;
        self.conv_out.forward(&self.norm_out.forward_silu(&x)?)
    }

    /// `forward` with the full-resolution layers run one tile at a time; the mid block, at
    /// latent resolution (its attention sees every cell), runs whole.
    fn forward_tiled(&self, image: &Tensor, pass: &TilePass) -> Result<Tensor> {
        let mut x = pass.conv(
            &Plane::from_tensor(image)?,
            self.conv_in.geometry()?,
            |t| Ok(t.clone()),
            |t, tile| self.conv_in.forward_padded(t, tile.pad),
        )?;
        for (resnets, ds) in &self.down {
            for r in resnets {
                x = r.forward_tiled(&x, pass)?;
            }
            if let Some(ds) = ds {
                x = ds.forward_tiled(&x, pass)?;
            }
        }
        let x = self.mid.forward(&x.to_tensor(&pass.device, pass.dtype)?)?;
        self.conv_out.forward(&self.norm_out.forward_silu(&x)?)
    }
}

struct Decoder {
    conv_in: Conv2d,
    mid: Mid,
    up: Vec<(Vec<ResnetBlock>, Option<Upsample>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn load(vb: VarBuilder, cfg: &VaeConfig) -> Result<Self> {
        let rev: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let g = cfg.norm_num_groups;
        let mut up = vec![];
        for i in 0..rev.len() {
            let bvb = vb.pp(format!("up_blocks.{i}"));
            let cin = if i == 0 { rev[0] } else { rev[i - 1] };
            let resnets = (0..=cfg.layers_per_block)
                .map(|j| {
                    ResnetBlock::load(
                        bvb.pp(format!("resnets.{j}")),
                        if j == 0 { cin } else { rev[i] },
                        rev[i],
                        None,
                        g,
                        1e-6,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let us = if i + 1 < rev.len() {
                Some(Upsample::load(rev[i], bvb.pp("upsamplers.0"))?)
            } else {
                None
            };
            up.push((resnets, us));
        }
        let first = *rev.last().unwrap_or(&rev[0]);
        Ok(Self {
            conv_in: conv3x3(cfg.latent_channels, rev[0], vb.pp("conv_in"))?,
            mid: Mid::load(vb.pp("mid_block"), rev[0], cfg)?,
            up,
            norm_out: group_norm(g, first, 1e-6, vb.pp("conv_norm_out"))?,
            conv_out: conv3x3(first, cfg.out_channels, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut x = self.mid.forward(&self.conv_in.forward(z)?)?;
        for (resnets, us) in &self.up {
            for r in resnets {
                x = r.forward(&x, None)?;
            }
            if let Some(us) = us {
                x = us.forward(&x, None)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward_silu(&x)?)
    }

    /// `forward` with the mid block, at latent resolution (its attention sees every cell), run
    /// whole and the layers above it one tile at a time.
    fn forward_tiled(&self, z: &Tensor, pass: &TilePass) -> Result<Tensor> {
        let mid = self.mid.forward(&self.conv_in.forward(z)?)?;
        let mut x = Plane::from_tensor(&mid)?;
        drop(mid);
        for (resnets, us) in &self.up {
            for r in resnets {
                x = r.forward_tiled(&x, pass)?;
            }
            if let Some(us) = us {
                x = us.forward_tiled(&x, pass)?;
            }
        }
        let stats = self.norm_out.statistics(&x)?;
        pass.conv(
            &x,
            self.conv_out.geometry()?,
            |t| self.norm_out.forward_with(t, &stats, true),
            |t, tile| self.conv_out.forward_padded(t, tile.pad),
        )?
        .to_tensor(&pass.device, pass.dtype)
    }
}

/// The diagonal Gaussian the encoder predicts for each latent.
pub struct LatentDistribution {
    pub mean: Tensor,
    pub std: Tensor,
}

impl LatentDistribution {
    /// `mean + std * noise`, with the noise drawn by the caller so that the order of random
    /// draws can match diffusers'.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        &self.mean + (&self.std * noise)?
    }
}

pub struct Vae {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    config: VaeConfig,
}

impl Vae {
    pub fn load(vb: VarBuilder, cfg: &VaeConfig) -> Result<Self> {
        let lc = cfg.latent_channels;
        Ok(Self {
            encoder: Encoder::load(vb.pp("encoder"), cfg)?,
            decoder: Decoder::load(vb.pp("decoder"), cfg)?,
            quant_conv: if cfg.use_quant_conv {
                Some(conv1x1(2 * lc, 2 * lc, vb.pp("quant_conv"))?)
            } else {
                None
            },
            post_quant_conv: if cfg.use_post_quant_conv {
                Some(conv1x1(lc, lc, vb.pp("post_quant_conv"))?)
            } else {
                None
            },
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Image `(b, 3, h, w)` in [-1, 1] → latent distribution (unscaled).
    pub fn encode(&self, image: &Tensor) -> Result<LatentDistribution> {
        self.distribution(&self.moments(image)?)
    }

    /// `encode` with the full-resolution layers run one tile at a time, for large images:
    /// the same result with the device holding one tile's activations.
    pub fn encode_tiled(&self, image: &Tensor, tiling: &Tiling) -> Result<LatentDistribution> {
        let moments = self.encoder.forward_tiled(image, &pass(image, tiling))?;
        self.distribution(&self.quant(moments)?)
    }

    /// `decode` with the full-resolution layers run one tile at a time, for large images.
    pub fn decode_tiled(&self, z: &Tensor, tiling: &Tiling) -> Result<Tensor> {
        let z = self.post_quant(z)?;
        self.decoder.forward_tiled(&z, &pass(&z, tiling))
    }

    /// Pixels per latent cell.
    pub fn scale(&self) -> usize {
        1 << self.config.block_out_channels.len().saturating_sub(1)
    }

    fn moments(&self, image: &Tensor) -> Result<Tensor> {
        self.quant(self.encoder.forward(image)?)
    }

    fn quant(&self, moments: Tensor) -> Result<Tensor> {
        match &self.quant_conv {
            Some(q) => q.forward(&moments),
            None => Ok(moments),
        }
    }

    fn post_quant(&self, z: &Tensor) -> Result<Tensor> {
        match &self.post_quant_conv {
            Some(p) => p.forward(z),
            None => Ok(z.clone()),
        }
    }

    fn distribution(&self, moments: &Tensor) -> Result<LatentDistribution> {
        let lc = self.config.latent_channels;
        let mean = moments.narrow(1, 0, lc)?;
        let logvar = moments.narrow(1, lc, lc)?.clamp(-30f32, 20f32)?;
        let std = (logvar * 0.5)?.exp()?;
        Ok(LatentDistribution { mean, std })
    }

    /// Unscaled latents → image in roughly [-1, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.post_quant(z)?)
    }
}

fn pass(x: &Tensor, tiling: &Tiling) -> TilePass {
    TilePass {
        tile: tiling.tile,
        device: x.device().clone(),
        dtype: x.dtype(),
    }
}
