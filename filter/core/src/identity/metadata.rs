//! Reading jwt_authn's verified claims out of Envoy's dynamic metadata.
//!
//! jwt_authn (with `payload_in_metadata`) stores each verified token's payload as a
//! `google.protobuf.Struct` under `metadata.filter_metadata["envoy.filters.http.jwt_authn"]`.
//! Envoy refuses to serialise a whole Struct for proxy-wasm, but a path to one claim returns
//! that claim in Envoy's property encoding:
//!
//! * string → its UTF-8 bytes; number → 8-byte little-endian f64; bool → one byte;
//! * list and map → "pairs": `u32 count`, then `count × (u32 key_len, u32 value_len)`, then each
//!   key and value followed by a NUL byte. A list is pairs whose keys are the elements (encoded
//!   the same way, recursively) and whose values are empty.
//!
//! The bytes do not say their type, so readers ask for the type they expect.

/// Where claims are read from: a path below jwt_authn's filter metadata, and the request
/// headers jwt_authn forwards verified payloads in.
pub trait ClaimSource {
    /// The encoded value at `path` (e.g. `["user", "sub"]`), `Ok(None)` if absent.
    fn get(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;

    /// The request header `name` (a `forward_payload_header`); none by default.
    fn payload(&self, _name: &str) -> super::payload::Forwarded<'_> {
        super::payload::Forwarded::Absent
    }
}

/// The host could not be asked (not: the value is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

/// A value that is not in the encoding its reader expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

/// Reads a string.
pub fn as_str(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
}

/// Reads a number.
pub fn as_f64(bytes: &[u8]) -> Result<f64, DecodeError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| DecodeError("number is not 8 bytes"))?;
    let v = f64::from_le_bytes(arr);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(DecodeError("number is not finite"))
    }
}

/// Reads a boolean.
pub fn as_bool(bytes: &[u8]) -> Result<bool, DecodeError> {
    match bytes {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(DecodeError("boolean is not one byte")),
    }
}

