//! CPU kernels under the networks: convolutions (im2col bands, Winograd), matrix products,
//! attention in chunks, GroupNorm, GEGLU, the AVX2 dispatch, and tiled VAE passes.

pub mod attention;
pub mod conv;
pub(crate) mod cpu_storage;
pub(crate) mod fast_math;
pub mod geglu;
pub mod layout;
pub mod linear;
pub(crate) mod matmul;
pub mod norm;
pub mod tiling;
pub(crate) mod winograd;
