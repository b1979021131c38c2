//! The engine's error type: every failure a user can cause names what went wrong and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: no such file or folder")]
    NotFound { path: PathBuf },

    #[error("{path}: {message}")]
    BadModel { path: PathBuf, message: String },

    #[error("{path}: not a readable image: {message}")]
    BadImage { path: PathBuf, message: String },

    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Config(#[from] crate::model::ldm_yaml::YamlError),

    #[error("invalid setting: {0}")]
    InvalidParams(String),

    #[error("unknown sampler {name:?}; known samplers: {known}")]
    UnknownSampler { name: String, known: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("cancelled")]
    Cancelled,

    /// A bug: a panic inside a job, caught so the app survives it.
    #[error("internal error (please report it): {0}")]
    Internal(String),

    /// NaN or infinite values appeared: the job stops rather than save a black image.
    #[error("{stage} produced NaN or infinite values ({hint})")]
    NonFinite {
        stage: &'static str,
        hint: &'static str,
    },

    #[error("{context}: {source}")]
    Tensor {
        context: String,
        #[source]
        source: candle_core::Error,
    },
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Attaches a human-readable context to candle errors, which otherwise say only which op failed.
pub trait TensorContext<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|source| EngineError::Tensor {
            context: what.into(),
            source,
        })
    }
}

impl EngineError {
    pub fn bad_model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        EngineError::BadModel {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Stops a job at `stage` when `t` holds NaN or infinite values.
pub fn ensure_finite(
    t: &candle_core::Tensor,
    stage: &'static str,
    hint: &'static str,
) -> Result<()> {
    let bad = crate::model::nets::vae_fallback::has_non_finite(t).context(stage)?;
    if bad {
        return Err(EngineError::NonFinite { stage, hint });
    }
    Ok(())
}

impl EngineError {
    /// The message a person reads: the error, with advice when the device ran out of memory
    /// (CUDA and Metal report it as a failed allocation deep inside a tensor operation).
    pub fn explained(&self) -> String {
        let text = self.to_string();
        let lower = text.to_lowercase();
        let out_of_memory = [
            "out of memory",
            "out_of_memory",
            "failed to allocate",
            "outofmemory",
        ]
        .iter()
        .any(|m| lower.contains(m));
        if out_of_memory {
            format!(
                "{text} — the device ran out of memory: try a smaller size or batch, half precision \
                 (f16), or VAE tiling for large images"
            )
        } else {
            text
        }
    }
}
