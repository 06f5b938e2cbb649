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
    LENIENT.encode(input)
}

/// Appends `input` as unpadded standard base64 to `out`.
pub fn encode_into(out: &mut String, input: impl AsRef<[u8]>) {
    LENIENT.encode_string(input, out);
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
}
