//! Prompts to text embeddings: CLIP's BPE tokenizer and the text encoder.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use crate::engine::error::{EngineError, Result, TensorContext};
use crate::engine::model::clip::ClipTextModel;

/// CLIP's tokenizer (OpenAI's vocabulary, MIT licence), the same for every SD 1.x/2.x model;
/// single-file checkpoints carry none.
const BUNDLED_TOKENIZER: &[u8] = include_bytes!("../../assets/clip-tokenizer.json");

pub const BOS: u32 = 49406;
pub const EOS: u32 = 49407;
/// Tokens per encoder pass: BOS, 75 prompt tokens, EOS.
pub const CONTEXT_LEN: usize = 77;

pub struct ClipTokenizer {
    inner: Tokenizer,
    pad: u32,
}

impl ClipTokenizer {
    pub fn bundled(pad: u32) -> Result<Self> {
        let inner = Tokenizer::from_bytes(BUNDLED_TOKENIZER).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(Self { inner, pad })
    }

    pub fn from_file(path: &Path, pad: u32) -> Result<Self> {
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
        let enc = self.inner.encode(text, false).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
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
        let ids = Tensor::new(ids, device).and_then(|t| t.unsqueeze(0)).context("token ids")?;
        self.model.forward(&ids, 0).context("text encoder")
    }
}