/// One (key, value) entry of a pairs encoding.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// Splits a pairs encoding into (key, value) slices.
pub fn pairs(bytes: &[u8]) -> Result<Vec<Pair<'_>>, DecodeError> {
    let rd = |at: usize| -> Result<usize, DecodeError> {
        let b = bytes
            .get(at..at + 4)
            .ok_or(DecodeError("pairs header truncated"))?;
        let mut arr = [0u8; 4];
        arr.copy_from_slice(b);
        Ok(u32::from_le_bytes(arr) as usize)
    };
    let count = rd(0)?;
    // Each entry needs 8 header bytes and 2 NULs: refuse counts the buffer cannot hold.
    if count > bytes.len() / 10 + 1 {
        return Err(DecodeError("pairs count larger than the buffer"));
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        sizes.push((rd(4 + i * 8)?, rd(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut out = Vec::with_capacity(count);
    for (klen, vlen) in sizes {
        // Lengths up to u32::MAX: `at + len` can overflow a 32-bit usize (wasm32).
        let key = at
            .checked_add(klen)
            .and_then(|end| bytes.get(at..end))
            .ok_or(DecodeError("pairs key truncated"))?;
        at += klen;
        if bytes.get(at) != Some(&0) {
            return Err(DecodeError("pairs key not NUL-terminated"));
        }
        at += 1;
        let value = at
            .checked_add(vlen)
            .and_then(|end| bytes.get(at..end))
            .ok_or(DecodeError("pairs value truncated"))?;
        at += vlen;
        if bytes.get(at) != Some(&0) {
            return Err(DecodeError("pairs value not NUL-terminated"));
        }
        at += 1;
        out.push((key, value));
    }
    if at != bytes.len() {
        return Err(DecodeError("trailing bytes after pairs"));
    }
    Ok(out)
}

/// Reads a list: the encoded elements.
pub fn as_list(bytes: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    pairs(bytes)?
        .into_iter()
        .map(|(k, v)| {
            if v.is_empty() {
                Ok(k)
            } else {
                Err(DecodeError("list element has a value"))
            }
        })
        .collect()
}

/// Reads a list of strings.
pub fn as_str_list(bytes: &[u8]) -> Result<Vec<String>, DecodeError> {
    as_list(bytes)?.into_iter().map(as_str).collect()
}

/// Reads a map: (name, encoded value).
pub fn as_map(bytes: &[u8]) -> Result<Vec<(String, &[u8])>, DecodeError> {
    pairs(bytes)?
        .into_iter()
        .map(|(k, v)| Ok((as_str(k)?, v)))
        .collect()
}

/// Encoders mirroring Envoy's, for tests of code that reads claims.
#[cfg(any(test, feature = "test-support"))]
pub mod encode {
    /// A string value.
    pub fn str(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }
    /// A number value.
    pub fn num(v: f64) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }
    /// A boolean value.
    pub fn boolean(v: bool) -> Vec<u8> {
        vec![u8::from(v)]
    }
    /// A pairs encoding.
    pub fn pairs(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = (entries.len() as u32).to_le_bytes().to_vec();
        for (k, v) in entries {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in entries {
            out.extend_from_slice(k);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }
    /// A list value.
    pub fn list(items: &[Vec<u8>]) -> Vec<u8> {
        pairs(
            &items
                .iter()
                .map(|i| (i.clone(), Vec::new()))
                .collect::<Vec<_>>(),
        )
    }
    /// A map value.
    pub fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        pairs(
            &entries
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect::<Vec<_>>(),
        )
    }
    /// Encodes a JSON value the way Envoy encodes the Struct jwt_authn built from it.
    pub fn json(v: &serde_json::Value) -> Vec<u8> {
        use serde_json::Value;
        match v {
            Value::Null => Vec::new(),
            Value::Bool(b) => boolean(*b),
            Value::Number(n) => num(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => str(s),
            Value::Array(a) => list(&a.iter().map(json).collect::<Vec<_>>()),
            Value::Object(o) => map(&o
                .iter()
                .map(|(k, v)| (k.as_str(), json(v)))
                .collect::<Vec<_>>()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Captured from Envoy 1.40 (jwt_authn payload_in_metadata, proxy-wasm get_property).
    const GROUPS: &str = "02000000020000000000000002000000000000006731000067320000";
    const OBJ: &str = "0200000001000000010000000100000028000000780079007a000200000008000000000000000800000000000000000000000000f03f00000000000000000040000000";
    const CHAIN: &str = "02000000c800000000000000130000000000000006000000030000000500000003000000070000000c000000080000000b0000004d0000000300000001000000050000000100000073756200616c69636500617564006167656e743a780064656c6567617465645f6174000000808791c0da4100636f6e73747261696e7473000200000011000000100000000c00000008000000616c6c6f7765645f7265736f75726365730001000000020000000000000072310000006d61785f6475726174696f6e00000000000020ac40000069737300690073636f70650061000000010000000300000002000000737562007332000000";
    const FAIL: &str = "020000000400000008000000070000000e000000636f6465000000000000000840006d657373616765004a7774206973206578706972656400";

    #[test]
    fn decodes_real_envoy_bytes() {
        assert_eq!(as_str_list(&hex(GROUPS)).unwrap(), vec!["g1", "g2"]);
        assert_eq!(as_f64(&hex("0000000000000840")).unwrap(), 3.0);
        assert!(as_bool(&hex("01")).unwrap());
        let obj_bytes = hex(OBJ);
        let obj = as_map(&obj_bytes).unwrap();
        assert_eq!(obj[0].0, "x");
        assert_eq!(as_str(obj[0].1).unwrap(), "y");
        let z: Vec<f64> = as_list(obj[1].1)
            .unwrap()
            .into_iter()
            .map(|b| as_f64(b).unwrap())
            .collect();
        assert_eq!(z, vec![1.0, 2.0]);
        let chain_bytes = hex(CHAIN);
        let chain = as_list(&chain_bytes).unwrap();
        assert_eq!(chain.len(), 2);
        let step: Vec<(String, &[u8])> = as_map(chain[0]).unwrap();
        let get = |k: &str| step.iter().find(|(n, _)| n == k).map(|(_, v)| *v).unwrap();
        assert_eq!(as_str(get("sub")).unwrap(), "alice");
        assert_eq!(as_str(get("aud")).unwrap(), "agent:x");
        let constraints = as_map(get("constraints")).unwrap();
        assert_eq!(constraints.len(), 2);
        let fail_bytes = hex(FAIL);
        let fail = as_map(&fail_bytes).unwrap();
        assert_eq!(as_str(fail[1].1).unwrap(), "Jwt is expired");
    }

    #[test]
    fn encoder_matches_envoy() {
        assert_eq!(
            encode::list(&[encode::str("g1"), encode::str("g2")]),
            hex(GROUPS)
        );
        let obj = encode::map(&[
            ("x", encode::str("y")),
            ("z", encode::list(&[encode::num(1.0), encode::num(2.0)])),
        ]);
        assert_eq!(obj, hex(OBJ));
    }

    #[test]
    fn malformed_encodings_are_errors_not_panics() {
        for bad in [
            "",
            "01",
            "ffffffff",
            "01000000",
            "0100000005000000",
            "010000000100000001000000610062",
            "0100000001000000000000006100",
            "01000000010000000000000061000000",
            // Lengths that overflow a 32-bit `usize` once added to the offset (wasm32).
            "01000000ffffffff00000000610000",
            "0100000001000000ffffffff61000000",
            "0200000001000000fbffffff01000000000000006100620000",
        ] {
            assert!(pairs(&hex(bad)).is_err(), "{bad}");
        }
        assert!(as_f64(&[1, 2, 3]).is_err());
        assert!(as_f64(&f64::NAN.to_le_bytes()).is_err());
        assert!(as_bool(&[2]).is_err());
        assert!(as_str(&[0xff]).is_err());
    }
}
