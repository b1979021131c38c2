//! AUTOMATIC1111's short hashes, as its PNGs write them under `Lora hashes` and `TI hashes`: the
//! first 12 hex digits of SHA-256 over a LoRA `.safetensors` file's tensor data (after the
//! header, so editing the metadata keeps the hash) or over the whole file (other LoRA formats,
//! and every textual-inversion embedding).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

type Key = (PathBuf, bool, u64, Option<SystemTime>);

/// Hashes already computed, by path, length and modification time (a file is read once).
static HASHES: Mutex<Option<HashMap<Key, String>>> = Mutex::new(None);

/// The short hash of a LoRA, or `None` when the file cannot be read.
pub fn short_hash(path: &Path) -> Option<String> {
    cached(path, true)
}

/// The short hash of a textual-inversion embedding: AUTOMATIC1111 hashes the whole file.
pub fn whole_file_short_hash(path: &Path) -> Option<String> {
    cached(path, false)
}

fn cached(path: &Path, skip_safetensors_header: bool) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let key = (
        path.to_path_buf(),
        skip_safetensors_header,
        meta.len(),
        meta.modified().ok(),
    );
    if let Some(h) = HASHES
        .lock()
        .ok()?
        .get_or_insert_with(HashMap::new)
        .get(&key)
    {
        return Some(h.clone());
    }
    let hash = compute(path, skip_safetensors_header)?;
    HASHES
        .lock()
        .ok()?
        .get_or_insert_with(HashMap::new)
        .insert(key, hash.clone());
    Some(hash)
}

fn compute(path: &Path, skip_safetensors_header: bool) -> Option<String> {
    let mut file = crate::regular_file::open(path).ok()?;
    let is_safetensors = skip_safetensors_header
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_safetensors {
        let mut n = [0u8; 8];
        file.read_exact(&mut n).ok()?;
        let header = u64::from_le_bytes(n);
        file.seek(SeekFrom::Start(header.checked_add(8)?)).ok()?;
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    Some(digest.iter().take(6).map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_not_hashed() {
        let dir = std::env::temp_dir().join(format!("pentimento-lorahash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, header: &str| {
            let p = dir.join(name);
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(b"tensor bytes");
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let a = short_hash(&write("a.safetensors", "{}")).unwrap();
        let b = short_hash(&write("b.safetensors", "{\"__metadata__\":{}}")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 12);
        // SHA-256("tensor bytes"), first 12 hex digits.
        let want: String = Sha256::digest(b"tensor bytes")
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(a, want);
        assert!(short_hash(&dir.join("missing.safetensors")).is_none());
        // An embedding's hash covers the header too.
        assert_ne!(
            whole_file_short_hash(&dir.join("a.safetensors")).unwrap(),
            a
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
