//! Decoding `.txt` and `.md` files: UTF-8 (with or without a byte-order
//! mark) and UTF-16 in either byte order when a byte-order mark says so.

use super::problem::FileProblem;

/// Decodes a text file's bytes, or says exactly why they are not text.
pub(crate) fn decode_text(bytes: &[u8]) -> Result<String, FileProblem> {
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest, 3),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => utf8(bytes, 0),
    }
}

fn utf8(bytes: &[u8], bom_len: usize) -> Result<String, FileProblem> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|e| FileProblem::InvalidUtf8 {
            offset: bom_len + e.valid_up_to(),
        })
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, FileProblem> {
    if !bytes.len().is_multiple_of(2) {
        return Err(FileProblem::InvalidUtf16("odd number of bytes"));
    }
    let units = bytes.chunks_exact(2).map(|pair| unit([pair[0], pair[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| FileProblem::InvalidUtf16("unpaired surrogate"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_bom(bom: &[u8], body: impl IntoIterator<Item = u8>) -> Vec<u8> {
        bom.iter().copied().chain(body).collect()
    }

    proptest! {
        #[test]
        fn every_encoding_round_trips(text in any::<String>()) {
            prop_assert_eq!(decode_text(text.as_bytes()).ok(), Some(text.clone()));
            prop_assert_eq!(decode_text(&with_bom(&[0xEF, 0xBB, 0xBF], text.bytes())).ok(), Some(text.clone()));
            let le = with_bom(&[0xFF, 0xFE], text.encode_utf16().flat_map(u16::to_le_bytes));
            prop_assert_eq!(decode_text(&le).ok(), Some(text.clone()));
            let be = with_bom(&[0xFE, 0xFF], text.encode_utf16().flat_map(u16::to_be_bytes));
            prop_assert_eq!(decode_text(&be).ok(), Some(text));
        }

        #[test]
        fn invalid_utf8_reports_the_first_bad_byte(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let starts_with_bom = bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF])
                || bytes.starts_with(&[0xEF, 0xBB, 0xBF]);
            prop_assume!(!starts_with_bom);
            match std::str::from_utf8(&bytes) {
                Ok(s) => prop_assert_eq!(decode_text(&bytes).ok(), Some(s.to_owned())),
                Err(e) => {
                    let reported = match decode_text(&bytes) {
                        Err(FileProblem::InvalidUtf8 { offset }) => Some(offset),
                        _ => None,
                    };
                    prop_assert_eq!(reported, Some(e.valid_up_to()));
                }
            }
        }
    }

    #[test]
    fn broken_utf16_is_reported() {
        assert!(matches!(
            decode_text(&[0xFF, 0xFE, 0x41]),
            Err(FileProblem::InvalidUtf16(_))
        ));
        // A lone high surrogate, little-endian.
        assert!(matches!(
            decode_text(&[0xFF, 0xFE, 0x00, 0xD8]),
            Err(FileProblem::InvalidUtf16(_))
        ));
        assert!(matches!(
            decode_text(b"caf\xe9"),
            Err(FileProblem::InvalidUtf8 { offset: 3 })
        ));
    }
}
