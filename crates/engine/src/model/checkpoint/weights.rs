//! The tensors of one checkpoint file, whatever its container: safetensors or a PyTorch
//! zip/pickle `.ckpt` (our own reader, which never executes code), both memory-mapped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{safetensors::MmapedSafetensors, DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::checkpoint::{TensorLocation, TorchCheckpoint};
use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Safetensors,
    Pickle,
}

enum Container {
    Safetensors(MmapedSafetensors),
    Pickle {
        map: memmap2::Mmap,
        tensors: HashMap<String, TensorLocation>,
    },
}

/// Name → (shape, stored dtype) for every tensor in the file, and lazy access to their data.
pub struct WeightFile {
    path: PathBuf,
    kind: ContainerKind,
    container: Container,
    index: HashMap<String, (Vec<usize>, DType)>,
    /// A training checkpoint's `global_step`, beside its `state_dict`.
    global_step: Option<i64>,
}

impl WeightFile {
    /// Opens a checkpoint, telling the container from its first bytes, not its name.
    pub fn open(path: &Path) -> Result<Self> {
        let kind = sniff(path)?;
        let mut global_step = None;
        let bad = |e: candle_core::Error| {
            EngineError::bad_model(path, format!("not a readable checkpoint ({e})"))
        };
        let (container, index) = match kind {
            ContainerKind::Safetensors => {
                // SAFETY: the file is mapped read-only; Pentimento never writes model files.
                let st = unsafe { MmapedSafetensors::new(path) }.map_err(bad)?;
                let mut index = HashMap::new();
                for (name, view) in st.tensors() {
                    let dtype = DType::try_from(view.dtype()).map_err(bad)?;
                    index.insert(name, (view.shape().to_vec(), dtype));
                }
                (Container::Safetensors(st), index)
            }
            ContainerKind::Pickle => {
                let io = |source| EngineError::Io {
                    path: path.to_path_buf(),
                    source,
                };
                let file = crate::regular_file::open(path).map_err(io)?;
                // SAFETY: the file is mapped read-only; Pentimento never writes model files.
                let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
                let ckpt = TorchCheckpoint::read(&map).map_err(|e| {
                    EngineError::bad_model(path, format!("not a readable checkpoint ({e})"))
                })?;
                global_step = ckpt.global_step;
                let index = ckpt
                    .tensors
                    .iter()
                    .map(|(name, t)| (name.clone(), (t.shape.clone(), t.dtype)))
                    .collect();
                (
                    Container::Pickle {
                        map,
                        tensors: ckpt.tensors,
                    },
                    index,
                )
            }
        };
        if index.is_empty() {
            return Err(EngineError::bad_model(path, "the file holds no tensors"));
        }
        Ok(Self {
            path: path.to_path_buf(),
            kind,
            container,
            index,
            global_step,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> ContainerKind {
        self.kind
    }

    pub fn global_step(&self) -> Option<i64> {
        self.global_step
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|(s, _)| s.as_slice())
    }

    /// The element type a tensor is stored in.
    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.index.get(name).map(|(_, d)| *d)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(|s| s.as_str())
    }

    /// Bytes, as stored, of the tensors whose names `wanted` accepts.
    pub fn stored_bytes(&self, wanted: impl Fn(&str) -> bool) -> u64 {
        self.index
            .iter()
            .filter(|(name, _)| wanted(name))
            // Saturating: a strided view (an expanded scalar) may claim more elements than
            // any file holds.
            .map(|(_, (shape, dtype))| {
                shape.iter().fold(dtype.size_in_bytes() as u64, |a, &n| {
                    a.saturating_mul(n as u64)
                })
            })
            .fold(0u64, u64::saturating_add)
    }

    /// The dtype most of the floating-point weights are stored in.
    pub fn storage_dtype(&self) -> DType {
        let mut counts: HashMap<DType, usize> = HashMap::new();
        for (_, dtype) in self.index.values() {
            if dtype.is_float() {
                *counts.entry(*dtype).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(d, _)| d)
            .unwrap_or(DType::F32)
    }

    /// One tensor as stored (its own dtype), on `device`. The tensor is a copy; the file's
    /// pages it came from are handed back to the kernel, so a model's mapped file does not stay
    /// resident beside the weights made from it (re-read from disk if ever needed again).
    pub fn load(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        match &self.container {
            Container::Safetensors(st) => {
                let view = st.get(name)?;
                let copied = match DType::try_from(view.dtype()) {
                    Ok(dtype) => super::copy_out::tensor(view.data(), dtype, view.shape(), device)?,
                    Err(_) => None,
                };
                let t = match copied {
                    Some(t) => t,
                    None => st.load(name, device)?,
                };
                release_pages(view.data());
                Ok(t)
            }
            Container::Pickle { map, tensors } => match tensors.get(name) {
                Some(t) => {
                    let tensor = t.load(map, device)?;
                    if let Some(bytes) = map.get(t.storage.clone()) {
                        release_pages(bytes);
                    }
                    Ok(tensor)
                }
                None => Err(candle_core::Error::CannotFindTensor {
                    path: name.to_string(),
                }),
            },
        }
    }

    /// A `VarBuilder` over this file that computes in `dtype` on `device`, asking for tensors by
    /// the names `rename` gives.
    pub fn var_builder(
        self: &Arc<Self>,
        dtype: DType,
        device: &Device,
        rename: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> VarBuilder<'static> {
        self.var_builder_storing(dtype, device, HalfWeights::Widen, rename)
    }

    /// `var_builder`, with `half` saying whether half-precision matrices and kernels stay half
    /// in memory when the network computes in f32 (the CPU kernels widen them as they run).
    pub fn var_builder_storing(
        self: &Arc<Self>,
        dtype: DType,
        device: &Device,
        half: HalfWeights,
        rename: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> VarBuilder<'static> {
        let keep_half = half == HalfWeights::Keep && device.is_cpu() && dtype == DType::F32;
        let backend = Shared {
            file: self.clone(),
            keep_half,
        };
        VarBuilder::from_backend(Box::new(backend), dtype, device.clone()).rename_f(rename)
    }
}

/// What becomes of the f16/bf16 weights of a network that computes in f32 on the CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HalfWeights {
    /// Matrices and convolution kernels stay as the file stores them, half the memory; each
    /// layer widens its weight as it runs (the same f32 values, so the same results). Biases and
    /// norms, small, are widened at load.
    #[default]
    Keep,
    /// Everything widened to f32 at load: twice the memory, no widening per step.
    Widen,
}

struct Shared {
    file: Arc<WeightFile>,
    keep_half: bool,
}

thread_local! {
    /// Bytes of weights materialised on this thread, for the memory a model load reports.
    /// Loading runs on one thread from start to end, and candle's `VarBuilder` gives no other
    /// place to see every tensor a model keeps.
    static LOADED_BYTES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Hears the bytes, as stored, of each tensor read.
type ReadWatch = Box<dyn FnMut(u64)>;

thread_local! {
    /// The watch of this thread's load (progress), if any.
    static READ_WATCH: std::cell::RefCell<Option<ReadWatch>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `load` with `watch` hearing the stored bytes of every tensor it reads.
pub fn watch_reads<T>(watch: impl FnMut(u64) + 'static, load: impl FnOnce() -> T) -> T {
    let previous = READ_WATCH.with(|w| w.replace(Some(Box::new(watch))));
    let out = load();
    READ_WATCH.with(|w| *w.borrow_mut() = previous);
    out
}

/// Runs `load` and returns what it built with the bytes of weights it materialised.
pub fn measure_load<T>(load: impl FnOnce() -> T) -> (T, u64) {
    let before = LOADED_BYTES.with(|b| b.get());
    let out = load();
    let after = LOADED_BYTES.with(|b| b.get());
    (out, after.saturating_sub(before))
}

impl SimpleBackend for Shared {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        // Checked against the index first, so a wrong guess (a 1×1 convolution stored where a
        // matrix was asked for) reads no tensor data and is not counted as loaded.
        if let Some(stored) = self.file.shape(name) {
            if stored != shape.dims() {
                candle_core::bail!("{name}: expected shape {shape:?}, the file has {stored:?}");
            }
        }
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &shape {
            candle_core::bail!(
                "{name}: expected shape {shape:?}, the file has {:?}",
                t.shape()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if !self.file.contains(name) {
            candle_core::bail!("the checkpoint has no tensor {name}");
        }
        let stored = self.file.load(name, dev)?;
        let read = (stored.elem_count() * stored.dtype().size_in_bytes()) as u64;
        READ_WATCH.with(|w| {
            if let Some(watch) = w.borrow_mut().as_mut() {
                watch(read)
            }
        });
        let keep = self.keep_half
            && stored.rank() >= 2
            && matches!(stored.dtype(), DType::F16 | DType::BF16);
        let t = if keep {
            stored
        } else {
            crate::model::cpu_storage::to_dtype(&stored, dtype)?
        };
        // Every weight a model keeps is checked once, here: a damaged file is refused at load,
        // naming the tensor, rather than drawing black images.
        if !all_finite(&t)? {
            candle_core::bail!("{name} holds NaN or infinite values: the file is damaged");
        }
        let bytes = (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        LOADED_BYTES.with(|b| b.set(b.get() + bytes));
        Ok(t)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.file.contains(name)
    }
}

/// Whether every value of a float tensor is finite: a scan of the CPU buffer in place (the load
/// has just written it), a reduction elsewhere.
pub(crate) fn all_finite(t: &Tensor) -> candle_core::Result<bool> {
    if !t.dtype().is_float() {
        return Ok(true);
    }
    if t.device().is_cpu() && t.is_contiguous() {
        let (storage, layout) = t.storage_and_layout();
        if let candle_core::Storage::Cpu(cpu) = &*storage {
            let range = layout.start_offset()..layout.start_offset() + t.elem_count();
            return Ok(crate::model::cpu_storage::all_finite_cpu(cpu, range));
        }
    }
    Ok(!crate::model::nets::vae_fallback::has_non_finite(t)?)
}

fn sniff(path: &Path) -> Result<ContainerKind> {
    use std::io::Read;
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        return Err(EngineError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let mut head = [0u8; 16];
    let mut file = crate::regular_file::open(path).map_err(io)?;
    let n = file.read(&mut head).map_err(io)?;
    if n >= 4 && &head[..4] == b"PK\x03\x04" {
        return Ok(ContainerKind::Pickle);
    }
    if n >= 9 && head[8] == b'{' {
        return Ok(ContainerKind::Safetensors);
    }
    if n >= 2 && head[0] == 0x80 && head[1] <= 5 {
        return Err(EngineError::bad_model(
            path,
            "a legacy (non-zip) PyTorch pickle; re-save it with a current PyTorch or as .safetensors",
        ));
    }
    Err(EngineError::bad_model(
        path,
        "neither a safetensors file nor a PyTorch zip checkpoint",
    ))
}

/// Tells the kernel the whole pages inside `bytes` (part of a read-only file mapping) are not
/// needed now: they leave the process's resident memory and are read from the file again if
/// touched. Pages shared with a neighbouring tensor are kept.
fn release_pages(bytes: &[u8]) {
    #[cfg(unix)]
    {
        const PAGE: usize = 4096;
        let start = bytes.as_ptr() as usize;
        let end = start + bytes.len();
        let first = start.div_ceil(PAGE) * PAGE;
        let last = end / PAGE * PAGE;
        if last > first {
            // SAFETY: [first, last) lies inside `bytes`, a read-only private file mapping that
            // outlives this call; MADV_DONTNEED on such pages only drops them from memory (a
            // later read faults them in from the file again), so no Rust reference sees
            // changed data.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_DONTNEED,
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = bytes;
}
