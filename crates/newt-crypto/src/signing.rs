//! Signing and verifying JSON objects (SIG-01, SIG-04, SIG-05, SIG-07).

use crate::canonical::{CanonicalJsonError, to_canonical_json};
use serde_json::{Map, Value};
use vodozemac::{Ed25519PublicKey, Ed25519Signature};

/// Why a signature check failed. Every variant means "do not trust".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signed value is not a JSON object.
    #[error("signed value is not a JSON object")]
    NotAnObject,
    /// SIG-04 step 1: no `signatures` entry for the entity.
    #[error("no signatures from {0}")]
    NoSignaturesFromEntity(String),
    /// SIG-04 steps 2-3: no signature under the key ID we can check.
    #[error("no signature with key {0}")]
    NoSignatureForKey(String),
    /// SIG-04 step 4: the signature is not valid base64 or has a bad length.
    #[error("signature is not valid base64 Ed25519")]
    MalformedSignature,
    /// SIG-04 step 6: the object has no canonical form.
    #[error("object is not canonical JSON: {0}")]
    Canonical(#[from] CanonicalJsonError),
    /// SIG-04 step 7: the signature does not verify.
    #[error("signature does not verify")]
    Invalid,
}

/// The bytes a signature covers: canonical JSON without `signatures` and
/// `unsigned` (SIG-01, SIG-04 steps 5-6).
pub fn signable_bytes(object: &Map<String, Value>) -> Result<String, CanonicalJsonError> {
    let mut stripped = object.clone();
    stripped.remove("signatures");
    stripped.remove("unsigned");
    to_canonical_json(&Value::Object(stripped))
}

