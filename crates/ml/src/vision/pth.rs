//! PyTorch's legacy checkpoint format (`torch.save` before 1.6, or with
//! `_use_new_zipfile_serialization=False`), read without Python.
//!
//! Some published vision weights (EfficientNet-Lite0's among them) exist only
//! in this format, and candle reads only the zip format. A legacy file is a
//! plain concatenation:
//!
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c`;
//! 2. a pickle of the protocol version (1001);
//! 3. a pickle of a dict describing the writer (`little_endian`, type sizes);
//! 4. the pickle of the object saved (here a state dict), in which every
//!    tensor is a `torch._utils._rebuild_tensor_v2(storage, offset, size,
//!    stride, ...)` call whose storage is a persistent id
//!    `('storage', torch.FloatStorage, key, location, numel, view)`;
//! 5. a pickle of the list of storage keys;
//! 6. for each key in that order, the storage: its element count as a
//!    little-endian `u64`, then its elements, raw and little-endian.
//!
//! The pickles are decoded by candle's pickle machine
//! ([`candle_core::pickle::Stack`]); the container around them, the storages
//! and the strided views into them are handled here.
//!
//! The file is untrusted input. Before candle sees a pickle, a scan walks its
//! opcodes, checks every length against the bytes that are left, refuses the
//! opcodes candle would mishandle (a `LONG1` wider than 8 bytes, `DICT`), and
//! bounds the work of memo copies and the nesting depth, so a truncated or
//! corrupt file is a [`MlError::BadModel`], never a panic or a huge
//! allocation. Storage lengths and every tensor's extent are checked against
//! the file before anything is copied.

use std::collections::HashMap;
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

use crate::error::{MlError, Result};

/// The magic number's 10 little-endian bytes, as `LONG1` pickles them.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The only protocol version the legacy format ever had.
const PROTOCOL_VERSION: i64 = 1001;

/// Deepest nesting a pickle may build (a state dict needs about 6).
const MAX_DEPTH: u32 = 64;

/// Most objects a pickle may create or copy through its memo (a state dict
/// needs about 30 per tensor); bounds memory against "billion laughs" memo
/// tricks.
const MAX_WORK: u64 = 1 << 23;

/// Bytes the tensors may take beyond twice the file's size. Zero strides
/// (`expand`) and storages shared by several tensors let tensors hold more
/// elements than the file stores; this bounds how much a small file can
/// make us allocate.
const MAX_EXPANSION_BYTES: usize = 1 << 28;

/// Reads a legacy (non-zip) PyTorch checkpoint holding a state dict.
///
/// Returns every tensor of the dict by name, on the CPU, contiguous, with
/// the storage offset, shape and strides of the file applied.
/// Floating-point tensors (`float`, `double`, `half`, `bfloat16`) come back
/// as f32; integer buffers (such as BatchNorm's `num_batches_tracked`) as
/// i64, and bytes or booleans as u8. Entries of the dict that are not
/// tensors are ignored.
pub fn load_legacy_pth(path: impl AsRef<Path>) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| MlError::io(path, e))?;
    parse_legacy_pth(&bytes, path)
}

/// [`load_legacy_pth`] on bytes already read (`path` only names them in
/// errors).
pub fn parse_legacy_pth(bytes: &[u8], path: &Path) -> Result<HashMap<String, Tensor>> {
    parse(bytes).map_err(|reason| MlError::bad_model(path, format!("legacy .pth: {reason}")))
}

/// What a persistent id says about a tensor's storage.
#[derive(Debug, Clone)]
struct StorageRef {
    key: String,
    kind: StorageKind,
    /// Elements in the whole (root) storage.
    numel: usize,
    /// `(offset, len)` of a view into the root storage, in elements.
    view: Option<(usize, usize)>,
}

/// One tensor of the state dict, before its data is read.
#[derive(Debug, Clone)]
struct TensorRef {
    name: String,
    storage: StorageRef,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

/// Storage element types and what they become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageKind {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageKind {
    fn from_class(module: &str, class: &str) -> std::result::Result<Self, String> {
        if module != "torch" {
            return Err(format!("unknown storage type {module}.{class}"));
        }
        Ok(match class {
            "FloatStorage" => StorageKind::F32,
            "DoubleStorage" => StorageKind::F64,
            "HalfStorage" => StorageKind::F16,
            "BFloat16Storage" => StorageKind::BF16,
            "LongStorage" => StorageKind::I64,
            "IntStorage" => StorageKind::I32,
            "ShortStorage" => StorageKind::I16,
            "CharStorage" => StorageKind::I8,
            "ByteStorage" => StorageKind::U8,
            "BoolStorage" => StorageKind::Bool,
            other => return Err(format!("unsupported storage type torch.{other}")),
        })
    }

    fn element_size(self) -> usize {
        match self {
            StorageKind::F64 | StorageKind::I64 => 8,
            StorageKind::F32 | StorageKind::I32 => 4,
            StorageKind::F16 | StorageKind::BF16 | StorageKind::I16 => 2,
            StorageKind::I8 | StorageKind::U8 | StorageKind::Bool => 1,
        }
    }
}

