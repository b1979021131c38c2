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

/// A textual-inversion embedding as the tokenizer finds it: the tokens of its name, and which
/// rows of the extra table its vectors are.
#[derive(Debug, Clone)]
pub struct TokenEmbedding {
    pub name_tokens: Vec<u32>,
    pub first_row: u32,
    pub len: usize,
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
        self.chunks_with(prompt, &[])
    }

    /// `chunks` with textual-inversion embeddings: where a word's tokens are an embedding's
    /// name, its `len` vectors take their place (ids `EXTRA_TOKEN_BASE + first_row …`), kept
    /// whole in one chunk as AUTOMATIC1111 keeps them.
    pub fn chunks_with(&self, prompt: &str, embeddings: &[TokenEmbedding]) -> Result<Vec<Chunk>> {
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
            let tokens = self.tokens(&text)?;
            let mut i = 0;
            while i < tokens.len() {
                let found = embeddings
                    .iter()
                    .filter(|e| {
                        !e.name_tokens.is_empty() && tokens[i..].starts_with(&e.name_tokens)
                    })
                    .max_by_key(|e| e.name_tokens.len());
                if let Some(e) = found {
                    if chunk.tokens.len() + e.len > CHUNK_LEN && !chunk.tokens.is_empty() {
                        chunks.push(std::mem::take(&mut chunk));
                        last_comma = None;
                    }
                    for row in 0..e.len.min(CHUNK_LEN) {
                        chunk
                            .tokens
                            .push(crate::model::clip::EXTRA_TOKEN_BASE + e.first_row + row as u32);
                        chunk.weights.push(weight);
                    }
                    i += e.name_tokens.len();
                    continue;
                }
                let token = tokens[i];
                i += 1;
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

    /// `encode_ids_skip` where ids from `EXTRA_TOKEN_BASE` on are rows of `extra`.
    fn encode_ids_extra(
        &self,
        ids: &[u32],
        skip: usize,
        extra: Option<&Tensor>,
        device: &Device,
    ) -> Result<Tensor> {
        let Some(extra) = extra else {
            return self.encode_ids_skip(ids, skip, device);
        };
        let x = self
            .model
            .embed_with_extra(ids, extra, device)
            .context("textual-inversion embeddings")?;
        self.model
            .forward_embeddings(&x, skip)
            .context("text encoder")
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
        self.encode_weighted_with(prompt, clip_skip, &[], device)
    }

    /// `encode_weighted` with textual-inversion embeddings: a word that is an embedding's name
    /// becomes its vectors. A vector width other than the text encoder's is an error.
    pub fn encode_weighted_with(
        &self,
        prompt: &str,
        clip_skip: usize,
        embeddings: &[crate::model::adapters::embedding::Embedding],
        device: &Device,
    ) -> Result<Tensor> {
        let width = self.model.config().hidden_size;
        let mut found = vec![];
        let mut row = 0u32;
        for e in embeddings {
            if e.width() != width {
                return Err(EngineError::InvalidParams(format!(
                    "embedding {:?} has vectors {} wide; this model's text encoder takes {width} (an embedding for another model family)",
                    e.name,
                    e.width()
                )));
            }
            found.push(TokenEmbedding {
                name_tokens: self.tokenizer.tokens(&e.name)?,
                first_row: row,
                len: e.len(),
            });
            row += e.len() as u32;
        }
        let extra = if embeddings.is_empty() {
            None
        } else {
            let all: Vec<&Tensor> = embeddings.iter().map(|e| &e.vectors).collect();
            Some(Tensor::cat(&all, 0).context("embeddings")?)
        };
        let skip = clip_skip.saturating_sub(1);
        let mut parts = vec![];
        for chunk in self.tokenizer.chunks_with(prompt, &found)? {
            let ids = self.tokenizer.ids_for_pass(&chunk.tokens);
            let z = self.encode_ids_extra(&ids, skip, extra.as_ref(), device)?;
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