/// Signs `object` in place (SIG-01): the unpadded base64 signature lands at
/// `signatures.<entity>.<key_id>`; other signatures and `unsigned` stay.
pub fn sign_json(
    object: &mut Map<String, Value>,
    entity: &str,
    key_id: &str,
    sign: impl FnOnce(&[u8]) -> Ed25519Signature,
) -> Result<(), CanonicalJsonError> {
    let bytes = signable_bytes(object)?;
    let signature = sign(bytes.as_bytes()).to_base64();
    let signatures = object
        .entry("signatures")
        .or_insert_with(|| Value::Object(Map::new()));
    if !signatures.is_object() {
        *signatures = Value::Object(Map::new());
    }
    if let Value::Object(by_entity) = signatures {
        let entry = by_entity
            .entry(entity.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(keys) = entry {
            keys.insert(key_id.to_owned(), Value::String(signature));
        }
    }
    Ok(())
}

/// Parses an Ed25519 public key from base64, padded or not (SIG-05).
/// vodozemac 0.11's own parser panics on 44 unpadded characters, text a
/// server or peer controls, so every key from outside comes through here.
pub fn parse_ed25519_key(text: &str) -> Option<Ed25519PublicKey> {
    let bytes = crate::b64::decode_array::<32>(text)?;
    Ed25519PublicKey::from_slice(&bytes).ok()
}

/// Checks the signature by `entity` with `key_id` (an `ed25519:` key ID)
/// over `value` as received, following the SIG-04 procedure.
pub fn verify_json(
    value: &Value,
    entity: &str,
    key_id: &str,
    key: &Ed25519PublicKey,
) -> Result<(), SignatureError> {
    let object = value.as_object().ok_or(SignatureError::NotAnObject)?;
    let by_entity = object
        .get("signatures")
        .and_then(|s| s.get(entity))
        .and_then(Value::as_object)
        .ok_or_else(|| SignatureError::NoSignaturesFromEntity(entity.to_owned()))?;
    // Only Ed25519 keys can be checked; any other algorithm is unknown.
    if !key_id.starts_with("ed25519:") {
        return Err(SignatureError::NoSignatureForKey(key_id.to_owned()));
    }
    let encoded = by_entity
        .get(key_id)
        .and_then(Value::as_str)
        .ok_or_else(|| SignatureError::NoSignatureForKey(key_id.to_owned()))?;
    // SIG-05: accept padded and unpadded base64.
    let signature = crate::b64::decode(encoded)
        .ok()
        .and_then(|bytes| Ed25519Signature::from_slice(&bytes).ok())
        .ok_or(SignatureError::MalformedSignature)?;
    let bytes = signable_bytes(object)?;
    key.verify(bytes.as_bytes(), &signature)
        .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vodozemac::Ed25519SecretKey;

    /// The spec appendix's signing key (seed, unpadded base64).
    fn spec_key() -> Ed25519SecretKey {
        let seed = crate::b64::decode("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
        let seed: [u8; 32] = seed.try_into().unwrap();
        Ed25519SecretKey::from_slice(&seed)
    }

    fn sign_with_spec_key(value: Value) -> Value {
        let key = spec_key();
        let Value::Object(mut map) = value else {
            unreachable!()
        };
        sign_json(&mut map, "domain", "ed25519:1", |m| key.sign(m)).unwrap();
        Value::Object(map)
    }

    /// SIG-01: the spec's two known-answer signing vectors.
    #[test]
    fn spec_signing_vectors() {
        let empty = sign_with_spec_key(json!({}));
        assert_eq!(
            empty,
            json!({"signatures": {"domain": {"ed25519:1":
                "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}})
        );
        let data = sign_with_spec_key(json!({"one": 1, "two": "Two"}));
        assert_eq!(
            data["signatures"]["domain"]["ed25519:1"],
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        );
        let public = spec_key().public_key();
        verify_json(&data, "domain", "ed25519:1", &public).unwrap();
        verify_json(&empty, "domain", "ed25519:1", &public).unwrap();
    }

    /// SIG-01: `unsigned` is not covered and survives signing.
    #[test]
    fn unsigned_is_kept_and_not_covered() {
        let signed = sign_with_spec_key(json!({"one": 1, "unsigned": {"age": 3}}));
        assert_eq!(signed["unsigned"]["age"], 3);
        let mut changed = signed.clone();
        changed["unsigned"]["age"] = json!(4);
        verify_json(&changed, "domain", "ed25519:1", &spec_key().public_key()).unwrap();
    }

    /// SIG-07: a field newt does not know stays in the signed bytes.
    #[test]
    fn tampering_with_any_field_breaks_the_signature() {
        let signed = sign_with_spec_key(json!({"one": 1, "org.example.future": [1, 2]}));
        let public = spec_key().public_key();
        let mut tampered = signed.clone();
        tampered["org.example.future"] = json!([1, 3]);
        assert_eq!(
            verify_json(&tampered, "domain", "ed25519:1", &public),
            Err(SignatureError::Invalid)
        );
        let mut added = signed;
        added["extra"] = json!(true);
        assert_eq!(
            verify_json(&added, "domain", "ed25519:1", &public),
            Err(SignatureError::Invalid)
        );
    }

    /// SIG-04 steps 1-4 each fail the check.
    #[test]
    fn sig04_missing_pieces_fail() {
        let public = spec_key().public_key();
        let signed = sign_with_spec_key(json!({"a": 1}));
        assert!(matches!(
            verify_json(&signed, "other", "ed25519:1", &public),
            Err(SignatureError::NoSignaturesFromEntity(_))
        ));
        assert!(matches!(
            verify_json(&signed, "domain", "ed25519:2", &public),
            Err(SignatureError::NoSignatureForKey(_))
        ));
        assert!(matches!(
            verify_json(&signed, "domain", "curve25519:1", &public),
            Err(SignatureError::NoSignatureForKey(_))
        ));
        let mut garbled = signed;
        garbled["signatures"]["domain"]["ed25519:1"] = json!("not base64!");
        assert_eq!(
            verify_json(&garbled, "domain", "ed25519:1", &public),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            verify_json(&json!([1]), "domain", "ed25519:1", &public),
            Err(SignatureError::NotAnObject)
        );
    }

    /// SIG-05: padded base64 signatures are accepted too.
    #[test]
    fn padded_signature_is_accepted() {
        let mut signed = sign_with_spec_key(json!({"a": 1}));
        let sig = signed["signatures"]["domain"]["ed25519:1"]
            .as_str()
            .unwrap()
            .to_owned();
        signed["signatures"]["domain"]["ed25519:1"] = json!(format!("{sig}=="));
        verify_json(&signed, "domain", "ed25519:1", &spec_key().public_key()).unwrap();
    }

    /// The spec's `keys.yaml` examples carry invalid signatures (checklist
    /// §2.1): they must fail as negative tests.
    #[test]
    fn spec_api_examples_fail_verification() {
        let device: Value =
            serde_json::from_str(include_str!("../tests/data/spec_device_keys_example.json"))
                .unwrap();
        let ed = parse_ed25519_key(device["keys"]["ed25519:JLAFKJWSCS"].as_str().unwrap()).unwrap();
        assert_eq!(
            verify_json(&device, "@alice:example.com", "ed25519:JLAFKJWSCS", &ed),
            Err(SignatureError::Invalid)
        );
        let otks: Value = serde_json::from_str(include_str!(
            "../tests/data/spec_one_time_keys_example.json"
        ))
        .unwrap();
        for (_id, key) in otks.as_object().unwrap() {
            assert_eq!(
                verify_json(key, "@alice:example.com", "ed25519:JLAFKJWSCS", &ed),
                Err(SignatureError::Invalid)
            );
        }
    }
}
