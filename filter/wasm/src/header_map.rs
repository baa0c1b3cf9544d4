//! Envoy's header maps, read in one host call and split in place.
//!
//! The SDK's `get_map_bytes` copies every name and value into its own allocation (two per
//! header, a request carries a dozen) and panics on a status or a layout it does not expect.
//! Here the host's buffer is kept whole and the headers borrow from it; anything unexpected is
//! an error, which the adapter answers like any failed host call (fail closed).

use proxy_wasm::types::MapType;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// Why a header map could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The host call returned this status instead of Ok.
    Status(u32),
    /// The serialised map does not have the proxy-wasm layout (at this byte offset).
    Layout(usize),
    /// A header name is not UTF-8.
    Name,
}

/// The serialised header map of the current stream (empty if the host has none).
pub fn read(map: MapType) -> Result<Vec<u8>, MapError> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a size into the two locals. A non-null pointer is
    // a buffer of exactly `size` bytes that the host obtained from this module's
    // `proxy_on_memory_allocate` (the SDK's: a boxed slice of that length), so it is owned
    // here and can be taken back as a Vec with that length and capacity.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    if status != 0 {
        return Err(MapError::Status(status));
    }
    if data.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: see above.
    Ok(unsafe { Vec::from_raw_parts(data, size, size) })
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
