//! Building blocks shared by the UNet and the VAE: residual blocks and resampling.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::linear::{linear, Linear};

use crate::model::conv::{conv2d, Conv2d, ConvParams};

use crate::model::kernels::layout::{Geometry, Plane};
use crate::model::norm::{group_norm, GroupNorm};
use crate::model::tiling::TilePass;

pub fn conv3x3(cin: usize, cout: usize, vb: VarBuilder) -> Result<Conv2d> {
    conv2d(
        cin,
        cout,
        3,
        ConvParams {
            padding: 1,
            ..Default::default()
        },
        vb,
    )
}

pub fn conv1x1(cin: usize, cout: usize, vb: VarBuilder) -> Result<Conv2d> {
    conv2d(cin, cout, 1, Default::default(), vb)
}

/// diffusers' `ResnetBlock2D` with the default "default" time-embedding mode.
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    pub fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        temb_channels: Option<usize>,
        groups: usize,
        eps: f64,
    ) -> Result<Self> {
        Ok(Self {
            norm1: group_norm(groups, cin, eps, vb.pp("norm1"))?,
            conv1: conv3x3(cin, cout, vb.pp("conv1"))?,
            time_emb_proj: temb_channels
                .map(|t| linear(t, cout, vb.pp("time_emb_proj")))
                .transpose()?,
            norm2: group_norm(groups, cout, eps, vb.pp("norm2"))?,
            conv2: conv3x3(cout, cout, vb.pp("conv2"))?,
            shortcut: if cin != cout {
                Some(conv1x1(cin, cout, vb.pp("conv_shortcut"))?)
            } else {
                None
            },
        })
    }

    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        crate::interrupt::check()?;
        let mut h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        crate::interrupt::check()?;
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(&temb.silu()?)?.unsqueeze(2)?.unsqueeze(3)?;
            h = h.broadcast_add(&t)?;
        }
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        match &self.shortcut {
            Some(s) => s.forward(x)? + h,
            None => x + h,
        }
    }
}

impl ResnetBlock {
    /// `forward` over a whole-image activation, one tile at a time (blocks without a time
    /// embedding: the VAE's).
    pub fn forward_tiled(&self, x: &Plane, pass: &TilePass) -> Result<Plane> {
        if self.time_emb_proj.is_some() {
            candle_core::bail!("tiled passes are for blocks without a time embedding");
        }
        let s1 = self.norm1.statistics(x)?;
        let h = pass.conv(
            x,
            self.conv1.geometry()?,
            |t| self.norm1.forward_with(t, &s1, true),
            |t, tile| self.conv1.forward_padded(t, tile.pad),
        )?;
        let s2 = self.norm2.statistics(&h)?;
        pass.conv(
            &h,
            self.conv2.geometry()?,
            |t| self.norm2.forward_with(t, &s2, true),
            |t, tile| {
                let h = self.conv2.forward_padded(t, tile.pad)?;
                let x = pass.read(x, tile)?;
                match &self.shortcut {
                    Some(s) => s.forward(&x)? + h,
                    None => x + h,
                }
            },
        )
    }
}

/// Stride-2 convolution. The UNet pads by one on every side; the VAE pads only right and bottom.
pub struct Downsample {
    conv: Conv2d,
    asymmetric_pad: bool,
}

impl Downsample {
    pub fn unet(ch: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = ConvParams {
            padding: 1,
            stride: 2,
        };
        Ok(Self {
            conv: conv2d(ch, ch, 3, cfg, vb.pp("conv"))?,
            asymmetric_pad: false,
        })
    }

    pub fn vae(ch: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = ConvParams {
            padding: 0,
            stride: 2,
        };
        Ok(Self {
            conv: conv2d(ch, ch, 3, cfg, vb.pp("conv"))?,
            asymmetric_pad: true,
        })
    }

    /// `forward` over a whole-image activation, one tile at a time.
    pub fn forward_tiled(&self, x: &Plane, pass: &TilePass) -> Result<Plane> {
        let geometry = if self.asymmetric_pad {
            Geometry {
                pad_before: 0,
                pad_after: 1,
                ..self.conv.geometry()?
            }
        } else {
            self.conv.geometry()?
        };
        pass.conv(
            x,
            geometry,
            |t| Ok(t.clone()),
            |t, tile| self.conv.forward_padded(t, tile.pad),
        )
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.asymmetric_pad {
            let x = x.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?;
            self.conv.forward(&x)
        } else {
            self.conv.forward(x)
        }
    }
}

/// Nearest-neighbour upsampling followed by a 3×3 convolution.
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn load(ch: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv3x3(ch, ch, vb.pp("conv"))?,
        })
    }

    /// `forward` doubling the size, over a whole-image activation, one tile at a time.
    pub fn forward_tiled(&self, x: &Plane, pass: &TilePass) -> Result<Plane> {
        let geometry = Geometry {
            upsample: true,
            ..self.conv.geometry()?
        };
        pass.conv(
            x,
            geometry,
            |t| Ok(t.clone()),
            |t, tile| self.conv.forward_padded(t, tile.pad),
        )
    }

    /// `size` is the target size when it is not simply double (odd-sized skip connections).
    pub fn forward(&self, x: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (th, tw) = size.unwrap_or((2 * h, 2 * w));
        self.conv.forward(&x.upsample_nearest2d(th, tw)?)
    }
}
