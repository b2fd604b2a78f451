//! The pre-flight scan of a pickle: its opcodes walked as candle's
//! [`candle_core::pickle::Stack`] would run them, tracking only sizes, so
//! that lengths, nesting and memo copies are bounded before candle sees
//! untrusted bytes.
//!
//! Its own module because it is the safety boundary of the format, and
//! reads best without the container and tensor code around it.

use std::collections::HashMap;

/// Deepest nesting a pickle may build (a state dict needs about 6).
const MAX_DEPTH: u32 = 64;

/// Most objects a pickle may create or copy through its memo (a state dict
/// needs about 30 per tensor); bounds memory against "billion laughs" memo
/// tricks.
const MAX_WORK: u64 = 1 << 23;

/// The shape of an object on the scanned pickle's stack: how many objects it
/// holds and how deeply they nest.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    size: u64,
    depth: u32,
    mark: bool,
}

pub(super) const LEAF: Node = Node {
    size: 1,
    depth: 1,
    mark: false,
};

/// Walks the opcodes of the pickle starting at `start` as candle's
/// [`Stack`](candle_core::pickle::Stack) would run them, tracking only
/// sizes; returns the offset just past its `STOP`.
pub(super) fn scan_pickle(bytes: &[u8], start: usize) -> std::result::Result<usize, String> {
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
