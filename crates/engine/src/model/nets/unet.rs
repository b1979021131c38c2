//! diffusers' `UNet2DConditionModel` for SD 1.x/2.x: 4-channel and 9-channel (inpainting).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::linear::{linear, Linear};

use crate::model::blocks::{conv3x3, Downsample, ResnetBlock, Upsample};
use crate::model::config::UNetConfig;
use crate::model::norm::{group_norm, GroupNorm};
use crate::model::transformer::{SpatialTransformer, SpatialTransformerConfig};

struct TimeEmbedding {
    linear_1: Linear,
    linear_2: Linear,
    channels: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
}

impl TimeEmbedding {
    /// Sinusoidal features of the (possibly fractional) timesteps, then a two-layer MLP.
    fn forward(&self, timesteps: &Tensor) -> Result<Tensor> {
        let half = self.channels / 2;
        // Rounded step by step in f32 as torch computes it: at timestep 999 an error in the
        // last bit of a frequency moves the phase by 1e-4.
        let denom = (half as f64 - self.freq_shift) as f32;
        let log_max_period = -(10000f64.ln()) as f32;
        let freqs: Vec<f32> = (0..half)
            .map(|i| (log_max_period * i as f32 / denom).exp())
            .collect();
        let freqs = Tensor::from_vec(freqs, (1, half), timesteps.device())?;
        let args = timesteps
            .to_dtype(DType::F32)?
            .unsqueeze(1)?
            .broadcast_mul(&freqs)?;
        let emb = if self.flip_sin_to_cos {
            Tensor::cat(&[args.cos()?, args.sin()?], 1)?
        } else {
            Tensor::cat(&[args.sin()?, args.cos()?], 1)?
        };
        let dtype = self.linear_1.compute_dtype();
        let h = self.linear_1.forward(&emb.to_dtype(dtype)?)?.silu()?;
        self.linear_2.forward(&h)
    }
}

struct Level {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
}

struct DownLevel {
    level: Level,
    downsample: Option<Downsample>,
}

struct UpLevel {
    level: Level,
    upsample: Option<Upsample>,
}

/// The UNet's first half: time embedding, input convolution, down levels and middle block.
/// A ControlNet is a trained copy of it.
pub struct Encoder {
    time: TimeEmbedding,
    conv_in: crate::model::conv::Conv2d,
    down: Vec<DownLevel>,
    mid_resnets: [ResnetBlock; 2],
    mid_attention: SpatialTransformer,
}

/// What the encoder hands on: the time embedding, the middle block's output and the skip
/// connections, shallowest first.
pub struct Encoded {
    pub temb: Tensor,
    pub x: Tensor,
    pub skips: Vec<Tensor>,
}

/// The residuals ControlNets add to a UNet: one per skip connection, and one to the middle
/// block's output.
#[derive(Debug, Clone)]
pub struct ControlResiduals {
    pub down: Vec<Tensor>,
    pub mid: Tensor,
}

impl ControlResiduals {
    /// `self + other`, term by term (several ControlNets at once).
    pub fn add(&self, other: &ControlResiduals) -> Result<ControlResiduals> {
        if self.down.len() != other.down.len() {
            candle_core::bail!("ControlNet residual counts differ");
        }
        Ok(ControlResiduals {
            down: self
                .down
                .iter()
                .zip(&other.down)
                .map(|(a, b)| a.broadcast_add(b))
                .collect::<Result<_>>()?,
            mid: self.mid.broadcast_add(&other.mid)?,
        })
    }
}

/// A cross-attention transformer of the UNet at a level of `channels` with `heads` heads.
fn transformer(
    vb: VarBuilder,
    cfg: &UNetConfig,
    channels: usize,
    heads: usize,
) -> Result<SpatialTransformer> {
    SpatialTransformer::load(
        vb,
        &SpatialTransformerConfig {
            channels,
            heads,
            depth: cfg.transformer_layers,
            context_dim: cfg.cross_attention_dim,
            groups: cfg.norm_num_groups,
            linear_projection: cfg.use_linear_projection,
        },
    )
}

