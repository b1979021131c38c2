//! Prompts to text embeddings: CLIP's BPE tokenizer and the text encoder.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use crate::error::{EngineError, Result, TensorContext};
use crate::model::clip::ClipTextModel;
use crate::prompt::{self, Fragment};

/// CLIP's tokenizer (OpenAI's vocabulary, MIT licence), the same for every SD 1.x/2.x model;
/// single-file checkpoints carry none.
const BUNDLED_TOKENIZER: &[u8] = include_bytes!("../assets/clip-tokenizer.json");

pub const BOS: u32 = 49406;
pub const EOS: u32 = 49407;
/// Tokens per encoder pass: BOS, 75 prompt tokens, EOS.
pub const CONTEXT_LEN: usize = 77;
/// Prompt tokens per chunk.
pub const CHUNK_LEN: usize = CONTEXT_LEN - 2;
/// AUTOMATIC1111 moves the words after a comma to the next chunk when that comma is this close
/// to the end of a full chunk, so phrases are not cut in two.
const COMMA_BACKTRACK: usize = 20;

pub struct ClipTokenizer {
    inner: Tokenizer,
    pad: u32,
}

impl ClipTokenizer {
    pub fn bundled(pad: u32) -> Result<Self> {
        let inner = Tokenizer::from_bytes(BUNDLED_TOKENIZER)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(Self { inner, pad })
    }

    pub fn from_file(path: &Path, pad: u32) -> Result<Self> {
        // The tokenizer library opens the path itself: refuse FIFOs and devices first.
        crate::regular_file::open(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let inner = Tokenizer::from_file(path)
            .map_err(|e| EngineError::bad_model(path, format!("unreadable tokenizer: {e}")))?;
        Ok(Self { inner, pad })
    }

    pub fn pad(&self) -> u32 {
        self.pad
    }

    pub fn set_pad(&mut self, pad: u32) {
        self.pad = pad;
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The prompt's tokens, without BOS/EOS.
    pub fn tokens(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// BOS, the first 75 tokens, EOS, then padding to 77, as diffusers' pipelines tokenize.
    pub fn ids_for_pass(&self, tokens: &[u32]) -> Vec<u32> {
        let body = &tokens[..tokens.len().min(CONTEXT_LEN - 2)];
        let mut ids = Vec::with_capacity(CONTEXT_LEN);
        ids.push(BOS);
        ids.extend_from_slice(body);
        ids.push(EOS);
        ids.resize(CONTEXT_LEN, self.pad);
        ids
    }
}

/// One 75-token chunk of a prompt and the emphasis of each token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    pub tokens: Vec<u32>,
    pub weights: Vec<f64>,
}

impl ClipTokenizer {
    /// AUTOMATIC1111's chunking: weighted fragments are tokenized one by one and packed into
    /// chunks of 75 tokens; `BREAK` and full chunks start new ones.
    pub fn chunks(&self, prompt: &str) -> Result<Vec<Chunk>> {
        let comma = self.token_id(",</w>");
        let mut chunks = vec![];
        let mut chunk = Chunk::default();
        let mut last_comma: Option<usize> = None;
        for fragment in prompt::parse(prompt) {
            let (text, weight) = match fragment {
                Fragment::Break => {
                    chunks.push(std::mem::take(&mut chunk));
                    last_comma = None;
                    continue;
                }
                Fragment::Text { text, weight } => (text, weight),
            };
            for token in self.tokens(&text)? {
                if Some(token) == comma {
                    last_comma = Some(chunk.tokens.len());
                } else if chunk.tokens.len() == CHUNK_LEN {
                    if let Some(at) = last_comma.filter(|&at| CHUNK_LEN - at <= COMMA_BACKTRACK) {
                        let tokens = chunk.tokens.split_off(at + 1);
                        let weights = chunk.weights.split_off(at + 1);
                        chunks.push(std::mem::replace(&mut chunk, Chunk { tokens, weights }));
                        last_comma = None;
                    }
                }
                if chunk.tokens.len() == CHUNK_LEN {
                    chunks.push(std::mem::take(&mut chunk));
                    last_comma = None;
                }
                chunk.tokens.push(token);
                chunk.weights.push(weight);
            }
        }
        if !chunk.tokens.is_empty() || chunks.is_empty() {
            chunks.push(chunk);
        }
        let max = crate::params::MAX_PROMPT_CHUNKS;
        if chunks.len() > max {
            return Err(EngineError::InvalidParams(format!(
                "the prompt is {} chunks of {CHUNK_LEN} tokens, more than the {max} allowed; shorten it",
                chunks.len()
            )));
        }
        Ok(chunks)
    }
}

pub struct TextEncoder {
    pub tokenizer: ClipTokenizer,
    pub model: ClipTextModel,
}

impl TextEncoder {
    /// Embeddings `(1, 77, width)` for a prompt, as diffusers encodes it.
    pub fn encode(&self, prompt: &str, device: &Device) -> Result<Tensor> {
        let tokens = self.tokenizer.tokens(prompt)?;
        let ids = self.tokenizer.ids_for_pass(&tokens);
        self.encode_ids(&ids, device)
    }

    pub fn encode_ids(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        self.encode_ids_skip(ids, 0, device)
    }

    fn encode_ids_skip(&self, ids: &[u32], skip: usize, device: &Device) -> Result<Tensor> {
        let ids = Tensor::new(ids, device)
            .and_then(|t| t.unsqueeze(0))
            .context("token ids")?;
        self.model.forward(&ids, skip).context("text encoder")
    }

    /// A prompt in AUTOMATIC1111's syntax: each 75-token chunk encoded on its own, emphasis
    /// applied as AUTOMATIC1111's "Original" rule (the outputs are multiplied by the weights,
    /// then rescaled to their former mean), chunks concatenated: `(1, 77 · chunks, width)`.
    /// `clip_skip` is AUTOMATIC1111's: 1 uses the last layer, 2 the one before it.
    pub fn encode_weighted(
        &self,
        prompt: &str,
        clip_skip: usize,
        device: &Device,
    ) -> Result<Tensor> {
        let skip = clip_skip.saturating_sub(1);
        let mut parts = vec![];
        for chunk in self.tokenizer.chunks(prompt)? {
            let ids = self.tokenizer.ids_for_pass(&chunk.tokens);
            let z = self.encode_ids_skip(&ids, skip, device)?;
            let z = if chunk.weights.iter().all(|&w| w == 1.0) {
                z
            } else {
                apply_emphasis(&z, &chunk.weights).context("prompt emphasis")?
            };
            parts.push(z);
        }
        Tensor::cat(&parts, 1).context("prompt chunks")
    }
}

/// Multiplies each token's output by its weight (BOS, EOS and padding keep 1), then restores
/// the mean of the whole chunk.
pub fn apply_emphasis(z: &Tensor, weights: &[f64]) -> candle_core::Result<Tensor> {
    let (_, n, _) = z.dims3()?;
    let mut w = vec![1f32; n];
    for (slot, &weight) in w.iter_mut().skip(1).zip(weights) {
        *slot = weight as f32;
    }
    let w = Tensor::from_vec(w, (1, n, 1), z.device())?.to_dtype(z.dtype())?;
    let original_mean = z.mean_all()?;
    let weighted = z.broadcast_mul(&w)?;
    let new_mean = weighted.mean_all()?;
    weighted.broadcast_mul(&(original_mean / new_mean)?)
}
