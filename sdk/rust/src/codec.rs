//! The ABI's binary encodings: little-endian u32, length-prefixed bytes,
//! and pairs (a count, then key and value strings).

pub(crate) const SHORT: &str = "input ends inside a field";

/// Reads fields in order from an encoded value. Decoders ignore bytes after
/// the last field they know (the ABI appends fields in later versions).
pub(crate) struct Dec<'a> {
    b: &'a [u8],
    off: usize,
}

impl<'a> Dec<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Dec<'a> {
        Dec { b, off: 0 }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, &'static str> {
        let end = self.off.checked_add(4).ok_or(SHORT)?;
        let s = self.b.get(self.off..end).ok_or(SHORT)?;
        self.off = end;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u32()? as usize;
        let end = self.off.checked_add(n).ok_or(SHORT)?;
        let s = self.b.get(self.off..end).ok_or(SHORT)?;
        self.off = end;
        Ok(s)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, &'static str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "a string field is not UTF-8")
    }

    /// A pairs field, checked whole; iterate it with [`Pairs`].
    pub(crate) fn pairs(&mut self) -> Result<Pairs<'a>, &'static str> {
        let start = self.off;
        let n = self.u32()?;
        for _ in 0..n {
            self.bytes()?;
            self.bytes()?;
        }
        Ok(Pairs { b: &self.b[start + 4..self.off], n })
    }
}

/// The entries of a pairs field, decoded as they are iterated (no
/// allocation). Keys and values that are not UTF-8 are skipped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pairs<'a> {
    b: &'a [u8],
    n: u32,
}

impl<'a> Pairs<'a> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.n as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        while self.n > 0 {
            self.n -= 1;
            let mut d = Dec::new(self.b);
            // Checked when the field was decoded.
            let k = d.bytes().ok()?;
            let v = d.bytes().ok()?;
            self.b = &self.b[d.off..];
            if let (Ok(k), Ok(v)) = (std::str::from_utf8(k), std::str::from_utf8(v)) {
                return Some((k, v));
            }
        }
        None
    }
}

pub(crate) fn put_u32(dst: &mut Vec<u8>, v: u32) {
    dst.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_bytes(dst: &mut Vec<u8>, b: &[u8]) {
    put_u32(dst, b.len() as u32);
    dst.extend_from_slice(b);
}

pub(crate) fn put_pairs<'a, I>(dst: &mut Vec<u8>, n: usize, pairs: I)
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    put_u32(dst, n as u32);
    for (k, v) in pairs {
        put_bytes(dst, k.as_bytes());
        put_bytes(dst, v.as_bytes());
    }
}

/// s as a JSON string, cut to at most max bytes of s (at a character
/// boundary, marked with "..."): for user-supplied text in messages.
pub(crate) fn quote(s: &str, max: usize) -> String {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut w = crate::json::Writer::with_capacity(cut + 8);
    if cut < s.len() {
        let mut t = String::with_capacity(cut + 3);
        t.push_str(&s[..cut]);
        t.push_str("...");
        w.string(&t);
    } else {
        w.string(s);
    }
    String::from_utf8(w.into_bytes()).unwrap_or_default()
}
