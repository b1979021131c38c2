//! Model files: what a checkpoint holds and how it is configured. Here, PyTorch zip checkpoints
//! (`.ckpt`, `.pt`, `.pth`, `.bin`), memory-mapped and read without executing anything: the
//! archive's central directory (`zip`), its `data.pkl` (`pickle`), and the tensors it names as
//! byte ranges of the mapped file. Beside them: both containers behind one interface
//! (`weights`), what a single file is (`detect`, `ldm_yaml`, `prediction_probe`), tensor names
//! (`keymap`), external VAEs, hashes and `models inspect`.

mod copy_out;
pub mod detect;
pub mod external_vae;
pub mod hash;
pub mod inspect;
pub mod keymap;
pub mod ldm_yaml;
pub mod pickle;
pub mod prediction_probe;
pub mod weights;
pub mod zip;

use std::collections::HashMap;
use std::ops::Range;

use candle_core::{DType, Device, Tensor};

use pickle::{TensorRef, Value};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Zip(#[from] zip::ZipError),
    #[error("data.pkl: {0}")]
    Pickle(#[from] pickle::PickleError),
    #[error("the archive has no data.pkl (not a PyTorch checkpoint)")]
    NoPickle,
    #[error("the checkpoint is saved big-endian; only little-endian checkpoints are read")]
    BigEndian,
    #[error("the pickle holds no dict of tensors")]
    NotADict,
    #[error("tensor {name}: {what}")]
    BadTensor { name: String, what: String },
}

/// The most bytes one tensor may take once read (the largest SD weight is a few hundred MB).
pub const MAX_TENSOR_BYTES: usize = 16 << 30;

/// Where one tensor's elements lie in the file.
#[derive(Debug, Clone)]
pub struct TensorLocation {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Strides in elements; row-major for nearly every saved weight.
    pub stride: Vec<usize>,
    /// The storage's bytes in the file, and the view's first element in it.
    pub storage: Range<usize>,
    pub offset: usize,
}

/// The tensors of a PyTorch checkpoint, by name, and its `global_step`.
#[derive(Debug)]
pub struct TorchCheckpoint {
    pub tensors: HashMap<String, TensorLocation>,
    pub global_step: Option<i64>,
    /// Tensors of element types we do not compute with (complex, int8), left out.
    pub skipped: Vec<String>,
}

impl TorchCheckpoint {
    /// Reads the index of a checkpoint from its mapped bytes. Tensors are taken from the
    /// `state_dict` entry when there is one (training checkpoints), else from the top-level dict.
    pub fn read(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let archive = zip::Archive::read(bytes)?;
        // torch.save names the archive's root folder after the file; it holds data.pkl.
        let pkl = archive
            .entries()
            .iter()
            .filter(|e| e.name.ends_with("data.pkl"))
            .min_by_key(|e| e.name.matches('/').count())
            .ok_or(CheckpointError::NoPickle)?;
        let root = pkl.name.strip_suffix("data.pkl").unwrap_or("").to_string();
        if let Some(order) = archive.get(&format!("{root}byteorder")) {
            if bytes[order.data.clone()].starts_with(b"big") {
                return Err(CheckpointError::BigEndian);
            }
        }
        let value = pickle::read(&bytes[pkl.data.clone()])?;
        let global_step = match value.get("global_step") {
            Some(Value::Int(v)) => Some(*v),
            _ => None,
        };
        let dict = match value.get("state_dict") {
            Some(d @ Value::Dict(_)) => d,
            _ => &value,
        };
        let Value::Dict(map) = dict else {
            return Err(CheckpointError::NotADict);
        };
        let mut tensors = HashMap::new();
        let mut skipped = vec![];
        // Tensors at the top, and one level down under `outer.inner` (textual-inversion
        // embeddings keep theirs in `string_to_param`); deeper nesting is not a state dict.
        let mut found = vec![];
        for (k, v) in &map.items {
            match (k, v) {
                (Value::Str(name), Value::Tensor(t)) => found.push((name.clone(), t)),
                (Value::Str(outer), Value::Dict(inner)) => {
                    for (k, v) in &inner.items {
                        if let (Value::Str(name), Value::Tensor(t)) = (k, v) {
                            found.push((format!("{outer}.{name}"), t));
                        }
                    }
                }
                _ => {}
            }
        }
        for (name, t) in found {
            match locate(&archive, &root, &name, t)? {
                Some(loc) => {
                    tensors.insert(name, loc);
                }
                None => skipped.push(name),
            }
        }
        Ok(Self {
            tensors,
            global_step,
            skipped,
        })
    }
}

fn locate(
    archive: &zip::Archive,
    root: &str,
    name: &str,
    t: &TensorRef,
) -> Result<Option<TensorLocation>, CheckpointError> {
    let bad = |what: String| CheckpointError::BadTensor {
        name: name.to_string(),
        what,
    };
    let Some(dtype) = t.storage.dtype else {
        return Ok(None);
    };
    let entry = archive
        .get(&format!("{root}data/{}", t.storage.key))
        .ok_or_else(|| bad(format!("its storage data/{} is missing", t.storage.key)))?;
    let needed = t
        .storage
        .numel
        .checked_mul(t.storage.elem_size)
        .ok_or_else(|| bad("storage size overflows".into()))?;
    if entry.data.len() < needed {
        return Err(bad(format!(
            "its storage holds {} bytes, {needed} expected",
            entry.data.len()
        )));
    }
    let extent = t.extent().ok_or_else(|| bad("size overflows".into()))?;
    if extent > t.storage.numel {
        return Err(bad(format!(
            "the view reaches element {extent} of a {}-element storage",
            t.storage.numel
        )));
    }
    Ok(Some(TensorLocation {
        dtype,
        shape: t.shape.clone(),
        stride: t.stride.clone(),
        storage: entry.data.start..entry.data.start + needed,
        offset: t.offset,
    }))
}

impl TensorLocation {
    pub fn is_contiguous(&self) -> bool {
        pickle::is_row_major(&self.shape, &self.stride)
    }

    /// The tensor, copied out of the mapped file (`bytes` is the whole file).
    pub fn load(&self, bytes: &[u8], device: &Device) -> candle_core::Result<Tensor> {
        let size = self.dtype.size_in_bytes();
        let storage = &bytes[self.storage.clone()];
        let numel: usize = self.shape.iter().product();
        // A strided view (an expanded scalar) can claim any number of elements; materialising
        // more than this is never a weight.
        if numel.checked_mul(size).is_none_or(|b| b > MAX_TENSOR_BYTES) {
            candle_core::bail!(
                "a {:?} tensor of {:?} elements is larger than {MAX_TENSOR_BYTES} bytes",
                self.dtype,
                self.shape
            );
        }
        if numel == 0 {
            return Tensor::zeros(self.shape.as_slice(), self.dtype, device);
        }
        if self.is_contiguous() {
            let start = self.offset * size;
            let bytes = &storage[start..start + numel * size];
            if let Some(t) = copy_out::tensor(bytes, self.dtype, &self.shape, device)? {
                return Ok(t);
            }
            return Tensor::from_raw_buffer(bytes, self.dtype, &self.shape, device);
        }
        // A strided view (a transposed weight saved as is): gather its elements in order.
        let mut out = Vec::with_capacity(numel * size);
        let mut index = vec![0usize; self.shape.len()];
        for _ in 0..numel {
            let at = self.offset
                + index
                    .iter()
                    .zip(&self.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            out.extend_from_slice(&storage[at * size..(at + 1) * size]);
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < self.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Tensor::from_raw_buffer(&out, self.dtype, &self.shape, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-element storage viewed as 2⁴⁰ elements (stride 0, as `expand` saves it): the index
    /// reads, and loading refuses instead of gathering forever.
    #[test]
    fn an_expanded_scalar_of_absurd_size_is_refused_at_load() {
        let mut pkl = b"\x80\x02}(X\x01\0\0\0wctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
        pkl.extend(b"(X\x07\0\0\0storagectorch\nFloatStorage\nX\x01\0\0\x000X\x03\0\0\0cpuK\x01tQ");
        pkl.extend(b"K\0\x8a\x06\0\0\0\0\x00\x01\x85K\0\x85\x89)tRu.");
        let bytes = zip::tests::write_stored(
            &[("a/data.pkl", &pkl), ("a/data/0", &1f32.to_le_bytes())],
            false,
        );
        let ckpt = TorchCheckpoint::read(&bytes).unwrap();
        let w = &ckpt.tensors["w"];
        assert_eq!(w.shape, vec![1 << 40]);
        assert!(w.load(&bytes, &Device::Cpu).is_err());
    }
}