fn parse(bytes: &[u8]) -> std::result::Result<HashMap<String, Tensor>, String> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(
            "this is the zip format of PyTorch 1.6 and later, not the legacy format \
             (candle_core::pickle reads it)"
                .into(),
        );
    }
    let mut pos = check_magic(bytes)?;

    let (version, end) = run_pickle(bytes, pos, "protocol version")?;
    pos = end;
    match version {
        Object::Int(v) if i64::from(v) == PROTOCOL_VERSION => {}
        Object::Long(v) if v == PROTOCOL_VERSION => {}
        other => return Err(format!("unsupported protocol version {other:?}")),
    }

    let (sys_info, end) = run_pickle(bytes, pos, "system information")?;
    pos = end;
    let Object::Dict(sys_info) = sys_info else {
        return Err("the system information is not a dict".into());
    };
    for (key, value) in &sys_info {
        if matches!(key, Object::Unicode(k) if k == "little_endian") && value != &Object::Bool(true)
        {
            return Err("written on a big-endian machine, which is not supported".into());
        }
    }

    let (state, end) = run_pickle(bytes, pos, "state dict")?;
    pos = end;
    let tensors = tensor_refs(state)?;
    if tensors.is_empty() {
        return Err("the saved object is not a state dict of tensors".into());
    }

    let (keys, end) = run_pickle(bytes, pos, "storage keys")?;
    pos = end;
    let Object::List(keys) = keys else {
        return Err("the storage key list is not a list".into());
    };

    // Every storage the tensors refer to, with its element type and size.
    let mut referenced: HashMap<&str, (StorageKind, usize)> = HashMap::new();
    for tensor in &tensors {
        let storage = &tensor.storage;
        let seen = referenced
            .entry(storage.key.as_str())
            .or_insert((storage.kind, storage.numel));
        if *seen != (storage.kind, storage.numel) {
            return Err(format!(
                "storage {} is described inconsistently ({:?} and {:?})",
                storage.key,
                seen,
                (storage.kind, storage.numel)
            ));
        }
    }

    // The storages follow the key list, each an element count and raw data.
    let mut located: HashMap<String, &[u8]> = HashMap::new();
    for key in keys {
        let Object::Unicode(key) = key else {
            return Err(format!("storage key {key:?} is not a string"));
        };
        let Some(&(kind, numel)) = referenced.get(key.as_str()) else {
            return Err(format!("storage {key} is not used by any tensor"));
        };
        let header = bytes
            .get(pos..pos.saturating_add(8))
            .ok_or_else(|| format!("truncated: storage {key} has no length"))?;
        let mut count = [0u8; 8];
        count.copy_from_slice(header);
        let count = u64::from_le_bytes(count);
        if count != numel as u64 {
            return Err(format!(
                "storage {key} holds {count} elements but its tensors expect {numel}"
            ));
        }
        pos += 8;
        let len = numel
            .checked_mul(kind.element_size())
            .filter(|len| *len <= bytes.len() - pos)
            .ok_or_else(|| {
                format!(
                    "truncated: storage {key} needs {numel} elements of {} bytes but only {} bytes are left",
                    kind.element_size(),
                    bytes.len() - pos
                )
            })?;
        if located
            .insert(key.clone(), &bytes[pos..pos + len])
            .is_some()
        {
            return Err(format!("storage {key} is listed twice"));
        }
        pos += len;
    }

    let mut budget = bytes
        .len()
        .saturating_mul(2)
        .saturating_add(MAX_EXPANSION_BYTES);
    let mut out = HashMap::with_capacity(tensors.len());
    for tensor in &tensors {
        let data = located.get(&tensor.storage.key).ok_or_else(|| {
            format!(
                "tensor {}: storage {} is not in the file",
                tensor.name, tensor.storage.key
            )
        })?;
        let value = materialise(tensor, data, &mut budget)?;
        out.insert(tensor.name.clone(), value);
    }
    Ok(out)
}

/// Checks the first pickle is the magic number; returns where the next
/// starts. Done by hand because the number is wider than candle's `LONG1`.
fn check_magic(bytes: &[u8]) -> std::result::Result<usize, String> {
    let mut pos = 0;
    if bytes.first() == Some(&0x80) {
        pos = 2;
    }
    let not_legacy = || "not a PyTorch checkpoint (no legacy magic number)".to_string();
    if bytes.get(pos) != Some(&0x8a) || bytes.get(pos + 1) != Some(&10) {
        return Err(not_legacy());
    }
    pos += 2;
    if bytes.get(pos..pos + 10) != Some(&MAGIC[..]) || bytes.get(pos + 10) != Some(&b'.') {
        return Err(not_legacy());
    }
    Ok(pos + 11)
}

/// Scans the pickle at `start` and, if the scan passes, runs it through
/// candle's pickle machine. Returns the object and where the pickle ends.
fn run_pickle(
    bytes: &[u8],
    start: usize,
    what: &str,
) -> std::result::Result<(Object, usize), String> {
    let end =
        scan_pickle(bytes, start).map_err(|e| format!("{what} pickle at byte {start}: {e}"))?;
    let mut stack = Stack::empty();
    let mut reader = &bytes[start..end];
    stack
        .read_loop(&mut reader)
        .and_then(|()| stack.finalize())
        .map(|object| (object, end))
        .map_err(|e| format!("{what} pickle at byte {start}: {e}"))
}

