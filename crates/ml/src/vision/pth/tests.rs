//! Tests of the legacy reader: hand-written pickles for every refusal, and
//! (where Python with torch is at hand) files written by `torch.save`.

use candle_core::DType;

use super::scan::scan_pickle;
use super::tensors::{StorageKind, StorageRef, TensorRef, materialise};
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
