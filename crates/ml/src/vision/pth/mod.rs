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
//!
//! Split by concern: this file reads the container (magic number, protocol,
//! the pickles in order, the storages after them); `scan` is the
//! pre-flight walk over a pickle's opcodes; `tensors` turns the unpickled
//! state dict into tensor references and copies each tensor out of its
//! storage.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use candle_core::pickle::{Object, Stack};

use self::scan::scan_pickle;
use self::tensors::{StorageKind, materialise, tensor_refs};
use crate::error::{MlError, Result};

mod scan;
mod tensors;
#[cfg(test)]
mod tests;

/// The magic number's 10 little-endian bytes, as `LONG1` pickles them.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The only protocol version the legacy format ever had.
const PROTOCOL_VERSION: i64 = 1001;

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