/// The shape of an object on the scanned pickle's stack: how many objects it
/// holds and how deeply they nest.
#[derive(Debug, Clone, Copy)]
struct Node {
    size: u64,
    depth: u32,
    mark: bool,
}

const LEAF: Node = Node {
    size: 1,
    depth: 1,
    mark: false,
};

/// Walks the opcodes of the pickle starting at `start` as candle's
/// [`Stack`] would run them, tracking only sizes; returns the offset just
/// past its `STOP`.
fn scan_pickle(bytes: &[u8], start: usize) -> std::result::Result<usize, String> {
    let mut pos = start;
    let mut stack: Vec<Node> = Vec::new();
    let mut memo: HashMap<u32, Node> = HashMap::new();
    let mut work: u64 = 0;

    let take = |pos: &mut usize, n: usize| -> std::result::Result<&[u8], String> {
        let slice = bytes
            .get(*pos..pos.saturating_add(n))
            .ok_or_else(|| format!("truncated at byte {}", *pos))?;
        *pos += n;
        Ok(slice)
    };
    let le = |b: &[u8]| {
        b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
    };
    let pop = |stack: &mut Vec<Node>| stack.pop().ok_or_else(|| "stack underflow".to_string());
    let pop_to_mark = |stack: &mut Vec<Node>| -> std::result::Result<Vec<Node>, String> {
        let mark = stack
            .iter()
            .rposition(|n| n.mark)
            .ok_or_else(|| "no mark on the stack".to_string())?;
        let items = stack.split_off(mark + 1);
        stack.pop();
        Ok(items)
    };
    let combine = |parts: &[Node]| Node {
        size: parts.iter().fold(1u64, |acc, n| acc.saturating_add(n.size)),
        depth: 1 + parts.iter().map(|n| n.depth).max().unwrap_or(0),
        mark: false,
    };

    loop {
        let at = pos;
        let op = *take(&mut pos, 1)?.first().ok_or("truncated")?;
        work += 1;
        let pushed = match op {
            // PROTO
            0x80 => {
                take(&mut pos, 1)?;
                None
            }
            // GLOBAL: module and name, each to a newline.
            b'c' => {
                for _ in 0..2 {
                    let rest = bytes.get(pos..).unwrap_or_default();
                    let line = rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .ok_or_else(|| format!("truncated GLOBAL at byte {at}"))?;
                    pos += line + 1;
                }
                Some(LEAF)
            }
            // BININT1, BININT2, BININT, BINFLOAT
            b'K' => {
                take(&mut pos, 1)?;
                Some(LEAF)
            }
            b'M' => {
                take(&mut pos, 2)?;
                Some(LEAF)
            }
            b'J' => {
                take(&mut pos, 4)?;
                Some(LEAF)
            }
            b'G' => {
                take(&mut pos, 8)?;
                Some(LEAF)
            }
            // LONG1: candle decodes at most 8 bytes.
            0x8a => {
                let n = usize::from(take(&mut pos, 1)?[0]);
                if n > 8 {
                    return Err(format!("LONG1 of {n} bytes at byte {at}"));
                }
                take(&mut pos, n)?;
                Some(LEAF)
            }
            // BINUNICODE
            b'X' => {
                let len = le(take(&mut pos, 4)?) as usize;
                if len > bytes.len() - pos {
                    return Err(format!(
                        "string of {len} bytes at byte {at} runs past the end of the file"
                    ));
                }
                pos += len;
                Some(LEAF)
            }
            // NONE, NEWTRUE, NEWFALSE, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, GLOBAL
            b'N' | 0x88 | 0x89 | b'}' | b']' | b')' => Some(LEAF),
            // MARK
            b'(' => Some(Node { mark: true, ..LEAF }),
            // BINPERSID
            b'Q' => {
                let id = pop(&mut stack)?;
                Some(combine(&[id]))
            }
            // TUPLE
            b't' => {
                let items = pop_to_mark(&mut stack)?;
                Some(combine(&items))
            }
            // TUPLE1..3
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if stack.len() < n {
                    return Err("stack underflow".into());
                }
                let items = stack.split_off(stack.len() - n);
                Some(combine(&items))
            }
            // REDUCE, BUILD, NEWOBJ: two objects become one.
            b'R' | b'b' | 0x81 => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                Some(combine(&[a, b]))
            }
            // APPEND, SETITEM, APPENDS, SETITEMS: into the object below.
            b'a' | b's' | b'e' | b'u' => {
                let items = match op {
                    b'a' => vec![pop(&mut stack)?],
                    b's' => {
                        let v = pop(&mut stack)?;
                        let k = pop(&mut stack)?;
                        vec![k, v]
                    }
                    _ => pop_to_mark(&mut stack)?,
                };
                let target = stack.last_mut().ok_or("stack underflow")?;
                let grown = combine(&items);
                target.size = target.size.saturating_add(grown.size);
                target.depth = target.depth.max(grown.depth);
                if target.depth > MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH} at byte {at}"));
                }
                None
            }
            // BINGET, LONG_BINGET: a copy of a memo entry.
            b'h' | b'j' => {
                let id = if op == b'h' {
                    le(take(&mut pos, 1)?)
                } else {
                    le(take(&mut pos, 4)?)
                } as u32;
                let node = *memo
                    .get(&id)
                    .ok_or_else(|| format!("memo entry {id} missing at byte {at}"))?;
                work = work.saturating_add(node.size);
                Some(node)
            }
            // BINPUT, LONG_BINPUT: a copy of the top into the memo.
            b'q' | b'r' => {
                let id = if op == b'q' {
                    le(take(&mut pos, 1)?)
                } else {
                    le(take(&mut pos, 4)?)
                } as u32;
                let top = *stack.last().ok_or("stack underflow")?;
                work = work.saturating_add(top.size);
                memo.insert(id, top);
                None
            }
            // STOP
            b'.' => {
                if stack.len() != 1 {
                    return Err(format!(
                        "{} objects on the stack at STOP (byte {at})",
                        stack.len()
                    ));
                }
                return Ok(pos);
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} at byte {at}"
                ));
            }
        };
        if let Some(node) = pushed {
            if node.depth > MAX_DEPTH {
                return Err(format!("nesting deeper than {MAX_DEPTH} at byte {at}"));
            }
            stack.push(node);
        }
        if work > MAX_WORK {
            return Err(format!("more than {MAX_WORK} objects built by byte {at}"));
        }
    }
}

