//! diffusers' `ControlNetModel` (lllyasviel's ControlNet): a trained copy of the UNet's encoder
//! that also sees a condition image (lines, edges, depth, pose…) through a small convolutional
//! hint encoder, and hands the UNet one residual per skip connection and one for its middle
//! block, each through a 1×1 ("zero") convolution.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::blocks::{conv1x1, conv3x3};
use crate::model::config::UNetConfig;
use crate::model::conv::{conv2d, Conv2d, ConvParams};
use crate::model::unet::{ControlResiduals, Encoder};

/// Channels of the hint encoder's levels in every published ControlNet (diffusers' default).
pub const DEFAULT_EMBEDDING_CHANNELS: [usize; 4] = [16, 32, 96, 256];

#[derive(Debug, Clone, PartialEq)]
pub struct ControlNetConfig {
    /// The encoder it copies: in/out channels, levels, attention, heads (up-level fields unused).
    pub unet: UNetConfig,
    /// Channels of the condition image (3: RGB).
    pub conditioning_channels: usize,
    /// The hint encoder's widths; it halves the image between consecutive ones.
    pub embedding_channels: Vec<usize>,
    /// Shuffle-style ControlNets: residuals are averaged over the image, applied to the
    /// conditional half only.
    pub global_pool_conditions: bool,
    /// The condition is given in BGR order (diffusers' `controlnet_conditioning_channel_order`).
    pub bgr: bool,
}

impl ControlNetConfig {
    /// How much the hint encoder shrinks the condition image: it must land on the latents.
    pub fn hint_scale(&self) -> usize {
        1 << self.embedding_channels.len().saturating_sub(1)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        self.unet.validate()?;
        if self.conditioning_channels == 0 || self.conditioning_channels > 4 {
            return Err(format!(
                "{} condition channels (an image has 1–4)",
                self.conditioning_channels
            ));
        }
        if self.embedding_channels.is_empty() || self.embedding_channels.len() > 8 {
            return Err(format!(
                "{} hint encoder levels",
                self.embedding_channels.len()
            ));
        }
        if self.embedding_channels.contains(&0) {
            return Err("a hint encoder level has no channels".into());
        }
        Ok(())
    }
}

/// `ControlNetConditioningEmbedding`: convolutions with SiLU between them, every second one of
/// stride 2, ending in the UNet's first width.
struct HintEncoder {
    conv_in: Conv2d,
    blocks: Vec<Conv2d>,
    conv_out: Conv2d,
}

impl HintEncoder {
    fn load(vb: VarBuilder, cfg: &ControlNetConfig) -> Result<Self> {
        let e = &cfg.embedding_channels;
        let conv_in = conv3x3(cfg.conditioning_channels, e[0], vb.pp("conv_in"))?;
        let mut blocks = Vec::with_capacity(2 * (e.len() - 1));
        for i in 0..e.len() - 1 {
            blocks.push(conv3x3(e[i], e[i], vb.pp(format!("blocks.{}", 2 * i)))?);
            blocks.push(conv2d(
                e[i],
                e[i + 1],
                3,
                ConvParams {
                    padding: 1,
                    stride: 2,
                },
                vb.pp(format!("blocks.{}", 2 * i + 1)),
            )?);
        }
        let conv_out = conv3x3(
            e[e.len() - 1],
            cfg.unet.block_out_channels[0],
            vb.pp("conv_out"),
        )?;
        Ok(Self {
            conv_in,
            blocks,
            conv_out,
        })
    }

    fn forward(&self, hint: &Tensor) -> Result<Tensor> {
        let mut x = self.conv_in.forward(hint)?.silu()?;
        for block in &self.blocks {
            x = block.forward(&x)?.silu()?;
        }
        self.conv_out.forward(&x)
    }
}

pub struct ControlNet {
    encoder: Encoder,
    hint: HintEncoder,
    /// One per skip connection of the UNet, shallowest first.
    zero_convs: Vec<Conv2d>,
    mid_out: Conv2d,
    config: ControlNetConfig,
}

impl ControlNet {
    /// `vb` asks for diffusers' names (`controlnet_cond_embedding.*`, `controlnet_down_blocks.*`,
    /// `controlnet_mid_block.*` beside the encoder's).
    pub fn load(vb: VarBuilder, cfg: &ControlNetConfig) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let encoder = Encoder::load(&vb, &cfg.unet)?;
        let hint = HintEncoder::load(vb.pp("controlnet_cond_embedding"), cfg)?;
        let ch = &cfg.unet.block_out_channels;
        // The widths of the skip connections, in the order the encoder pushes them.
        let mut widths = vec![ch[0]];
        for (i, &c) in ch.iter().enumerate() {
            widths.extend(std::iter::repeat_n(c, cfg.unet.layers_per_block));
            if i + 1 < ch.len() {
                widths.push(c);
            }
        }
        let zero_convs = widths
            .iter()
            .enumerate()
            .map(|(k, &c)| conv1x1(c, c, vb.pp(format!("controlnet_down_blocks.{k}"))))
            .collect::<Result<Vec<_>>>()?;
        let deepest = ch[ch.len() - 1];
        let mid_out = conv1x1(deepest, deepest, vb.pp("controlnet_mid_block"))?;
        Ok(Self {
            encoder,
            hint,
            zero_convs,
            mid_out,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &ControlNetConfig {
        &self.config
    }

    /// The residuals for latents `sample` (the UNet's own input, without an inpainting UNet's
    /// extra channels) and the condition image `hint` in [0, 1], `(batch, 3, 8h, 8w)`;
    /// unscaled (the caller applies the weight).
    pub fn forward(
        &self,
        sample: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        hint: &Tensor,
    ) -> Result<ControlResiduals> {
        let hint = if self.config.bgr {
            let c = hint.dim(1)?;
            let flipped = (0..c)
                .rev()
                .map(|i| hint.narrow(1, i, 1))
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&flipped, 1)?
        } else {
            hint.clone()
        };
        let embedded = self.hint.forward(&hint)?;
        let encoded = self
            .encoder
            .forward(sample, timesteps, context, Some(&embedded))?;
        if encoded.skips.len() != self.zero_convs.len() {
            candle_core::bail!(
                "the ControlNet's encoder gave {} skips for {} zero convolutions",
                encoded.skips.len(),
                self.zero_convs.len()
            );
        }
        let pool = |t: Tensor| -> Result<Tensor> {
            if self.config.global_pool_conditions {
                let dtype = t.dtype();
                t.to_dtype(DType::F32)?
                    .mean_keepdim(3)?
                    .mean_keepdim(2)?
                    .to_dtype(dtype)
            } else {
                Ok(t)
            }
        };
        let down = encoded
            .skips
            .iter()
            .zip(&self.zero_convs)
            .map(|(skip, conv)| pool(conv.forward(skip)?))
            .collect::<Result<Vec<_>>>()?;
        let mid = pool(self.mid_out.forward(&encoded.x)?)?;
        Ok(ControlResiduals { down, mid })
    }
}
