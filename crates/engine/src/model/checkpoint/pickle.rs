//! A pickle reader that never executes anything: it builds plain values from the opcodes that
//! `torch.save` writes, turns the few torch callables that rebuild tensors into tensor
//! references, and keeps every other callable as an inert record.
//!
//! Hostile pickles are bounded three ways: values nest at most `MAX_DEPTH` deep (so building,
//! cloning and dropping them cannot overflow the stack), every value made or copied from the
//! memo counts against `MAX_WORK` (a "billion laughs" of memo references stops early instead of
//! filling memory), and the memo holds at most `MAX_MEMO` entries.

use std::collections::HashMap;

use candle_core::DType;

/// Containers nest at most this deep. A checkpoint's state dict is three or four levels deep.
pub const MAX_DEPTH: u32 = 100;
/// Units of work (values made or copied, strings by 16 bytes) one pickle may cost. An SD
/// checkpoint's state dict costs tens of thousands, a training checkpoint with optimizer state
/// a few hundred thousand; at about 100 bytes a unit this bounds a pickle to a few hundred MB.
pub const MAX_WORK: u64 = 2_000_000;
/// Memo entries one pickle may hold.
pub const MAX_MEMO: usize = 1_000_000;
/// Dimensions of one tensor.
pub const MAX_RANK: usize = 16;
/// Length of a text line (`GLOBAL` names, text integers).
const MAX_LINE: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error("the pickle ends early (at byte {0})")]
    Truncated(usize),
    #[error("unsupported pickle opcode 0x{op:02x} at byte {at}")]
    UnsupportedOpcode { op: u8, at: usize },
    #[error("malformed pickle at byte {at}: {what}")]
    Malformed { at: usize, what: String },
    #[error("the pickle nests values more than {MAX_DEPTH} deep")]
    TooDeep,
    #[error("the pickle expands to more than {MAX_WORK} values (a pickle bomb?)")]
    TooLarge,
    #[error("the pickle has no STOP opcode")]
    NoStop,
}

/// What a tensor's storage holds, from its `torch.*Storage` class name.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// The zip entry `data/<key>` holding the bytes.
    pub key: String,
    /// `None` for element types we do not compute with (complex, int8, …).
    pub dtype: Option<DType>,
    pub class: String,
    pub elem_size: usize,
    /// Elements in the storage.
    pub numel: usize,
}

/// A tensor as `torch._utils._rebuild_tensor_v2` would make it: a strided view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// In elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

impl StorageRef {
    /// Bytes of text it owns: copying it costs that much.
    fn text_len(&self) -> u64 {
        (self.key.len() + self.class.len()) as u64
    }
}

impl TensorRef {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// One past the last storage element the view reads (0 for an empty tensor).
    pub fn extent(&self) -> Option<usize> {
        if self.shape.contains(&0) {
            return Some(0);
        }
        self.shape
            .iter()
            .zip(&self.stride)
            .try_fold(self.offset, |acc, (&n, &s)| {
                (n - 1).checked_mul(s).and_then(|d| acc.checked_add(d))
            })
            .and_then(|last| last.checked_add(1))
    }

    pub fn is_contiguous(&self) -> bool {
        is_row_major(&self.shape, &self.stride)
    }
}

/// Whether `stride` is the row-major layout of `shape` (dimensions of size 1 take any stride).
pub fn is_row_major(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1;
    for (&n, &s) in shape.iter().zip(stride).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected *= n;
    }
    true
}

