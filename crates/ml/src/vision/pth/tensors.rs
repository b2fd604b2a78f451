//! From the unpickled state dict to tensors: the references each entry
//! makes (storage key and type, offset, shape, strides), and the checked
//! copy of a tensor's elements out of its storage.
//!
//! Apart from the container reader because all of the format's arithmetic
//! on untrusted sizes and strides lives here.

use candle_core::pickle::Object;
use candle_core::{DType, Device, Tensor};

/// What a persistent id says about a tensor's storage.
#[derive(Debug, Clone)]
pub(super) struct StorageRef {
    pub(super) key: String,
    pub(super) kind: StorageKind,
    /// Elements in the whole (root) storage.
    pub(super) numel: usize,
    /// `(offset, len)` of a view into the root storage, in elements.
    pub(super) view: Option<(usize, usize)>,
}

/// One tensor of the state dict, before its data is read.
#[derive(Debug, Clone)]
pub(super) struct TensorRef {
    pub(super) name: String,
    pub(super) storage: StorageRef,
    pub(super) offset: usize,
    pub(super) size: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

/// Storage element types and what they become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StorageKind {
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
    pub(super) fn from_class(module: &str, class: &str) -> std::result::Result<Self, String> {
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

    pub(super) fn element_size(self) -> usize {
        match self {
            StorageKind::F64 | StorageKind::I64 => 8,
            StorageKind::F32 | StorageKind::I32 => 4,
            StorageKind::F16 | StorageKind::BF16 | StorageKind::I16 => 2,
            StorageKind::I8 | StorageKind::U8 | StorageKind::Bool => 1,
        }
    }
}

/// The tensors of a state dict (entries that are not tensors are skipped).
pub(super) fn tensor_refs(state: Object) -> std::result::Result<Vec<TensorRef>, String> {
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

pub(super) fn tensor_ref(
    name: &str,
    value: Object,
) -> std::result::Result<Option<TensorRef>, String> {
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
pub(super) fn storage_ref(id: Object) -> std::result::Result<StorageRef, String> {
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

pub(super) fn non_negative(object: Object) -> Option<usize> {
    match object {
        Object::Int(v) => usize::try_from(v).ok(),
        Object::Long(v) => usize::try_from(v).ok(),
        _ => None,
    }
}

pub(super) fn usizes(object: Object) -> Option<Vec<usize>> {
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
pub(super) fn materialise(
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
