//! diffusers' `Transformer2DModel` as the SD UNet uses it: group norm, projection in, basic
//! transformer blocks (self-attention, cross-attention, GEGLU feed-forward), projection out,
//! residual.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use crate::model::blocks::conv1x1;
use crate::model::linear::{linear, linear_no_bias, Linear};
use crate::model::norm::{group_norm, GroupNorm};

pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl Attention {
    pub fn load(
        vb: VarBuilder,
        query_dim: usize,
        context_dim: usize,
        heads: usize,
    ) -> Result<Self> {
        Ok(Self {
            to_q: linear_no_bias(query_dim, query_dim, vb.pp("to_q"))?,
            to_k: linear_no_bias(context_dim, query_dim, vb.pp("to_k"))?,
            to_v: linear_no_bias(context_dim, query_dim, vb.pp("to_v"))?,
            to_out: linear(query_dim, query_dim, vb.pp("to_out.0"))?,
            heads,
        })
    }

    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.unwrap_or(x);
        let q = self.to_q.forward(x)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        crate::interrupt::check()?;
        let y = crate::model::attention::scaled_dot_product_attention(&q, &k, &v, self.heads)?;
        self.to_out.forward(&y)
    }
}

struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    fn load(vb: VarBuilder, dim: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj_in: linear(dim, 2 * inner, vb.pp("net.0.proj"))?,
            proj_out: linear(inner, dim, vb.pp("net.2"))?,
        })
    }

    /// GEGLU with the exact (erf) GELU, as diffusers computes it.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let hidden = crate::model::geglu::geglu(&self.proj_in.forward(x)?)?;
        crate::interrupt::check()?;
        self.proj_out.forward(&hidden)
    }
}

struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    fn load(vb: VarBuilder, dim: usize, context_dim: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            norm1: layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::load(vb.pp("attn1"), dim, dim, heads)?,
            norm2: layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::load(vb.pp("attn2"), dim, context_dim, heads)?,
            norm3: layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff: FeedForward::load(vb.pp("ff"), dim)?,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let x = (self.attn1.forward(&self.norm1.forward(x)?, None)? + x)?;
        crate::interrupt::check()?;
        let x = (self
            .attn2
            .forward(&self.norm2.forward(&x)?, Some(context))?
            + x)?;
        crate::interrupt::check()?;
        self.ff.forward(&self.norm3.forward(&x)?)? + x
    }
}

enum Projection {
    Conv(crate::model::conv::Conv2d),
    Linear(Linear),
}

pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

pub struct SpatialTransformerConfig {
    pub channels: usize,
    pub heads: usize,
    pub depth: usize,
    pub context_dim: usize,
    pub groups: usize,
    pub linear_projection: bool,
}

impl SpatialTransformer {
    pub fn load(vb: VarBuilder, cfg: &SpatialTransformerConfig) -> Result<Self> {
        let c = cfg.channels;
        let proj = |name: &str| -> Result<Projection> {
            Ok(if cfg.linear_projection {
                Projection::Linear(linear(c, c, vb.pp(name))?)
            } else {
                Projection::Conv(conv1x1(c, c, vb.pp(name))?)
            })
        };
        let blocks = (0..cfg.depth)
            .map(|i| {
                BasicTransformerBlock::load(
                    vb.pp(format!("transformer_blocks.{i}")),
                    c,
                    cfg.context_dim,
                    cfg.heads,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm: group_norm(cfg.groups, c, 1e-6, vb.pp("norm"))?,
            proj_in: proj("proj_in")?,
            blocks,
            proj_out: proj("proj_out")?,
        })
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let to_tokens =
            |t: Tensor| -> Result<Tensor> { t.permute((0, 2, 3, 1))?.reshape((b, h * w, c)) };
        let to_image = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous()
        };
        let normed = self.norm.forward(x)?;
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(conv.forward(&normed)?)?,
            Projection::Linear(lin) => lin.forward(&to_tokens(normed)?)?,
        };
        for block in &self.blocks {
            crate::interrupt::check()?;
            tokens = block.forward(&tokens, context)?;
        }
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&to_image(tokens)?)?,
            Projection::Linear(lin) => to_image(lin.forward(&tokens)?)?,
        };
        out + x
    }
}