/// A sequence with its nesting depth and the cost of its items kept up to date, so neither
/// needs a walk.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Seq {
    pub items: Vec<Value>,
    depth: u32,
    work: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map {
    pub items: Vec<(Value, Value)>,
    depth: u32,
    work: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Seq),
    List(Seq),
    Set(Seq),
    Dict(Map),
    Global {
        module: String,
        name: String,
    },
    Storage(StorageRef),
    Tensor(TensorRef),
    /// The result of a callable we do not evaluate: its name and arguments, kept inert.
    Object {
        class: String,
        args: Seq,
    },
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(s) | Value::List(s) | Value::Set(s) | Value::Object { args: s, .. } => {
                s.depth
            }
            Value::Dict(m) => m.depth,
            _ => 0,
        }
    }

    /// What making a copy of this value costs.
    fn work(&self) -> u64 {
        match self {
            Value::Tuple(s) | Value::List(s) | Value::Set(s) => 1 + s.work,
            Value::Object { class, args } => 1 + args.work + class.len() as u64 / 16,
            Value::Dict(m) => 1 + m.work,
            Value::Str(s) => 1 + s.len() as u64 / 16,
            Value::Bytes(b) => 1 + b.len() as u64 / 16,
            Value::Global { module, name } => 1 + (module.len() + name.len()) as u64 / 16,
            Value::Storage(st) => 1 + st.text_len() / 16,
            Value::Tensor(t) => 1 + 2 * t.shape.len() as u64 + t.storage.text_len() / 16,
            _ => 1,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value under a string key of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(m) => m
                .items
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl Seq {
    fn new(items: Vec<Value>) -> Result<Self, PickleError> {
        let mut s = Seq::default();
        s.extend(items)?;
        Ok(s)
    }

    fn extend(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        for v in &items {
            self.depth = self.depth.max(v.depth() + 1);
            self.work += v.work();
        }
        if self.depth > MAX_DEPTH {
            return Err(PickleError::TooDeep);
        }
        self.items.extend(items);
        Ok(())
    }
}

impl Map {
    fn insert(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), PickleError> {
        for (k, v) in &pairs {
            self.depth = self.depth.max(k.depth().max(v.depth()) + 1);
            self.work += k.work() + v.work();
        }
        if self.depth > MAX_DEPTH {
            return Err(PickleError::TooDeep);
        }
        self.items.extend(pairs);
        Ok(())
    }
}

/// The element type and size of a `torch.<Name>Storage`.
fn storage_class(name: &str) -> Option<(Option<DType>, usize)> {
    Some(match name {
        "FloatStorage" => (Some(DType::F32), 4),
        "HalfStorage" => (Some(DType::F16), 2),
        "BFloat16Storage" => (Some(DType::BF16), 2),
        "DoubleStorage" => (Some(DType::F64), 8),
        "LongStorage" => (Some(DType::I64), 8),
        "IntStorage" => (Some(DType::I32), 4),
        "ShortStorage" => (Some(DType::I16), 2),
        "ByteStorage" | "BoolStorage" => (Some(DType::U8), 1),
        "Float8_e4m3fnStorage" => (Some(DType::F8E4M3), 1),
        "CharStorage" | "QInt8Storage" | "QUInt8Storage" | "Float8_e5m2Storage" => (None, 1),
        "ComplexFloatStorage" => (None, 8),
        "ComplexDoubleStorage" => (None, 16),
        "UntypedStorage" => (Some(DType::U8), 1),
        _ => return None,
    })
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    work: u64,
}

impl<'a> Machine<'a> {
    fn malformed(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            at: self.pos,
            what: what.into(),
        }
    }

    fn charge(&mut self, units: u64) -> Result<(), PickleError> {
        self.work = self.work.saturating_add(units);
        if self.work > MAX_WORK {
            return Err(PickleError::TooLarge);
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(PickleError::Truncated(self.bytes.len()))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn take_len(&mut self, width: usize) -> Result<&'a [u8], PickleError> {
        let raw = self.take(width)?;
        let mut b = [0u8; 8];
        b[..width].copy_from_slice(raw);
        let n = u64::from_le_bytes(b);
        let n = usize::try_from(n).map_err(|_| PickleError::Truncated(self.bytes.len()))?;
        self.charge(n as u64 / 16)?;
        self.take(n)
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .take(MAX_LINE + 1)
            .position(|&b| b == b'\n')
            .ok_or_else(|| {
                if rest.len() <= MAX_LINE {
                    PickleError::Truncated(self.bytes.len())
                } else {
                    self.malformed("text line too long")
                }
            })?;
        let line = std::str::from_utf8(&rest[..n])
            .map_err(|_| self.malformed("text line is not UTF-8"))?;
        self.pos += n + 1;
        Ok(line)
    }

    fn utf8(&self, b: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(b.to_vec()).map_err(|_| self.malformed("string is not UTF-8"))
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        self.charge(1)?;
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed("stack underflow"));
        }
        let at = self.pos;
        self.stack.last_mut().ok_or(PickleError::Malformed {
            at,
            what: "stack underflow".into(),
        })
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self.marks.pop().ok_or_else(|| self.malformed("no MARK"))?;
        Ok(self.stack.split_off(mark))
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let v = self.top()?.clone();
        self.charge(v.work())?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(self.malformed("memo too large"));
        }
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let cost = match self.memo.get(&key) {
            Some(v) => v.work(),
            None => return Err(self.malformed(format!("memo key {key} not set"))),
        };
        // Charged before the copy is made, so a bomb stops before it allocates.
        self.charge(cost)?;
        let v = self.memo[&key].clone();
        self.push(v)
    }

    fn int(&self, v: &Value, what: &str) -> Result<usize, PickleError> {
        match v {
            Value::Int(i) => {
                usize::try_from(*i).map_err(|_| self.malformed(format!("{what} is negative")))
            }
            _ => Err(self.malformed(format!("{what} is not an integer"))),
        }
    }

    fn ints(&self, v: &Value, what: &str) -> Result<Vec<usize>, PickleError> {
        match v {
            Value::Tuple(s) | Value::List(s) => {
                if s.items.len() > MAX_RANK {
                    return Err(
                        self.malformed(format!("{what} has more than {MAX_RANK} dimensions"))
                    );
                }
                s.items.iter().map(|i| self.int(i, what)).collect()
            }
            _ => Err(self.malformed(format!("{what} is not a tuple"))),
        }
    }

    fn persistent_load(&self, pid: Value) -> Result<Value, PickleError> {
        let Value::Tuple(t) = pid else {
            return Err(self.malformed("persistent id is not a tuple"));
        };
        let [kind, class, key, _location, numel] = t.items.as_slice() else {
            return Err(
                self.malformed("persistent id is not ('storage', type, key, location, numel)")
            );
        };
        if kind.as_str() != Some("storage") {
            return Err(self.malformed("persistent id is not a storage"));
        }
        let class = match class {
            Value::Global { name, .. } => name.clone(),
            _ => return Err(self.malformed("storage type is not a class")),
        };
        let (dtype, elem_size) = storage_class(&class)
            .ok_or_else(|| self.malformed(format!("unknown storage type {class}")))?;
        let key = match key {
            Value::Str(k) => k.clone(),
            _ => return Err(self.malformed("storage key is not a string")),
        };
        let numel = self.int(numel, "storage size")?;
        Ok(Value::Storage(StorageRef {
            key,
            dtype,
            class,
            elem_size,
            numel,
        }))
    }

    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value, PickleError> {
        let (Some(storage), Some(offset), Some(size), Some(stride)) =
            (args.first(), args.get(1), args.get(2), args.get(3))
        else {
            return Err(self.malformed("tensor rebuilt from fewer than four arguments"));
        };
        let Value::Storage(storage) = storage else {
            return Err(self.malformed("tensor rebuilt from something that is not a storage"));
        };
        let shape = self.ints(size, "tensor size")?;
        let stride = self.ints(stride, "tensor stride")?;
        if shape.len() != stride.len() {
            return Err(self.malformed("tensor size and stride differ in rank"));
        }
        let t = TensorRef {
            storage: storage.clone(),
            offset: self.int(offset, "storage offset")?,
            shape,
            stride,
        };
        if t.shape
            .iter()
            .try_fold(1usize, |a, &n| a.checked_mul(n))
            .is_none()
            || t.extent().is_none()
        {
            return Err(self.malformed("tensor size overflows"));
        }
        Ok(Value::Tensor(t))
    }

    /// What `callable(*args)` gives, for the callables torch checkpoints use; an inert record
    /// for any other.
    fn reduce(&self, callable: Value, args: Seq) -> Result<Value, PickleError> {
        let (module, name) = match &callable {
            Value::Global { module, name } => (module.as_str(), name.as_str()),
            _ => ("", ""),
        };
        match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                self.rebuild_tensor(&args.items)
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => args
                .items
                .into_iter()
                .next()
                .ok_or_else(|| self.malformed("parameter rebuilt from no arguments")),
            ("torch._tensor", "_rebuild_from_type_v2") => {
                // (func, subclass, func's args, state): a tensor subclass; keep the tensor.
                let mut it = args.items.into_iter();
                match (it.next(), it.next(), it.next()) {
                    (Some(func), Some(_), Some(Value::Tuple(inner))) => self.reduce(func, inner),
                    _ => Err(self.malformed("_rebuild_from_type_v2 with bad arguments")),
                }
            }
            ("collections", "OrderedDict") | ("builtins", "dict") => {
                let mut map = Map::default();
                if let Some(Value::List(pairs) | Value::Tuple(pairs)) = args.items.first() {
                    let mut kv = vec![];
                    for p in &pairs.items {
                        match p {
                            Value::Tuple(t) if t.items.len() == 2 => {
                                kv.push((t.items[0].clone(), t.items[1].clone()))
                            }
                            _ => {
                                return Err(
                                    self.malformed("dict built from something that is not pairs")
                                )
                            }
                        }
                    }
                    map.insert(kv)?;
                } else {
                    map.insert(vec![])?;
                }
                Ok(Value::Dict(map))
            }
            _ => Ok(Value::Object {
                class: format!("{module}.{name}"),
                args,
            }),
        }
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let op = *self.take(1)?.first().ok_or(PickleError::NoStop)?;
            match op {
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => {
                    self.charge(1)?;
                    self.marks.push(self.stack.len());
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let b = self.take(4)?;
                    self.push(Value::Int(
                        i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64
                    ))?
                }
                b'K' => {
                    let b = self.take(1)?[0];
                    self.push(Value::Int(b as i64))?
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.take(1)?[0] as usize
                    } else {
                        let b = self.take(4)?;
                        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
                    };
                    let b = self.take(n)?;
                    if n > 8 {
                        // A Python int wider than 64 bits: legal, and of no use to us.
                        self.charge(n as u64 / 16)?;
                        self.push(Value::Object {
                            class: "builtins.int".into(),
                            args: Seq::default(),
                        })?;
                        continue;
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v))?
                }
                b'I' | b'L' => {
                    let line = self.line()?.trim_end_matches('L');
                    let v = match line {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        _ => Value::Int(
                            line.parse()
                                .map_err(|_| self.malformed("bad text integer"))?,
                        ),
                    };
                    self.push(v)?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)))?
                }
                b'X' | 0x8c | 0x8d => {
                    let width = match op {
                        b'X' => 4,
                        0x8c => 1,
                        _ => 8,
                    };
                    let b = self.take_len(width)?;
                    let s = self.utf8(b)?;
                    self.push(Value::Str(s))?
                }
                b'T' | b'U' => {
                    let b = self.take_len(if op == b'T' { 4 } else { 1 })?;
                    self.push(Value::Str(String::from_utf8_lossy(b).into_owned()))?
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let width = match op {
                        b'B' => 4,
                        b'C' => 1,
                        _ => 8,
                    };
                    let b = self.take_len(width)?.to_vec();
                    self.push(Value::Bytes(b))?
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.push(Value::Global { module, name })?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.push(Value::Global { module, name })?
                        }
                        _ => return Err(self.malformed("STACK_GLOBAL of non-strings")),
                    }
                }
                b'p' => {
                    let key = self
                        .line()?
                        .parse()
                        .map_err(|_| self.malformed("bad PUT key"))?;
                    self.memo_put(key)?
                }
                b'q' => {
                    let key = self.take(1)?[0] as u64;
                    self.memo_put(key)?
                }
                b'r' => {
                    let b = self.take(4)?;
                    self.memo_put(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)?
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?
                }
                b'g' => {
                    let key = self
                        .line()?
                        .parse()
                        .map_err(|_| self.malformed("bad GET key"))?;
                    self.memo_get(key)?
                }
                b'h' => {
                    let key = self.take(1)?[0] as u64;
                    self.memo_get(key)?
                }
                b'j' => {
                    let b = self.take(4)?;
                    self.memo_get(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)?
                }
                b')' => self.push(Value::Tuple(Seq::default()))?,
                b']' => self.push(Value::List(Seq::default()))?,
                b'}' => self.push(Value::Dict(Map::default()))?,
                0x8f => self.push(Value::Set(Seq::default()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Seq::new(items)?))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(Seq::new(items)?))?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Seq::new(items)?))?
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::Set(Seq::new(items)?))?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let mut map = Map::default();
                    map.insert(pairs)?;
                    self.push(Value::Dict(map))?
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.set_items(pairs)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return Err(self.malformed("REDUCE arguments are not a tuple"));
                    };
                    let v = self.reduce(callable, args)?;
                    self.push(v)?
                }
                0x81 | 0x92 => {
                    if op == 0x92 {
                        self.pop()?; // keyword arguments
                    }
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let args = match args {
                        Value::Tuple(s) => s,
                        other => Seq::new(vec![other])?,
                    };
                    let v = self.reduce(class, args)?;
                    self.push(v)?
                }
                b'b' => {
                    // The state of an object (an OrderedDict's `_metadata`, a class's fields):
                    // nothing we read lives there.
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.charge(v.work())?;
                    self.push(v)?
                }
                _ => return Err(PickleError::UnsupportedOpcode { op, at }),
            }
        }
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("odd number of dict items"));
        }
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        match self.top()? {
            Value::List(s) | Value::Set(s) => s.extend(items),
            // A list subclass we do not model: its items are of no use to us.
            Value::Object { .. } => Ok(()),
            _ => Err(self.malformed("APPEND to something that is not a list")),
        }
    }

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), PickleError> {
        match self.top()? {
            Value::Dict(m) => m.insert(pairs),
            Value::Object { .. } => Ok(()),
            _ => Err(self.malformed("SETITEM on something that is not a dict")),
        }
    }
}