impl Encoder {
    pub fn load(vb: &VarBuilder, cfg: &UNetConfig) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let levels = ch.len();
        let temb = 4 * ch[0];
        let groups = cfg.norm_num_groups;
        let eps = cfg.norm_eps;
        let transformer = |vb, channels, heads| transformer(vb, cfg, channels, heads);

        let time = TimeEmbedding {
            linear_1: linear(ch[0], temb, vb.pp("time_embedding.linear_1"))?,
            linear_2: linear(temb, temb, vb.pp("time_embedding.linear_2"))?,
            channels: ch[0],
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            freq_shift: cfg.freq_shift,
        };
        let conv_in = conv3x3(cfg.in_channels, ch[0], vb.pp("conv_in"))?;

        let mut down = Vec::with_capacity(levels);
        for i in 0..levels {
            let vb = vb.pp(format!("down_blocks.{i}"));
            let cin = if i == 0 { ch[0] } else { ch[i - 1] };
            let mut level = Level {
                resnets: vec![],
                attentions: vec![],
            };
            for j in 0..cfg.layers_per_block {
                let rin = if j == 0 { cin } else { ch[i] };
                level.resnets.push(ResnetBlock::load(
                    vb.pp(format!("resnets.{j}")),
                    rin,
                    ch[i],
                    Some(temb),
                    groups,
                    eps,
                )?);
                if cfg.down_attention[i] {
                    level.attentions.push(transformer(
                        vb.pp(format!("attentions.{j}")),
                        ch[i],
                        cfg.heads[i],
                    )?);
                }
            }
            let downsample = if i + 1 < levels {
                Some(Downsample::unet(ch[i], vb.pp("downsamplers.0"))?)
            } else {
                None
            };
            down.push(DownLevel { level, downsample });
        }

        let deepest = ch[levels - 1];
        let mvb = vb.pp("mid_block");
        let mid_resnets = [
            ResnetBlock::load(
                mvb.pp("resnets.0"),
                deepest,
                deepest,
                Some(temb),
                groups,
                eps,
            )?,
            ResnetBlock::load(
                mvb.pp("resnets.1"),
                deepest,
                deepest,
                Some(temb),
                groups,
                eps,
            )?,
        ];
        let mid_attention = transformer(mvb.pp("attentions.0"), deepest, cfg.heads[levels - 1])?;
        Ok(Self {
            time,
            conv_in,
            down,
            mid_resnets,
            mid_attention,
        })
    }

    /// Runs the first half; `hint` (a ControlNet's embedded condition) is added to the input
    /// convolution's output.
    pub fn forward(
        &self,
        sample: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        hint: Option<&Tensor>,
    ) -> Result<Encoded> {
        let temb = self.time.forward(timesteps)?;
        let mut x = self.conv_in.forward(sample)?;
        if let Some(hint) = hint {
            x = (x + hint)?;
        }
        let mut skips = vec![x.clone()];
        for level in &self.down {
            for (j, resnet) in level.level.resnets.iter().enumerate() {
                crate::interrupt::check()?;
                x = resnet.forward(&x, Some(&temb))?;
                if let Some(attn) = level.level.attentions.get(j) {
                    x = attn.forward(&x, context)?;
                }
                skips.push(x.clone());
            }
            if let Some(down) = &level.downsample {
                x = down.forward(&x)?;
                skips.push(x.clone());
            }
        }

        crate::interrupt::check()?;
        x = self.mid_resnets[0].forward(&x, Some(&temb))?;
        x = self.mid_attention.forward(&x, context)?;
        x = self.mid_resnets[1].forward(&x, Some(&temb))?;
        Ok(Encoded { temb, x, skips })
    }
}

pub struct UNet {
    encoder: Encoder,
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: crate::model::conv::Conv2d,
    config: UNetConfig,
}

