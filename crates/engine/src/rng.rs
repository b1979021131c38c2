//! A random generator that draws exactly what PyTorch's CPU generator draws, so a seed gives
//! the same initial noise here as `torch.randn(shape, generator=torch.Generator().manual_seed(s))`
//! in diffusers.
//!
//! PyTorch's CPU generator is a 32-bit Mersenne Twister (mt19937) seeded with the low 32 bits of
//! the seed. `randn` of a float tensor with at least 16 elements first fills the tensor with
//! 24-bit uniforms, then turns each block of 16 into normals with Box–Muller (pairing element j
//! with j + 8); a tail that is not a multiple of 16 is redrawn as one more block of 16 over the
//! last 16 elements. Smaller tensors draw one double-precision normal per element instead.
//!
//! A batch uses one generator per image (diffusers' list of generators, AUTOMATIC1111's seed + i),
//! so image i of a batch is the image its own seed gives alone.

use candle_core::{Device, Tensor};

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The generators of a job: one, or one per image of a batch.
#[derive(Clone)]
pub struct TorchRng {
    streams: Vec<Generator>,
}

impl TorchRng {
    pub fn new(seed: u64) -> Self {
        Self::for_seeds(&[seed])
    }

    /// One generator per image. An empty list is treated as seed 0 alone.
    pub fn for_seeds(seeds: &[u64]) -> Self {
        let streams = if seeds.is_empty() {
            vec![Generator::new(0)]
        } else {
            seeds.iter().map(|&s| Generator::new(s)).collect()
        };
        Self { streams }
    }

    /// Seeds `seed, seed + 1, …` for a batch of `n`, as AUTOMATIC1111 numbers a batch.
    pub fn consecutive(seed: u64, n: usize) -> Self {
        let seeds: Vec<u64> = (0..n.max(1) as u64).map(|i| seed.wrapping_add(i)).collect();
        Self::for_seeds(&seeds)
    }

    /// How many images this draws for.
    pub fn batch(&self) -> usize {
        self.streams.len()
    }

    /// The first generator's next raw 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        self.streams[0].next_u32()
    }

    /// Standard normal values in the order `torch.randn` fills a contiguous float tensor of
    /// `len` elements, from the first generator.
    pub fn randn(&mut self, len: usize) -> Vec<f32> {
        self.streams[0].randn(len)
    }

    /// `torch.randn(shape)` as a tensor on `device`. With several generators the first axis is
    /// the batch and each image's slice comes from its own generator.
    pub fn randn_tensor(
        &mut self,
        shape: &[usize],
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let data = if self.streams.len() == 1 {
            self.streams[0].randn(n)
        } else {
            if shape.first() != Some(&self.streams.len()) {
                candle_core::bail!(
                    "a batch of {:?} cannot be drawn from {} generators",
                    shape,
                    self.streams.len()
                );
            }
            let per_image = n / self.streams.len();
            let mut data = Vec::with_capacity(n);
            for stream in &mut self.streams {
                data.extend(stream.randn(per_image));
            }
            data
        };
        Tensor::from_vec(data, shape, &Device::Cpu)?.to_device(device)
    }

    pub fn randn_like(&mut self, t: &Tensor) -> candle_core::Result<Tensor> {
        self.randn_tensor(t.dims(), t.device())?.to_dtype(t.dtype())
    }
}

/// One PyTorch CPU generator.
#[derive(Clone)]
struct Generator {
    state: Box<[u32; N]>,
    index: usize,
    /// The second value of a double-precision Box–Muller pair, kept as torch keeps it.
    next_double_normal: Option<f64>,
}

impl Generator {
    fn new(seed: u64) -> Self {
        let mut state = Box::new([0u32; N]);
        state[0] = (seed & 0xffff_ffff) as u32;
        for j in 1..N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        Self {
            state,
            index: N,
            next_double_normal: None,
        }
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & UPPER_MASK) | (self.state[(i + 1) % N] & LOWER_MASK);
            let mut v = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= MATRIX_A;
            }
            self.state[i] = v;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }

    /// torch's `uniform_real_distribution<float>(0, 1)`: 24 random bits.
    fn uniform_f32(&mut self) -> f32 {
        let bits = self.next_u32() & ((1 << 24) - 1);
        bits as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// torch's `uniform_real_distribution<double>(0, 1)`: 53 random bits.
    fn uniform_f64(&mut self) -> f64 {
        let bits = self.next_u64() & ((1u64 << 53) - 1);
        bits as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// torch's `normal_distribution<double>`, which caches the second value of each pair.
    fn normal_f64(&mut self) -> f64 {
        if let Some(v) = self.next_double_normal.take() {
            return v;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    fn randn(&mut self, len: usize) -> Vec<f32> {
        if len < 16 {
            return (0..len).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..len).map(|_| self.uniform_f32()).collect();
        for start in (0..=len - 16).step_by(16) {
            box_muller_16(&mut data[start..start + 16]);
        }
        if !len.is_multiple_of(16) {
            let tail = &mut data[len - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        data
    }
}

fn box_muller_16(block: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - block[j];
        let u2 = block[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f32::consts::PI * u2;
        block[j] = radius * theta.cos();
        block[j + 8] = radius * theta.sin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_sequence() {
        // The C++ standard requires the 10000th output of mt19937 seeded with 5489 to be 4123659995.
        let mut rng = TorchRng::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = rng.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn seed_uses_low_32_bits() {
        let mut a = TorchRng::new(7);
        let mut b = TorchRng::new(7 + (1u64 << 32));
        assert_eq!(a.randn(20), b.randn(20));
    }

    #[test]
    fn a_batch_draws_each_image_from_its_own_seed() {
        let mut batch = TorchRng::consecutive(11, 3);
        let drawn: Vec<f32> = batch
            .randn_tensor(&[3, 2, 4, 4], &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for i in 0..3 {
            let alone = TorchRng::new(11 + i as u64).randn(32);
            assert_eq!(&drawn[i * 32..(i + 1) * 32], &alone[..]);
        }
        assert!(batch.randn_tensor(&[2, 4], &Device::Cpu).is_err());
    }
}
