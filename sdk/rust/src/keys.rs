//! Keys built from parts, as the Go SDK's guest.Key builds them.

/// Separates the parts of a key built by [`key`].
pub const KEY_SEP: char = ':';

/// Builds a key from parts, joined by ':' with each part escaped, so that
/// no part can reach into another: distinct lists of parts give distinct
/// keys, whatever bytes they hold. Build every key that holds a value from
/// a user or an event with it:
///
/// ```
/// assert_eq!(meshd_guest::key(&["shipment", "o:1"]), "shipment:o%3A1");
/// ```
///
/// A byte of a part that is not an ASCII letter, digit, '.', '_' or '-'
/// becomes '%' and two upper-case hex digits (':' is "%3A", '%' is "%25",
/// 'é' is "%C3%A9"); the same keys as the Go SDK's `guest.Key`, so a
/// service can move between the two SDKs and keep its store.
pub fn key(parts: &[&str]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let n: usize = parts.iter().map(|p| p.len() + 1).sum();
    let mut out = String::with_capacity(n);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(KEY_SEP);
        }
        for &c in p.as_bytes() {
            if key_byte(c) {
                out.push(c as char);
            } else {
                out.push('%');
                out.push(HEX[(c >> 4) as usize] as char);
                out.push(HEX[(c & 15) as usize] as char);
            }
        }
    }
    out
}

/// Returns the parts [`key`] built k from, or None for a string `key`
/// cannot return (bytes it escapes, truncated or lower-case escapes,
/// escapes of bytes it keeps).
pub fn parse_key(k: &str) -> Option<Vec<String>> {
    k.split(KEY_SEP)
        .map(|p| {
            let b = p.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let c = b[i];
                if key_byte(c) {
                    out.push(c);
                    i += 1;
                    continue;
                }
                if c != b'%' || i + 2 >= b.len() {
                    return None;
                }
                let v = upper_hex(b[i + 1])? << 4 | upper_hex(b[i + 2])?;
                if key_byte(v) {
                    return None;
                }
                out.push(v);
                i += 3;
            }
            String::from_utf8(out).ok()
        })
        .collect()
}

fn key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-'
}

fn upper_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