impl UNet {
    pub fn load(vb: VarBuilder, cfg: &UNetConfig) -> Result<Self> {
        let encoder = Encoder::load(&vb, cfg)?;
        let ch = &cfg.block_out_channels;
        let levels = ch.len();
        let temb = 4 * ch[0];
        let groups = cfg.norm_num_groups;
        let eps = cfg.norm_eps;
        let transformer = |vb, channels, heads| transformer(vb, cfg, channels, heads);
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let rev_heads: Vec<usize> = cfg.heads.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(levels);
        for i in 0..levels {
            let vb = vb.pp(format!("up_blocks.{i}"));
            let prev_out = if i == 0 { rev[0] } else { rev[i - 1] };
            let out = rev[i];
            let input = rev[(i + 1).min(levels - 1)];
            let mut level = Level {
                resnets: vec![],
                attentions: vec![],
            };
            for j in 0..=cfg.layers_per_block {
                let skip = if j == cfg.layers_per_block {
                    input
                } else {
                    out
                };
                let rin = if j == 0 { prev_out } else { out };
                level.resnets.push(ResnetBlock::load(
                    vb.pp(format!("resnets.{j}")),
                    rin + skip,
                    out,
                    Some(temb),
                    groups,
                    eps,
                )?);
                if cfg.up_attention[i] {
                    level.attentions.push(transformer(
                        vb.pp(format!("attentions.{j}")),
                        out,
                        rev_heads[i],
                    )?);
                }
            }
            let upsample = if i + 1 < levels {
                Some(Upsample::load(out, vb.pp("upsamplers.0"))?)
            } else {
                None
            };
            up.push(UpLevel { level, upsample });
        }

        Ok(Self {
            encoder,
            up,
            norm_out: group_norm(groups, ch[0], eps, vb.pp("conv_norm_out"))?,
            conv_out: conv3x3(ch[0], cfg.out_channels, vb.pp("conv_out"))?,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// `timesteps` holds one (possibly fractional) timestep per batch element.
    pub fn forward(&self, sample: &Tensor, timesteps: &Tensor, context: &Tensor) -> Result<Tensor> {
        self.forward_controlled(sample, timesteps, context, None)
    }

    /// `forward` with ControlNet residuals added to the skip connections and to the middle
    /// block's output, as diffusers' `down/mid_block_additional_residual(s)`.
    pub fn forward_controlled(
        &self,
        sample: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        control: Option<&ControlResiduals>,
    ) -> Result<Tensor> {
        let Encoded {
            temb,
            mut x,
            mut skips,
        } = self.encoder.forward(sample, timesteps, context, None)?;
        if let Some(control) = control {
            if control.down.len() != skips.len() {
                candle_core::bail!(
                    "the ControlNet gives {} residuals, the UNet has {} skip connections",
                    control.down.len(),
                    skips.len()
                );
            }
            // Broadcast: a pooled (shuffle) ControlNet gives one value per channel.
            for (skip, residual) in skips.iter_mut().zip(&control.down) {
                *skip = skip.broadcast_add(residual)?;
            }
            x = x.broadcast_add(&control.mid)?;
        }

        for level in &self.up {
            for (j, resnet) in level.level.resnets.iter().enumerate() {
                let skip = skips.pop().ok_or_else(|| {
                    candle_core::Error::Msg("UNet skip connections exhausted".into())
                })?;
                crate::interrupt::check()?;
                x = resnet.forward(&Tensor::cat(&[&x, &skip], 1)?, Some(&temb))?;
                if let Some(attn) = level.level.attentions.get(j) {
                    x = attn.forward(&x, context)?;
                }
            }
            if let Some(up) = &level.upsample {
                // Odd latent sizes: match the skip connection the next level will concatenate.
                let size = skips
                    .last()
                    .map(|s| s.dims4())
                    .transpose()?
                    .map(|(_, _, h, w)| (h, w));
                x = up.forward(&x, size)?;
            }
        }

        let x = self.norm_out.forward_silu(&x)?;
        self.conv_out.forward(&x)
    }
}