/// Reads one pickle, returning the value its STOP leaves.
pub fn read(bytes: &[u8]) -> Result<Value, PickleError> {
    let mut m = Machine {
        bytes,
        pos: 0,
        stack: vec![],
        marks: vec![],
        memo: HashMap::new(),
        work: 0,
    };
    m.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_state_dict_shaped_pickle() {
        // {'state_dict': OrderedDict([('w', _rebuild_tensor_v2(storage, 0, (2,3), (3,1), False, OrderedDict()))]), 'global_step': 7}
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
        p.extend(b"X\x0a\0\0\0state_dict");
        p.extend(b"ccollections\nOrderedDict\nq\x01)R");
        p.extend(b"(X\x01\0\0\0w");
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend(b"(X\x07\0\0\0storagectorch\nFloatStorage\nX\x01\0\0\x000X\x03\0\0\0cpuK\x06tQ");
        p.extend(b"K\0K\x02K\x03\x86K\x03K\x01\x86\x89h\x01)Rtq\x02R");
        p.extend(b"uX\x0b\0\0\0global_stepK\x07u.");
        let v = read(&p).unwrap();
        assert_eq!(v.get("global_step"), Some(&Value::Int(7)));
        let Some(Value::Tensor(t)) = v.get("state_dict").and_then(|s| s.get("w")) else {
            panic!("no tensor: {v:?}")
        };
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.storage.dtype, Some(DType::F32));
        assert!(t.is_contiguous());
        assert_eq!(t.extent(), Some(6));
    }

    #[test]
    fn truncations_and_garbage_are_errors() {
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u.";
        assert!(read(p).is_ok());
        for n in 0..p.len() {
            assert!(read(&p[..n]).is_err());
        }
        for op in 0u8..=255 {
            let _ = read(&[0x80, 2, op, op, op, b'.']);
        }
    }

    #[test]
    fn billion_laughs_stops_early() {
        // Each level is a 64-wide list of the previous level, memoized: 64^6 values.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for level in 1..=6u8 {
            p.push(b'(');
            for _ in 0..64 {
                p.extend([b'h', level - 1]);
            }
            p.extend([b'l', b'q', level]);
        }
        p.push(b'.');
        assert_eq!(read(&p), Err(PickleError::TooLarge));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let mut p = vec![0x80, 2, b')'];
        p.extend(std::iter::repeat_n(0x85, 150_000));
        p.push(b'.');
        assert_eq!(read(&p), Err(PickleError::TooDeep));
        // Nesting by appending into lists that are then appended.
        let mut p = vec![0x80, 2, b']'];
        for _ in 0..150_000 {
            p.extend([b']', 0x85, b'a']); // wrap: ([] ,) appended
        }
        p.push(b'.');
        let _ = read(&p);
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b'(', 150_000));
        p.extend(std::iter::repeat_n(b'l', 150_000));
        p.push(b'.');
        assert_eq!(read(&p), Err(PickleError::TooDeep));
    }

    #[test]
    fn short_reduce_arguments_are_errors() {
        let p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)R.";
        assert!(matches!(read(p), Err(PickleError::Malformed { .. })));
        let p = b"\x80\x02ctorch._utils\n_rebuild_parameter\n)R.";
        assert!(matches!(read(p), Err(PickleError::Malformed { .. })));
    }

    #[test]
    fn huge_lengths_and_sizes_are_errors() {
        assert!(read(b"\x80\x02X\xff\xff\xff\xff.").is_err());
        assert!(read(b"\x80\x02\x8e\xff\xff\xff\xff\xff\xff\xff\xff.").is_err());
        // A tensor whose size overflows usize.
        let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
        p.extend(b"(X\x07\0\0\0storagectorch\nFloatStorage\nX\x01\0\0\x000X\x03\0\0\0cpuK\x06tQ");
        p.extend(b"K\0\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3f\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3f\x86K\x01K\x01\x86tR.");
        assert!(matches!(read(&p), Err(PickleError::Malformed { .. })));
    }

    /// Copies of a value that owns a long string cost its length: a 1 MiB storage key or class
    /// name duplicated 200 000 times stops at the work bound instead of filling memory.
    #[test]
    fn long_strings_in_storages_and_classes_are_charged_when_copied() {
        let key = "k".repeat(1 << 20);
        let mut p = vec![0x80, 2, b'('];
        p.extend(b"X\x07\0\0\0storagectorch\nFloatStorage\n");
        p.push(b'X');
        p.extend((key.len() as u32).to_le_bytes());
        p.extend(key.as_bytes());
        p.extend(b"X\x03\0\0\0cpuK\x01tQ");
        p.extend(std::iter::repeat_n(b'2', 200_000));
        p.push(b'.');
        assert_eq!(read(&p), Err(PickleError::TooLarge));
        let mut p = vec![0x80, 2, b'X', 1, 0, 0, 0, b'm', b'X'];
        p.extend((key.len() as u32).to_le_bytes());
        p.extend(key.as_bytes());
        p.extend([0x93, b')', b'R']);
        p.extend(std::iter::repeat_n(b'2', 200_000));
        p.push(b'.');
        assert_eq!(read(&p), Err(PickleError::TooLarge));
    }

    /// Python ints of any width are legal; wider than 64 bits they are kept as opaque values.
    #[test]
    fn wide_integers_are_read() {
        let mut p = vec![0x80, 2, 0x8a, 9];
        p.extend([1u8; 9]);
        p.push(b'.');
        assert!(matches!(read(&p), Ok(Value::Object { .. })));
    }
}
