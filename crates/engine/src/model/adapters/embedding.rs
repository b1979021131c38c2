//! Textual-inversion embeddings as users have them: AUTOMATIC1111's `.pt`
//! (`string_to_param.*`) and `.safetensors` (`emb_params`), and diffusers'
//! `learned_embeds.safetensors` / `.bin` (one tensor named by its token). Each holds one or
//! more vectors for the text encoder's input; the file's stem is the word that calls it up.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::model::checkpoint::weights::WeightFile;

/// Most vectors one embedding may hold (AUTOMATIC1111 trains up to 75, one chunk).
pub const MAX_VECTORS: usize = 75;

/// An embedding a job uses: the word that triggers it and its file.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRef {
    pub name: String,
    pub path: PathBuf,
}

/// An embedding read: `vectors` is `(n, width)` in f32 on the CPU.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub name: String,
    pub vectors: Tensor,
}

impl Embedding {
    pub fn read(r: &EmbeddingRef) -> Result<Self> {
        let path = &r.path;
        let bad = |m: String| EngineError::bad_model(path, m);
        let file = WeightFile::open(path)?;
        let names: Vec<String> = file.names().map(str::to_string).collect();
        let chosen = if let Some(n) = names.iter().find(|n| *n == "emb_params") {
            n.clone()
        } else if let Some(n) = names.iter().find(|n| n.starts_with("string_to_param.")) {
            n.clone()
        } else if names.len() == 1 {
            // diffusers: one tensor named by the token it was trained for.
            names[0].clone()
        } else if names.iter().any(|n| n == "clip_l" || n == "clip_g") {
            return Err(bad(
                "an SDXL embedding (clip_l/clip_g), not for SD 1.x or 2.x".into(),
            ));
        } else {
            return Err(bad(format!(
                "not a textual-inversion embedding ({} tensors, none of emb_params or string_to_param)",
                names.len()
            )));
        };
        let t = file
            .load(&chosen, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| bad(format!("{chosen}: {e}")))?;
        let vectors = match t.dims() {
            [width] => t.reshape((1, *width)),
            [_, _] => Ok(t),
            other => {
                return Err(bad(format!(
                    "{chosen}: a tensor of shape {other:?}, not vectors"
                )))
            }
        }
        .map_err(|e| bad(e.to_string()))?;
        let n = vectors.dim(0).map_err(|e| bad(e.to_string()))?;
        if n == 0 || n > MAX_VECTORS {
            return Err(bad(format!("{n} vectors (1 to {MAX_VECTORS})")));
        }
        if !crate::model::checkpoint::weights::all_finite(&vectors)
            .map_err(|e| bad(e.to_string()))?
        {
            return Err(bad("NaN or infinite values".into()));
        }
        Ok(Self {
            name: r.name.clone(),
            vectors,
        })
    }

    pub fn len(&self) -> usize {
        self.vectors.dim(0).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn width(&self) -> usize {
        self.vectors.dim(1).unwrap_or(0)
    }
}

/// Every embedding file under `dirs` (bounded), as (word, path): `.pt`, `.bin`, `.safetensors`.
pub fn embedding_files(dirs: &[PathBuf]) -> Vec<(String, PathBuf)> {
    super::find::files_under(dirs, &["pt", "bin", "safetensors"])
}

/// The embeddings under `dirs` whose names appear in `prompts` as words (case-insensitive, as
/// AUTOMATIC1111 matches them through the tokenizer, which lowercases).
pub fn embeddings_in(prompts: &[&str], dirs: &[PathBuf]) -> Vec<EmbeddingRef> {
    let text: Vec<String> = prompts.iter().map(|p| p.to_lowercase()).collect();
    let mut out: Vec<EmbeddingRef> = vec![];
    for (name, path) in embedding_files(dirs) {
        let lower = name.to_lowercase();
        let used = text.iter().any(|t| contains_word(t, &lower));
        if used && !out.iter().any(|e| e.name.to_lowercase() == lower) {
            out.push(EmbeddingRef { name, path });
        }
    }
    out
}

/// Whether `word` occurs in `text` not inside a longer word.
fn contains_word(text: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}
