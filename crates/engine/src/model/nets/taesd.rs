//! TAESD (madebyollin's tiny autoencoder, diffusers' `AutoencoderTiny`): a cheap decoder for
//! full-quality live previews, and its encoder.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::conv::{conv2d, conv2d_no_bias, Conv2d, ConvParams};
use serde::Deserialize;

use crate::error::{EngineError, Result as EngineResult};
use crate::model::weights::WeightFile;

#[derive(Debug, Clone, Deserialize)]
pub struct TaesdConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "encoder_blocks")]
    pub num_encoder_blocks: Vec<usize>,
    #[serde(default = "decoder_blocks")]
    pub num_decoder_blocks: Vec<usize>,
    #[serde(default = "widths")]
    pub encoder_block_out_channels: Vec<usize>,
    #[serde(default = "widths")]
    pub decoder_block_out_channels: Vec<usize>,
    #[serde(default = "two")]
    pub upsampling_scaling_factor: usize,
}

fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn two() -> usize {
    2
}
fn encoder_blocks() -> Vec<usize> {
    vec![1, 3, 3, 3]
}
fn decoder_blocks() -> Vec<usize> {
    vec![3, 3, 3, 1]
}
fn widths() -> Vec<usize> {
    vec![64; 4]
}

fn pad1() -> ConvParams {
    ConvParams {
        padding: 1,
        ..Default::default()
    }
}

/// conv–ReLU–conv–ReLU–conv plus the input, then ReLU.
struct Block {
    convs: [Conv2d; 3],
    skip: Option<Conv2d>,
}

impl Block {
    fn load(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            convs: [
                conv2d(cin, cout, 3, pad1(), vb.pp("conv.0"))?,
                conv2d(cout, cout, 3, pad1(), vb.pp("conv.2"))?,
                conv2d(cout, cout, 3, pad1(), vb.pp("conv.4"))?,
            ],
            skip: if cin != cout {
                Some(conv2d_no_bias(
                    cin,
                    cout,
                    1,
                    Default::default(),
                    vb.pp("skip"),
                )?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.convs[0].forward(x)?.relu()?;
        let h = self.convs[1].forward(&h)?.relu()?;
        let h = self.convs[2].forward(&h)?;
        let skip = match &self.skip {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        (h + skip)?.relu()
    }
}

enum Layer {
    Conv(Conv2d),
    Relu,
    Block(Block),
    Upsample(usize),
}

fn run(layers: &[Layer], x: &Tensor) -> Result<Tensor> {
    let mut x = x.clone();
    for layer in layers {
        x = match layer {
            Layer::Conv(c) => c.forward(&x)?,
            Layer::Relu => x.relu()?,
            Layer::Block(b) => b.forward(&x)?,
            Layer::Upsample(f) => {
                let (_, _, h, w) = x.dims4()?;
                x.upsample_nearest2d(h * f, w * f)?
            }
        };
    }
    Ok(x)
}

pub struct Taesd {
    encoder: Vec<Layer>,
    decoder: Vec<Layer>,
    device: Device,
}

impl Taesd {
    pub fn load(vb: VarBuilder, cfg: &TaesdConfig) -> Result<Self> {
        // Indices follow diffusers' `nn.Sequential` numbering, which names the weights.
        let evb = vb.pp("encoder.layers");
        let mut encoder = vec![];
        let mut idx = 0;
        for (i, &n) in cfg.num_encoder_blocks.iter().enumerate() {
            let ch = cfg.encoder_block_out_channels[i];
            let conv = if i == 0 {
                conv2d(cfg.in_channels, ch, 3, pad1(), evb.pp(idx))?
            } else {
                conv2d_no_bias(
                    ch,
                    ch,
                    3,
                    ConvParams {
                        padding: 1,
                        stride: 2,
                    },
                    evb.pp(idx),
                )?
            };
            encoder.push(Layer::Conv(conv));
            idx += 1;
            for _ in 0..n {
                encoder.push(Layer::Block(Block::load(evb.pp(idx), ch, ch)?));
                idx += 1;
            }
        }
        let last = *cfg.encoder_block_out_channels.last().unwrap_or(&64);
        encoder.push(Layer::Conv(conv2d(
            last,
            cfg.latent_channels,
            3,
            pad1(),
            evb.pp(idx),
        )?));

        let dvb = vb.pp("decoder.layers");
        let first = cfg.decoder_block_out_channels[0];
        let mut decoder = vec![
            Layer::Conv(conv2d(cfg.latent_channels, first, 3, pad1(), dvb.pp(0))?),
            Layer::Relu,
        ];
        let mut idx = 2;
        let levels = cfg.num_decoder_blocks.len();
        for (i, &n) in cfg.num_decoder_blocks.iter().enumerate() {
            let ch = cfg.decoder_block_out_channels[i];
            for _ in 0..n {
                decoder.push(Layer::Block(Block::load(dvb.pp(idx), ch, ch)?));
                idx += 1;
            }
            let last_level = i + 1 == levels;
            if !last_level {
                decoder.push(Layer::Upsample(cfg.upsampling_scaling_factor));
                idx += 1;
            }
            let conv = if last_level {
                conv2d(ch, cfg.out_channels, 3, pad1(), dvb.pp(idx))?
            } else {
                conv2d_no_bias(ch, ch, 3, pad1(), dvb.pp(idx))?
            };
            decoder.push(Layer::Conv(conv));
            idx += 1;
        }
        Ok(Self {
            encoder,
            decoder,
            device: vb.device().clone(),
        })
    }

    /// Where its weights live and it computes.
    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// Opens a diffusers `AutoencoderTiny` folder (or a lone weights file with the default config).
    pub fn open(path: &Path, device: &Device) -> EngineResult<Self> {
        let (cfg, weights) = if path.is_dir() {
            let cfg_text = crate::model::read_json(&path.join("config.json"))?;
            let cfg: TaesdConfig = serde_json::from_str(&cfg_text)
                .map_err(|e| EngineError::bad_model(path, format!("config.json: {e}")))?;
            (cfg, crate::model::component_weights(path)?)
        } else {
            let cfg: TaesdConfig = serde_json::from_str("{}")
                .map_err(|e| EngineError::bad_model(path, e.to_string()))?;
            (cfg, path.to_path_buf())
        };
        let file = Arc::new(WeightFile::open(&weights)?);
        let vb = file.var_builder(DType::F32, device, |n| n.to_string());
        Self::load(vb, &cfg).map_err(|e| EngineError::bad_model(&weights, format!("TAESD: {e}")))
    }

    /// UNet-scale latents → image in [-1, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let x = ((z / 3.0)?.tanh()? * 3.0)?;
        (run(&self.decoder, &x)? * 2.0)? - 1.0
    }

    /// Image in [-1, 1] → UNet-scale latents.
    pub fn encode(&self, image: &Tensor) -> Result<Tensor> {
        run(&self.encoder, &((image + 1.0)? / 2.0)?)
    }
}
