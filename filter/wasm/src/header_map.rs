//! Envoy's header maps, read in one host call and split in place.
//!
//! The SDK's `get_map_bytes` copies every name and value into its own allocation (two per
//! header, a request carries a dozen) and panics on a status or a layout it does not expect.
//! Here the host's buffer (`host::get_header_pairs`) is kept whole and the headers borrow from
//! it; anything unexpected is an error, which the adapter answers like any failed host call
//! (fail closed). `join` writes the same layout for local replies and callouts.

/// Why a header map could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The serialised map does not have the proxy-wasm layout (at this byte offset).
    Layout(usize),
    /// A header name is not UTF-8.
    Name,
}

/// Serialises (name, value) pairs the way the host reads them (the layout `split` reads), for
/// local replies and callouts.
pub fn join(pairs: &[(String, String)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    // Lengths beyond u32 cannot occur: the host's memory is 32-bit.
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend(len(pairs.len()));
    for (k, v) in pairs {
        out.extend(len(k.len()));
        out.extend(len(v.len()));
    }
    for (k, v) in pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

/// Splits a serialised map — a u32 count, then a (name length, value length) u32 pair per
/// header, then each name and value followed by a NUL, all little-endian — into borrowed
/// (name, value) pairs, in order.
pub fn split(bytes: &[u8]) -> Result<Vec<(&str, &[u8])>, MapError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let word = |at: usize| -> Result<usize, MapError> {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize)
            .ok_or(MapError::Layout(at))
    };
    let count = word(0)?;
    let mut at = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .filter(|&n| n <= bytes.len())
        .ok_or(MapError::Layout(0))?;
    let mut pairs = Vec::with_capacity(count);
    let mut take = |len: usize| -> Result<&[u8], MapError> {
        let start = at;
        let end = start.checked_add(len).ok_or(MapError::Layout(start))?;
        let part = bytes.get(start..end).ok_or(MapError::Layout(start))?;
        if bytes.get(end) != Some(&0) {
            return Err(MapError::Layout(end));
        }
        at = end + 1;
        Ok(part)
    };
    for n in 0..count {
        let (name_len, value_len) = (word(4 + n * 8)?, word(8 + n * 8)?);
        let name = std::str::from_utf8(take(name_len)?).map_err(|_| MapError::Name)?;
        pairs.push((name, take(value_len)?));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The layout Envoy writes (proxy-wasm ABI 0.2.1).
    fn serialise(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn headers_are_split_in_order_without_copies() {
        let raw = serialise(&[
            (b":method", b"POST"),
            (b"x-empty", b""),
            (b"x-bytes", b"caf\xc3\xa9 \xff"),
            (b":method", b"GET"),
        ]);
        let pairs = split(&raw).unwrap();
        let expected: Vec<(&str, &[u8])> = vec![
            (":method", b"POST"),
            ("x-empty", b""),
            ("x-bytes", b"caf\xc3\xa9 \xff"),
            (":method", b"GET"),
        ];
        assert_eq!(pairs, expected);
        // Borrowed from the host's buffer, not copied.
        let range = raw.as_ptr_range();
        assert!(pairs.iter().all(|(k, _)| range.contains(&k.as_ptr())));
    }

    #[test]
    fn joined_pairs_have_the_hosts_layout() {
        let pairs = vec![
            (":status".to_string(), "403".to_string()),
            ("x-empty".to_string(), String::new()),
            (
                "content-type".to_string(),
                "application/json; charset=utf-8".to_string(),
            ),
        ];
        let raw = join(&pairs);
        let as_bytes: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(raw, serialise(&as_bytes));
        let back: Vec<(&str, &[u8])> = split(&raw).unwrap();
        assert_eq!(back.len(), 3);
        assert!(back
            .iter()
            .zip(&pairs)
            .all(|((k, v), (pk, pv))| k == pk && *v == pv.as_bytes()));
        assert_eq!(join(&[]), 0u32.to_le_bytes().to_vec());
    }

    #[test]
    fn an_empty_map_has_no_headers() {
        assert_eq!(split(&[]).unwrap(), vec![]);
        assert_eq!(split(&serialise(&[])).unwrap(), vec![]);
    }

    #[test]
    fn a_map_that_does_not_add_up_is_an_error_not_a_panic() {
        let raw = serialise(&[(b"accept", b"application/json"), (b"x", b"y")]);
        // Every truncation, and every single-byte corruption of the lengths and separators.
        for end in 1..raw.len() {
            assert!(split(&raw[..end]).is_err(), "truncated at {end}");
        }
        for at in 0..raw.len() {
            let mut bad = raw.clone();
            bad[at] = bad[at].wrapping_add(1);
            let layout = at < 4 + 2 * 8 || bad[at] == 1;
            if layout {
                assert!(split(&bad).is_err(), "byte {at} changed");
            }
        }
        // A count far beyond the buffer, and lengths that would overflow.
        assert_eq!(split(&u32::MAX.to_le_bytes()), Err(MapError::Layout(0)));
        let mut huge = serialise(&[(b"a", b"b")]);
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(split(&huge).is_err());
    }

    #[test]
    fn a_name_that_is_not_utf8_is_refused() {
        let raw = serialise(&[(b"x-\xff", b"v")]);
        assert_eq!(split(&raw), Err(MapError::Name));
    }
}
