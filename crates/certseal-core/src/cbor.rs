//! RFC 8949 §4.2.1 core deterministic CBOR for the signed formats: map keys sorted by their
//! encoded bytes, shortest integer and length forms, definite lengths. Decoding re-encodes and
//! refuses any other form, so a signed value has exactly one byte representation.

use ciborium::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Deepest nesting accepted when decoding outside bytes.
const MAX_DEPTH: usize = 32;

/// Sorts every map, recursively, into deterministic order.
pub fn canonicalize(v: Value) -> Value {
    match v {
        Value::Map(pairs) => {
            let mut pairs: Vec<(Value, Value)> = pairs
                .into_iter()
                .map(|(k, v)| (canonicalize(k), canonicalize(v)))
                .collect();
            pairs.sort_by_cached_key(|(k, _)| encode_value(k));
            Value::Map(pairs)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonicalize).collect()),
        Value::Tag(t, inner) => Value::Tag(t, Box::new(canonicalize(*inner))),
        other => other,
    }
}

/// Encodes a value as it is (call [`canonicalize`] first for deterministic bytes).
pub fn encode_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("CBOR values encode into a Vec");
    out
}

/// The deterministic encoding of a serialisable value.
pub fn to_canonical<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let v = Value::serialized(value).map_err(|e| e.to_string())?;
    Ok(encode_value(&canonicalize(v)))
}

/// Decodes `bytes`, refusing anything but one complete value in deterministic encoding.
pub fn decode_canonical(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = bytes;
    let v: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH)
        .map_err(|e| format!("not CBOR: {e}"))?;
    if !reader.is_empty() {
        return Err("trailing bytes after the CBOR value".into());
    }
    if has_float(&v) {
        return Err("floating-point values are not allowed".into());
    }
    if has_duplicate_key(&v) {
        return Err("a map has the same key twice".into());
    }
    if encode_value(&canonicalize(v.clone())) != bytes {
        return Err("not in deterministic encoding (RFC 8949 §4.2.1)".into());
    }
    Ok(v)
}

/// Decodes deterministic CBOR into `T`.
pub fn from_canonical<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode_canonical(bytes)?
        .deserialized()
        .map_err(|e| format!("unexpected content: {e}"))
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Float(_) => true,
        Value::Array(a) => a.iter().any(has_float),
        Value::Map(m) => m.iter().any(|(k, v)| has_float(k) || has_float(v)),
        Value::Tag(_, inner) => has_float(inner),
        _ => false,
    }
}

fn has_duplicate_key(v: &Value) -> bool {
    match v {
        Value::Map(m) => {
            let mut keys: Vec<Vec<u8>> = m.iter().map(|(k, _)| encode_value(k)).collect();
            keys.sort();
            keys.windows(2).any(|w| w[0] == w[1])
                || m.iter()
                    .any(|(k, v)| has_duplicate_key(k) || has_duplicate_key(v))
        }
        Value::Array(a) => a.iter().any(has_duplicate_key),
        Value::Tag(_, inner) => has_duplicate_key(inner),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_sort_by_encoded_key_and_other_forms_are_refused() {
        let v = Value::Map(vec![
            (Value::Text("bb".into()), Value::Integer(1.into())),
            (Value::Text("a".into()), Value::Integer(300.into())),
            (Value::Integer(10.into()), Value::Bool(true)),
        ]);
        let bytes = encode_value(&canonicalize(v));
        // 10 (0x0a) < "a" (0x61 0x61) < "bb" (0x62 …): shorter and smaller encodings first.
        assert_eq!(
            bytes,
            [
                0xa3, 0x0a, 0xf5, 0x61, b'a', 0x19, 0x01, 0x2c, 0x62, b'b', b'b', 0x01
            ]
        );
        assert!(decode_canonical(&bytes).is_ok());
        // Unsorted keys.
        assert!(decode_canonical(&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02]).is_err());
        // 1 written in two bytes.
        assert!(decode_canonical(&[0x18, 0x01]).is_err());
        // Indefinite-length array.
        assert!(decode_canonical(&[0x9f, 0x01, 0xff]).is_err());
        // The same key twice, even in order.
        assert!(decode_canonical(&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02]).is_err());
        // Trailing bytes, floats, truncation.
        assert!(decode_canonical(&[0x01, 0x01]).is_err());
        assert!(decode_canonical(&[0xf9, 0x3c, 0x00]).is_err());
        assert!(decode_canonical(&[0x82, 0x01]).is_err());
        // Deep nesting is refused, not a stack overflow.
        let deep = [vec![0x81u8; 10_000], vec![0x01]].concat();
        assert!(decode_canonical(&deep).is_err());
    }
}