/// The tensors of a state dict (entries that are not tensors are skipped).
fn tensor_refs(state: Object) -> std::result::Result<Vec<TensorRef>, String> {
    let Object::Dict(entries) = state else {
        return Err("the saved object is not a dict".into());
    };
    let mut out = Vec::new();
    for (name, value) in entries {
        let Object::Unicode(name) = name else {
            continue;
        };
        if let Some(tensor) = tensor_ref(&name, value)? {
            out.push(tensor);
        }
    }
    Ok(out)
}

fn tensor_ref(name: &str, value: Object) -> std::result::Result<Option<TensorRef>, String> {
    let bad = |what: &str| format!("tensor {name}: {what}");
    let Object::Reduce { callable, args } = value else {
        return Ok(None);
    };
    let (callable, args) = match *callable {
        // A saved nn.Parameter wraps the tensor: (tensor, requires_grad, hooks).
        Object::Class {
            module_name,
            class_name,
        } if module_name == "torch._utils" && class_name == "_rebuild_parameter" => {
            let Object::Tuple(mut args) = *args else {
                return Err(bad("malformed _rebuild_parameter"));
            };
            if args.is_empty() {
                return Err(bad("malformed _rebuild_parameter"));
            }
            match args.swap_remove(0) {
                Object::Reduce { callable, args } => (*callable, *args),
                _ => return Err(bad("malformed _rebuild_parameter")),
            }
        }
        callable => (callable, *args),
    };
    match &callable {
        Object::Class {
            module_name,
            class_name,
        } if module_name == "torch._utils" && class_name == "_rebuild_tensor_v2" => {}
        Object::Class {
            module_name,
            class_name,
        } if module_name.starts_with("torch") => {
            return Err(bad(&format!(
                "{module_name}.{class_name} tensors are not supported"
            )));
        }
        _ => return Ok(None),
    }
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    let Object::Tuple(args) = args else {
        return Err(bad("_rebuild_tensor_v2 without an argument tuple"));
    };
    let mut args = args.into_iter();
    let (Some(storage), Some(offset), Some(size), Some(stride)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        return Err(bad("_rebuild_tensor_v2 with too few arguments"));
    };
    let Object::PersistentLoad(storage) = storage else {
        return Err(bad("storage is not a persistent id"));
    };
    let storage = storage_ref(*storage).map_err(|e| bad(&e))?;
    let offset = non_negative(offset).ok_or_else(|| bad("bad storage offset"))?;
    let size = usizes(size).ok_or_else(|| bad("bad size"))?;
    let stride = usizes(stride).ok_or_else(|| bad("bad stride"))?;
    if size.len() != stride.len() {
        return Err(bad("size and stride differ in rank"));
    }
    Ok(Some(TensorRef {
        name: name.to_string(),
        storage,
        offset,
        size,
        stride,
    }))
}

