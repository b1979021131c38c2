//! AUTOMATIC1111's model hash (the first 10 hex digits of the file's SHA-256), computed once per
//! file and remembered by path, size and modification time: hashing a 4 GB checkpoint takes
//! seconds, and every saved image records it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    modified_ns: u128,
    sha256: String,
}

/// Where Pentimento keeps caches: `$PENTIMENTO_CACHE_DIR`, else the platform's cache folder.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PENTIMENTO_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("pentimento")
}

fn cache_file() -> PathBuf {
    cache_dir().join("model-hashes.json")
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = crate::regular_file::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The file's full SHA-256, from the cache when the file is unchanged.
pub fn cached_sha256(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    let cache_path = cache_file();
    let mut cache: HashMap<String, Entry> = std::fs::read_to_string(&cache_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(e) = cache.get(&key) {
        if e.size == meta.len() && e.modified_ns == modified_ns {
            return Ok(e.sha256.clone());
        }
    }
    let sha256 = sha256_file(path)?;
    cache.insert(
        key,
        Entry {
            size: meta.len(),
            modified_ns,
            sha256: sha256.clone(),
        },
    );
    // A cache that cannot be written only costs a re-hash next time.
    if let Some(dir) = cache_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(text) = serde_json::to_string(&cache) {
        let _ = crate::atomic_file::write(&cache_path, text.as_bytes());
    }
    Ok(sha256)
}

/// The model hash of this file when it was hashed before and has not changed since; never
/// reads the file.
pub fn known_model_hash(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let key = std::fs::canonicalize(path).ok()?.display().to_string();
    let cache: HashMap<String, Entry> =
        serde_json::from_str(&std::fs::read_to_string(cache_file()).ok()?).ok()?;
    let e = cache.get(&key)?;
    let modified_ns = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    (e.size == meta.len() && e.modified_ns == modified_ns).then(|| e.sha256[..10].to_string())
}

/// AUTOMATIC1111's "Model hash" (AutoV2): the first 10 hex digits of the SHA-256.
pub fn model_hash(path: &Path) -> Result<String> {
    Ok(cached_sha256(path)?[..10].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_cached_until_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("pentimento-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::env::set_var("PENTIMENTO_CACHE_DIR", dir.join("cache"));
        let f = dir.join("model.bin");
        std::fs::write(&f, b"abc").unwrap();
        // SHA-256("abc")
        assert_eq!(model_hash(&f).unwrap(), "ba7816bf8f");
        let cache = std::fs::read_to_string(dir.join("cache/model-hashes.json")).unwrap();
        assert!(cache.contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"abcd").unwrap();
        assert_eq!(model_hash(&f).unwrap(), "88d4266fd4");
    }
}
