//! Canonical JSON (SIG-02, SIG-03): the byte form every signature covers.
//!
//! The input is a `serde_json::Value` parsed from the JSON *as received*
//! (SIG-07), so fields newt does not know stay in the signed bytes.

use serde_json::Value;
use std::fmt::Write;

/// Largest integer canonical JSON allows (SIG-03): 2^53 - 1.
const MAX_SAFE_INTEGER: i128 = (1 << 53) - 1;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalJsonError {
    /// A number outside `[-(2^53)+1, 2^53-1]` (SIG-03).
    #[error("integer out of the canonical JSON range")]
    IntegerOutOfRange,
    /// A number with a fractional part (SIG-03 forbids floats).
    #[error("canonical JSON does not allow fractional numbers")]
    Fraction,
}

/// Encodes `value` as canonical JSON: keys sorted by code point, no
/// insignificant whitespace, raw UTF-8, only mandatory escapes.
pub fn to_canonical_json(value: &Value) -> Result<String, CanonicalJsonError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalJsonError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            // serde_json's Map is a BTreeMap without `preserve_order`, but
            // sorting here keeps the encoder correct whatever the feature set.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_number(out: &mut String, n: &serde_json::Number) -> Result<(), CanonicalJsonError> {
    let int: i128 = if let Some(i) = n.as_i64() {
        i128::from(i)
    } else if let Some(u) = n.as_u64() {
        i128::from(u)
    } else {
        // Inputs such as `1e10` parse as floats; canonical form is the
        // integer they denote, if they denote one (spec example).
        let f = n.as_f64().unwrap_or(f64::NAN);
        if !f.is_finite() || f.fract() != 0.0 {
            return Err(CanonicalJsonError::Fraction);
        }
        if f.abs() > MAX_SAFE_INTEGER as f64 {
            return Err(CanonicalJsonError::IntegerOutOfRange);
        }
        f as i128
    };
    if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&int) {
        return Err(CanonicalJsonError::IntegerOutOfRange);
    }
    // `-0` is written as `0` (SIG-03).
    let _ = write!(out, "{int}");
    Ok(())
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(input: &str) -> String {
        let value: Value = serde_json::from_str(input).unwrap();
        to_canonical_json(&value).unwrap()
    }

    /// SIG-02/SIG-03: the spec appendix's canonical JSON examples.
    #[test]
    fn spec_appendix_examples() {
        assert_eq!(canon("{}"), "{}");
        assert_eq!(
            canon(r#"{"one": 1, "two": "Two"}"#),
            r#"{"one":1,"two":"Two"}"#
        );
        assert_eq!(canon(r#"{"b": "2", "a": "1"}"#), r#"{"a":"1","b":"2"}"#);
        assert_eq!(canon(r#"{"b":"2","a":"1"}"#), r#"{"a":"1","b":"2"}"#);
        assert_eq!(
            canon(
                r#"{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, {"medium": "msisdn", "address": "123456789"}]}}}"#
            ),
            r#"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#
        );
        assert_eq!(canon(r#"{"a": "日本語"}"#), r#"{"a":"日本語"}"#);
        assert_eq!(canon(r#"{"本": 2, "日": 1}"#), r#"{"日":1,"本":2}"#);
        assert_eq!(canon(r#"{"a": "\u65E5"}"#), r#"{"a":"日"}"#);
        assert_eq!(canon(r#"{"a": null}"#), r#"{"a":null}"#);
        assert_eq!(
            canon(r#"{"a": -0, "b": 1e10}"#),
            r#"{"a":0,"b":10000000000}"#
        );
    }

    #[test]
    fn control_characters_use_mandatory_escapes() {
        assert_eq!(canon(r#"["\u0001\n\"\\/"]"#), "[\"\\u0001\\n\\\"\\\\/\"]");
    }

    /// SIG-03: floats and out-of-range integers have no canonical form.
    #[test]
    fn rejects_fractions_and_big_integers() {
        let frac: Value = serde_json::from_str(r#"{"a": 1.5}"#).unwrap();
        assert_eq!(to_canonical_json(&frac), Err(CanonicalJsonError::Fraction));
        let big: Value = serde_json::from_str(r#"{"a": 9007199254740992}"#).unwrap();
        assert_eq!(
            to_canonical_json(&big),
            Err(CanonicalJsonError::IntegerOutOfRange)
        );
        let ok: Value = serde_json::from_str(r#"[9007199254740991, -9007199254740991]"#).unwrap();
        assert_eq!(
            to_canonical_json(&ok).unwrap(),
            "[9007199254740991,-9007199254740991]"
        );
    }
}
