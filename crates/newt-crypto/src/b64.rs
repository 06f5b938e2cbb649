//! Unpadded base64 (SIG-05): emit unpadded standard base64; accept input
//! with or without padding, and with non-zero trailing bits as other
//! implementations produce (the spec's own signing seed has them).

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes standard base64 with or without padding.
pub fn decode(input: &str) -> Result<Vec<u8>, base64::DecodeError> {
    LENIENT.decode(input)
}

/// Encodes as unpadded standard base64.
pub fn encode(input: impl AsRef<[u8]>) -> String {
    base64_simd::STANDARD_NO_PAD.encode_type(input)
}

/// Decodes exactly `N` bytes, padded or not; any other length is `None`.
pub fn decode_array<const N: usize>(input: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    match LENIENT.decode_slice(input, &mut out) {
        Ok(len) if len == N => Some(out),
        _ => None,
    }
}

/// The length of `len` bytes as unpadded standard base64.
pub fn encoded_len(len: usize) -> usize {
    len.div_ceil(3) * 4 - (3 - len % 3) % 3
}

/// Writes `input` as unpadded standard base64 into `out`, which must be
/// exactly [`encoded_len`] bytes; `None` if it is not.
pub fn encode_to_slice(input: &[u8], out: &mut [u8]) -> Option<()> {
    if out.len() != encoded_len(input.len()) {
        return None;
    }
    let written = base64_simd::STANDARD_NO_PAD.encode(input, base64_simd::Out::from_slice(out));
    (written.len() == encoded_len(input.len())).then_some(())
}

/// Appends `input` as unpadded standard base64 to `out`.
pub fn encode_into(out: &mut String, input: impl AsRef<[u8]>) {
    // SIMD where the CPU has it: a to-device body is kilobytes of base64.
    base64_simd::STANDARD_NO_PAD.encode_append(input, out);
}

#[cfg(test)]
mod tests {
    /// The spec appendix's unpadded base64 examples (SIG-05).
    #[test]
    fn spec_examples_round_trip() {
        let cases = [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(super::encode(plain), encoded);
            assert_eq!(super::decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(super::decode("Zg==").unwrap(), b"f");
    }

    /// Lengths agree with the encoder for every remainder; a slice of
    /// another length is refused, not overrun.
    #[test]
    fn encoding_into_a_slice_takes_exactly_its_length() {
        for len in 0..10 {
            let input: Vec<u8> = (0..len as u8).collect();
            let expected = super::encode(&input);
            assert_eq!(super::encoded_len(len), expected.len(), "{len}");
            let mut out = vec![0u8; expected.len()];
            assert!(super::encode_to_slice(&input, &mut out).is_some());
            assert_eq!(out, expected.as_bytes());
            assert!(super::encode_to_slice(&input, &mut vec![0u8; expected.len() + 1]).is_none());
        }
    }

    /// Exactly `N` bytes decode; shorter and longer input is refused.
    #[test]
    fn decode_array_takes_exactly_n_bytes() {
        let key = [7u8; 32];
        let text = super::encode(key);
        assert_eq!(text.len(), 43);
        assert_eq!(super::decode_array::<32>(&text), Some(key));
        assert_eq!(super::decode_array::<32>(&format!("{text}=")), Some(key));
        // 44 unpadded characters hold 33 bytes.
        assert_eq!(super::decode_array::<32>(&format!("{text}A")), None);
        assert_eq!(super::decode_array::<32>(&text[..42]), None);
        assert_eq!(super::decode_array::<32>(""), None);
        assert_eq!(super::decode_array::<32>("not base64!"), None);
    }
}
