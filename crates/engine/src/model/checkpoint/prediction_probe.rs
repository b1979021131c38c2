//! Telling an SD 2.x v-prediction UNet (the 768-v models) from an ε one (the 512 base) when
//! nothing in or beside the file says which: AUTOMATIC1111's test forward
//! (`is_using_v_parameterization_for_sd2`). At timestep 999 on a constant latent, a
//! v-prediction UNet's output lies far below its input on average; an ε UNet's does not.

use candle_core::{DType, Device, Tensor};

use crate::model::config::UNetConfig;
use crate::model::unet::UNet;

/// The constant the test latent and text embedding are filled with.
const TEST_VALUE: f32 = 0.5;
/// The timestep of the test.
const TEST_TIMESTEP: f32 = 999.0;
/// Text tokens in the test embedding.
const TEST_TOKENS: usize = 2;
/// A mean of (output − input) below this means v-prediction.
const V_THRESHOLD: f32 = -1.0;

/// Whether the UNet predicts v, by AUTOMATIC1111's test. Costs one UNet forward on an 8×8
/// latent (larger when the UNet has more than four levels).
pub fn predicts_v(
    unet: &UNet,
    cfg: &UNetConfig,
    device: &Device,
    dtype: DType,
) -> candle_core::Result<bool> {
    let side = 8usize.max(1 << cfg.block_out_channels.len().saturating_sub(1));
    let x = Tensor::full(TEST_VALUE, (1, cfg.in_channels, side, side), device)?;
    let context = Tensor::full(
        TEST_VALUE,
        (1, TEST_TOKENS, cfg.cross_attention_dim),
        device,
    )?;
    let t = Tensor::full(TEST_TIMESTEP, 1, device)?;
    let out = unet
        .forward(&x.to_dtype(dtype)?, &t, &context.to_dtype(dtype)?)?
        .to_dtype(DType::F32)?;
    let mean = (out - &x)?.mean_all()?.to_scalar::<f32>()?;
    Ok(mean < V_THRESHOLD)
}
