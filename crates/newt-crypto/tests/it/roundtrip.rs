//! Property tests: every encode/decode pair round-trips.

use newt_crypto::canonical::to_canonical_json;
use newt_crypto::signing::{sign_json, verify_json};
use newt_crypto::{b64, key_export};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// JSON values canonical JSON can express (integers in range, no floats).
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// SIG-02: canonical JSON parses back to the same value and is a fixed
    /// point.
    #[test]
    fn canonical_json_round_trips(value in json()) {
        let text = to_canonical_json(&value).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&parsed, &value);
        prop_assert_eq!(to_canonical_json(&parsed).unwrap(), text);
    }

    /// SIG-05: unpadded base64 round-trips, and padded input decodes too.
    #[test]
    fn base64_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let encoded = b64::encode(&bytes);
        prop_assert!(!encoded.ends_with('='));
        prop_assert_eq!(b64::decode(&encoded).unwrap(), bytes.clone());
        let padding = (4 - encoded.len() % 4) % 4;
        let padded = format!("{encoded}{}", "=".repeat(padding));
        prop_assert_eq!(b64::decode(&padded).unwrap(), bytes);
    }

    /// EXP-02: key files round-trip for any content and passphrase.
    #[test]
    fn key_export_round_trips(plain in prop::collection::vec(any::<u8>(), 0..300), pass in ".{1,20}") {
        let file = key_export::encrypt(&plain, &pass, 1).unwrap();
        let back = key_export::decrypt(&file, &pass).unwrap();
        prop_assert_eq!(back.as_slice(), plain.as_slice());
    }

    /// SIG-01, SIG-04: any object, signed, verifies; a changed value does
    /// not.
    #[test]
    fn signatures_round_trip(fields in prop::collection::btree_map("[a-z]{1,6}", json(), 1..6)) {
        let account = newt_crypto::vodozemac::olm::Account::new();
        let mut object: Map<String, Value> = fields.into_iter().filter(|(k, _)| k != "signatures" && k != "unsigned").collect();
        prop_assume!(!object.is_empty());
        sign_json(&mut object, "@p:example.org", "ed25519:D", |m| account.sign(m)).unwrap();
        let signed = Value::Object(object.clone());
        prop_assert!(verify_json(&signed, "@p:example.org", "ed25519:D", &account.ed25519_key()).is_ok());
        let key = object.keys().find(|k| *k != "signatures").cloned().unwrap();
        object.insert(key, Value::String("changed!".into()));
        let changed = Value::Object(object);
        if changed != signed {
            prop_assert!(verify_json(&changed, "@p:example.org", "ed25519:D", &account.ed25519_key()).is_err());
        }
    }
}