/// `('storage', storage_type, key, location, numel[, view_metadata])`.
fn storage_ref(id: Object) -> std::result::Result<StorageRef, String> {
    let Object::Tuple(parts) = id else {
        return Err("persistent id is not a tuple".into());
    };
    let mut parts = parts.into_iter();
    let (Some(tag), Some(class), Some(key), Some(_location), Some(numel)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err("persistent id with too few fields".into());
    };
    if tag != Object::Unicode("storage".into()) {
        return Err(format!("persistent id of kind {tag:?}"));
    }
    let Object::Class {
        module_name,
        class_name,
    } = class
    else {
        return Err("storage type is not a class".into());
    };
    let kind = StorageKind::from_class(&module_name, &class_name)?;
    let Object::Unicode(key) = key else {
        return Err("storage key is not a string".into());
    };
    let numel = non_negative(numel).ok_or("bad storage size")?;
    let view = match parts.next() {
        None | Some(Object::None) => None,
        Some(Object::Tuple(view)) => match view.as_slice() {
            [_view_key, offset, len] => {
                let offset = non_negative(offset.clone()).ok_or("bad view offset")?;
                let len = non_negative(len.clone()).ok_or("bad view size")?;
                if offset.checked_add(len).is_none_or(|end| end > numel) {
                    return Err(format!(
                        "view [{offset}, +{len}) outside its storage of {numel}"
                    ));
                }
                Some((offset, len))
            }
            _ => return Err("malformed storage view".into()),
        },
        Some(other) => return Err(format!("malformed storage view {other:?}")),
    };
    Ok(StorageRef {
        key,
        kind,
        numel,
        view,
    })
}

fn non_negative(object: Object) -> Option<usize> {
    match object {
        Object::Int(v) => usize::try_from(v).ok(),
        Object::Long(v) => usize::try_from(v).ok(),
        _ => None,
    }
}

fn usizes(object: Object) -> Option<Vec<usize>> {
    match object {
        Object::Tuple(items) | Object::List(items) => items.into_iter().map(non_negative).collect(),
        _ => None,
    }
}

/// Copies a tensor's elements out of its storage bytes (following offset,
/// shape and strides) into a contiguous CPU tensor, taking its size out of
/// `budget` (bytes all tensors may still take).
///
/// All arithmetic on the file's sizes, strides and offsets is checked:
/// element counts, the furthest element reached and byte sizes that do not
/// fit a `usize` are errors, never wrapped.
fn materialise(
    tensor: &TensorRef,
    storage: &[u8],
    budget: &mut usize,
) -> std::result::Result<Tensor, String> {
    let bad = |what: String| format!("tensor {}: {what}", tensor.name);
    let too_many = || {
        bad(format!(
            "too many elements in shape {:?} with strides {:?}",
            tensor.size, tensor.stride
        ))
    };
    let kind = tensor.storage.kind;
    let element = kind.element_size();
    let (base, available) = tensor.storage.view.unwrap_or((0, tensor.storage.numel));
    // The shape must be one candle can describe: the product of its non-zero
    // dimensions (its contiguous strides) fits, even when another is zero.
    tensor
        .size
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1)))
        .ok_or_else(too_many)?;
    let numel = tensor
        .size
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(too_many)?;
    let reach_past = || {
        bad(format!(
            "shape {:?}, strides {:?} and offset {} reach past its storage of {available} elements",
            tensor.size, tensor.stride, tensor.offset
        ))
    };
    // Where the first element lies in the root storage.
    let first = base.checked_add(tensor.offset).ok_or_else(reach_past)?;
    if numel > 0 {
        // The furthest element the view touches,
        // offset + sum((size_i - 1) * stride_i), must lie inside the storage.
        // Zero strides (expanded tensors) repeat elements and are fine.
        let last = tensor
            .size
            .iter()
            .zip(&tensor.stride)
            .try_fold(tensor.offset, |acc, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
            });
        if last.is_none_or(|last| last >= available) {
            return Err(reach_past());
        }
    }
    let bytes = numel.checked_mul(element).ok_or_else(too_many)?;
    let left = *budget;
    *budget = left.checked_sub(bytes).ok_or_else(|| {
        bad(format!(
            "shape {:?} with strides {:?} takes {bytes} bytes, more than the {left} bytes \
             left for this file's tensors (zero or overlapping strides repeat too many elements)",
            tensor.size, tensor.stride
        ))
    })?;
    let mut data = Vec::with_capacity(bytes);
    if numel > 0 {
        let rank = tensor.size.len();
        let mut index = vec![0usize; rank];
        // Every position visited lies in [first, base + last], checked above,
        // so the steps below cannot overflow; the slice is still fetched with
        // `get` rather than trusted.
        let mut at = first;
        for _ in 0..numel {
            let value = at
                .checked_mul(element)
                .and_then(|start| storage.get(start..start.checked_add(element)?))
                .ok_or_else(reach_past)?;
            if cfg!(target_endian = "big") {
                data.extend(value.iter().rev());
            } else {
                data.extend_from_slice(value);
            }
            // Odometer step over the multi-index, last dimension fastest.
            for dim in (0..rank).rev() {
                if index[dim] + 1 < tensor.size[dim] {
                    index[dim] += 1;
                    at += tensor.stride[dim];
                    break;
                }
                at -= index[dim] * tensor.stride[dim];
                index[dim] = 0;
            }
        }
    }
    let shape = tensor.size.as_slice();
    let device = &Device::Cpu;
    let raw = |dtype| Tensor::from_raw_buffer(&data, dtype, shape, device);
    let made = match kind {
        StorageKind::F32 => raw(DType::F32),
        StorageKind::F64 => raw(DType::F64).and_then(|t| t.to_dtype(DType::F32)),
        StorageKind::F16 => raw(DType::F16).and_then(|t| t.to_dtype(DType::F32)),
        StorageKind::BF16 => raw(DType::BF16).and_then(|t| t.to_dtype(DType::F32)),
        StorageKind::I64 => raw(DType::I64),
        StorageKind::I32 => raw(DType::I32).and_then(|t| t.to_dtype(DType::I64)),
        StorageKind::I16 => raw(DType::I16).and_then(|t| t.to_dtype(DType::I64)),
        StorageKind::I8 => {
            let values: Vec<i64> = data.iter().map(|&b| i64::from(b as i8)).collect();
            Tensor::from_vec(values, shape, device)
        }
        StorageKind::U8 | StorageKind::Bool => raw(DType::U8),
    };
    made.map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes pickles the way `torch.save` (protocol 2) does, for tests.
    #[derive(Default)]
    struct Pickle(Vec<u8>);

    impl Pickle {
        fn new() -> Self {
            Pickle(vec![0x80, 2])
        }
        fn op(mut self, op: u8) -> Self {
            self.0.push(op);
            self
        }
        fn int(mut self, v: i32) -> Self {
            self.0.push(b'J');
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn str(mut self, s: &str) -> Self {
            self.0.push(b'X');
            self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
            self.0.extend_from_slice(s.as_bytes());
            self
        }
        fn global(mut self, module: &str, name: &str) -> Self {
            self.0.push(b'c');
            self.0
                .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
            self
        }
        /// An integer as `torch.save` writes it: `BININT` when it fits,
        /// else an 8-byte `LONG1`.
        fn long(mut self, v: i64) -> Self {
            if let Ok(v) = i32::try_from(v) {
                return self.int(v);
            }
            self.0.extend_from_slice(&[0x8a, 8]);
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn ints(mut self, values: &[i64]) -> Self {
            self = self.op(b'(');
            for &v in values {
                self = self.long(v);
            }
            self.op(b't')
        }
        fn stop(self) -> Vec<u8> {
            self.op(b'.').0
        }
    }

    struct Fixture {
        name: &'static str,
        storage: &'static str,
        numel: i64,
        offset: i64,
        size: Vec<i64>,
        stride: Vec<i64>,
    }

    /// A legacy file with a state dict over two f32 storages: `a` is a
    /// transposed (non-contiguous) view with an offset, `b` a plain vector,
    /// and `c` shares `b`'s storage.
    fn legacy_file() -> Vec<u8> {
        let tensors = [
            Fixture {
                name: "a",
                storage: "100",
                numel: 8,
                offset: 2,
                size: vec![3, 2],
                stride: vec![1, 3],
            },
            Fixture {
                name: "b",
                storage: "200",
                numel: 4,
                offset: 0,
                size: vec![4],
                stride: vec![1],
            },
            Fixture {
                name: "c",
                storage: "200",
                numel: 4,
                offset: 1,
                size: vec![2],
                stride: vec![2],
            },
        ];
        let first: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let second: Vec<f32> = (0..4).map(|i| 10.0 + i as f32).collect();
        build(&tensors, &[("100", &first), ("200", &second)])
    }

    /// A legacy file of f32 `tensors` over `storages` (key and elements,
    /// written in this order).
    fn build(tensors: &[Fixture], storages: &[(&str, &[f32])]) -> Vec<u8> {
        let mut out = vec![0x80, 2, 0x8a, 10];
        out.extend_from_slice(&MAGIC);
        out.push(b'.');
        out.extend(Pickle::new().op(b'M').op(0xe9).op(0x03).stop());
        out.extend(
            Pickle::new()
                .op(b'}')
                .op(b'(')
                .str("protocol_version")
                .int(1001)
                .str("little_endian")
                .op(0x88)
                .op(b'u')
                .stop(),
        );
        let mut state = Pickle::new()
            .global("collections", "OrderedDict")
            .op(b')')
            .op(b'R')
            .op(b'(');
        for t in tensors {
            state = state
                .str(t.name)
                .global("torch._utils", "_rebuild_tensor_v2")
                .op(b'(')
                .op(b'(')
                .str("storage")
                .global("torch", "FloatStorage")
                .str(t.storage)
                .str("cpu")
                .long(t.numel)
                .op(b'N')
                .op(b't')
                .op(b'Q')
                .long(t.offset)
                .ints(&t.size)
                .ints(&t.stride)
                .op(0x89)
                .global("collections", "OrderedDict")
                .op(b')')
                .op(b'R')
                .op(b't')
                .op(b'R');
        }
        out.extend(state.op(b'u').stop());
        let mut keys = Pickle::new().op(b']').op(b'(');
        for (key, _) in storages {
            keys = keys.str(key);
        }
        out.extend(keys.op(b'e').stop());
        for (_, values) in storages {
            out.extend_from_slice(&(values.len() as u64).to_le_bytes());
            for value in *values {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        out
    }

    /// A file whose one tensor `t` views a storage of `values` with the
    /// given offset, size and stride (the storage's declared length is
    /// `values.len()`).
    fn one_view(values: &[f32], offset: i64, size: &[i64], stride: &[i64]) -> Vec<u8> {
        let tensor = Fixture {
            name: "t",
            storage: "1",
            numel: values.len() as i64,
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        };
        build(&[tensor], &[("1", values)])
    }

    fn refusal(file: &[u8]) -> String {
        match parse_legacy_pth(file, Path::new("t.pth")) {
            Err(err @ MlError::BadModel { .. }) => err.to_string(),
            other => panic!("expected a BadModel error, got {other:?}"),
        }
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().and_then(|t| t.to_vec1()).expect("values")
    }

    #[test]
    fn reads_offsets_strides_and_shared_storages() {
        let tensors = parse_legacy_pth(&legacy_file(), Path::new("t.pth")).expect("parse");
        assert_eq!(tensors.len(), 3);
        let a = &tensors["a"];
        assert_eq!(a.dims(), &[3, 2]);
        // storage 0..8, offset 2, element (i, j) at 2 + i + 3j.
        assert_eq!(values(a), vec![2.0, 5.0, 3.0, 6.0, 4.0, 7.0]);
        assert_eq!(values(&tensors["b"]), vec![10.0, 11.0, 12.0, 13.0]);
        assert_eq!(values(&tensors["c"]), vec![11.0, 13.0]);
    }

    /// Every prefix of a valid file, and every single corrupted byte, is an
    /// error or a value, never a panic.
    #[test]
    fn truncated_or_corrupt_files_are_errors() {
        let good = legacy_file();
        for len in 0..good.len() {
            let err = parse_legacy_pth(&good[..len], Path::new("t.pth"))
                .expect_err("a truncated file must be refused");
            assert!(matches!(err, MlError::BadModel { .. }), "{err}");
        }
        for at in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] ^= flip;
                let _ = parse_legacy_pth(&bad, Path::new("t.pth"));
            }
        }
    }

    #[test]
    fn absurd_lengths_are_refused_before_allocating() {
        let good = legacy_file();
        // The first storage's element count, made huge.
        let storage_start = good.len() - (8 + 8 * 4) - (8 + 4 * 4);
        let mut bad = good.clone();
        bad[storage_start..storage_start + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = parse_legacy_pth(&bad, Path::new("t.pth")).expect_err("refused");
        assert!(err.to_string().contains("holds"), "{err}");

        // A string claiming 4 GB.
        let mut bad = good.clone();
        let key = bad
            .windows(5)
            .position(|w| w == b"X\x10\x00\x00\x00")
            .expect("the \"protocol_version\" string");
        bad[key + 1..key + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = parse_legacy_pth(&bad, Path::new("t.pth")).expect_err("refused");
        assert!(err.to_string().contains("past the end"), "{err}");
    }

    /// Sizes whose product, or whose furthest element, does not fit a
    /// `usize` are refused, not wrapped.
    #[test]
    fn overflowing_sizes_strides_and_offsets_are_refused() {
        let one = [1.0f32];
        let huge = 1i64 << 40;
        for (offset, size, stride) in [
            (0, vec![huge, huge], vec![1, 1]),
            (0, vec![huge, huge, 0], vec![0, 0, 0]),
            (0, vec![0, huge, huge], vec![1, 1, 1]),
            (0, vec![3], vec![i64::MAX]),
            (0, vec![2, 2], vec![i64::MAX / 2 + 1, 1]),
            (i64::MAX, vec![2], vec![1]),
            (i64::MAX, vec![1], vec![0]),
            (1, vec![2], vec![i64::MAX]),
        ] {
            let why = refusal(&one_view(&one, offset, &size, &stride));
            assert!(
                why.contains("too many elements") || why.contains("reach past"),
                "offset {offset}, size {size:?}, stride {stride:?}: {why}"
            );
        }
        // Negative sizes, strides and offsets are no usize at all.
        for (offset, size, stride) in [(-1, vec![1], vec![1]), (0, vec![-1], vec![1])] {
            refusal(&one_view(&one, offset, &size, &stride));
        }
        let why = refusal(&one_view(&one, 0, &[1], &[-1]));
        assert!(why.contains("bad stride"), "{why}");
    }

    /// The file's integers are at most `i64::MAX`; the checks hold for any
    /// `usize` all the same.
    #[test]
    fn extremes_of_usize_are_refused() {
        let storage = [0u8; 4];
        let view = |offset, size: &[usize], stride: &[usize], window| TensorRef {
            name: "t".into(),
            storage: StorageRef {
                key: "1".into(),
                kind: StorageKind::F32,
                numel: 1,
                view: window,
            },
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        };
        let max = usize::MAX;
        for tensor in [
            view(0, &[2], &[max], None),
            view(0, &[max, 2], &[0, 0], None),
            view(0, &[2, 2], &[max / 2 + 1, 1], None),
            view(max, &[1], &[0], None),
            view(1, &[1], &[0], Some((max, 1))),
            view(max, &[0], &[1], Some((1, 0))),
            view(0, &[max / 4 + 1], &[0], None),
            view(0, &[max], &[0], None),
        ] {
            let mut budget = max;
            let err = materialise(&tensor, &storage, &mut budget)
                .expect_err("refused before reading or allocating");
            assert!(
                err.contains("too many elements") || err.contains("reach past"),
                "{tensor:?}: {err}"
            );
        }
    }

    /// `expand`ed tensors have zero strides and repeat one element; they
    /// still read, but a few bytes of pickle cannot claim terabytes.
    #[test]
    fn zero_strides_repeat_elements_within_limits() {
        let tensors = parse_legacy_pth(&one_view(&[7.0], 0, &[3], &[0]), Path::new("t.pth"))
            .expect("an expanded scalar");
        assert_eq!(tensors["t"].dims(), &[3]);
        assert_eq!(values(&tensors["t"]), vec![7.0; 3]);
        let tensors = parse_legacy_pth(
            &one_view(&[1.0, 2.0, 3.0], 0, &[2, 3], &[0, 1]),
            Path::new("t.pth"),
        )
        .expect("an expanded row");
        assert_eq!(values(&tensors["t"]), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);

        for size in [
            vec![1i64 << 62],
            vec![1 << 61],
            vec![1 << 40],
            vec![1 << 31, 1 << 31],
            vec![1 << 20, 1 << 20, 1 << 20],
        ] {
            let stride = vec![0; size.len()];
            let why = refusal(&one_view(&[1.0], 0, &size, &stride));
            assert!(
                why.contains("too many elements") || why.contains("more than"),
                "size {size:?}: {why}"
            );
        }
    }

    #[test]
    fn memo_bombs_and_deep_nesting_are_refused() {
        // Each level doubles the previous via the memo: 2^40 objects.
        let mut bomb = Pickle::new().op(b']').op(b'q').op(0);
        for _ in 0..40 {
            bomb = bomb.op(b'h').op(0).op(b'h').op(0).op(0x86).op(b'q').op(0);
        }
        let err = scan_pickle(&bomb.stop(), 0).expect_err("bomb");
        assert!(err.contains("objects built"), "{err}");

        let mut deep = Pickle::new().op(b')');
        for _ in 0..1000 {
            deep = deep.op(0x85);
        }
        let err = scan_pickle(&deep.stop(), 0).expect_err("deep");
        assert!(err.contains("nesting"), "{err}");
    }

    #[test]
    fn zip_checkpoints_and_other_files_are_named() {
        let err = parse_legacy_pth(b"PK\x03\x04rest", Path::new("t.pth")).expect_err("zip");
        assert!(err.to_string().contains("zip format"), "{err}");
        let err = parse_legacy_pth(b"hello", Path::new("t.pth")).expect_err("text");
        assert!(err.to_string().contains("magic"), "{err}");
    }

    /// Tensors written by PyTorch itself, when the PyTorch venv is there
    /// (`hearth_testdata::torch_python`: under CI it must be; the fixture is
    /// generated, never committed): dtypes, views with
    /// offsets, transposes, shared storages and parameters.
    #[test]
    fn reads_what_torch_writes() {
        let Some(python) = hearth_testdata::torch_python() else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("fixture.pth");
        let script = r#"
import sys, json, torch
torch.manual_seed(0)
base = torch.randn(6, 5)
sd = {
    "plain": torch.randn(3, 4),
    "transposed": base.t(),
    "sliced": base[1:5, 2:4],
    "strided": base[::2, ::3],
    "double": torch.randn(2, 3, dtype=torch.float64),
    "half": torch.randn(4, dtype=torch.float16),
    "bf16": torch.randn(2, 2, dtype=torch.bfloat16),
    "count": torch.tensor(7),
    "ints": torch.arange(5, dtype=torch.int32),
    "param": torch.nn.Parameter(torch.randn(2, 2)),
    "conv": torch.randn(4, 3, 3, 2).permute(0, 3, 1, 2),
    "empty": torch.zeros(0, 3),
}
torch.save(sd, sys.argv[1], _use_new_zipfile_serialization=False)
print(json.dumps({k: [list(v.shape), v.detach().double().flatten().tolist()] for k, v in sd.items()}))
"#;
        let out = std::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(&file)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected: HashMap<String, (Vec<usize>, Vec<f64>)> =
            serde_json::from_slice(&out.stdout).expect("json");
        let tensors = load_legacy_pth(&file).expect("load");
        assert_eq!(tensors.len(), expected.len());
        for (name, (shape, values)) in &expected {
            let t = &tensors[name];
            assert_eq!(t.dims(), shape.as_slice(), "{name}");
            let got: Vec<f64> = t
                .to_dtype(DType::F64)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("values");
            assert_eq!(got.len(), values.len(), "{name}");
            for (g, v) in got.iter().zip(values) {
                assert!(
                    (g - v).abs() <= 1e-6 * v.abs().max(1.0),
                    "{name}: {g} vs {v}"
                );
            }
        }
        assert_eq!(tensors["count"].dtype(), DType::I64);
        assert_eq!(tensors["plain"].dtype(), DType::F32);
    }
}
