//! A small, allocation-light JSON reader and writer (no serde here).
//!
//! [`Reader`] pulls values out of a document in order, borrowing strings
//! from the input when they hold no escape; [`Writer`] appends to one
//! growable buffer.
//!
//! ```
//! use meshd_guest::json::{Reader, Writer};
//! let mut id = String::new();
//! let mut qty = 0;
//! let mut r = Reader::new(br#"{"id":"o-1","qty":3,"tags":["a"]}"#);
//! r.object(|r, key| {
//!     match key {
//!         "id" => id = r.string()?.into_owned(),
//!         "qty" => qty = r.int()?,
//!         _ => r.skip()?,
//!     }
//!     Ok(())
//! }).unwrap();
//! r.end().unwrap();
//! assert_eq!((id.as_str(), qty), ("o-1", 3));
//!
//! let mut w = Writer::new();
//! w.object_start();
//! w.string_field("id", "o-1");
//! w.int_field("qty", 3);
//! w.object_end();
//! assert_eq!(w.as_bytes(), br#"{"id":"o-1","qty":3}"#);
//! ```

use std::borrow::Cow;
use std::fmt;

/// Nesting deeper than this is refused: a guest's stack is small.
pub const MAX_DEPTH: usize = 64;

/// A malformed document: what was wrong and at which byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What was expected or found.
    pub what: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "json: {} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for Error {}

/// The kind of the next value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
    /// Nothing or something that is not a JSON value.
    Invalid,
}

/// Reads one JSON document, value by value.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader of b.
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b, pos: 0, depth: 0 }
    }

    fn err<T>(&self, what: &'static str) -> Result<T, Error> {
        Err(Error { offset: self.pos, what })
    }

    fn ws(&mut self) {
        while self.pos < self.b.len() && matches!(self.b[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn peek_byte(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), Error> {
        if self.peek_byte() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    /// The kind of the next value, without consuming it.
    pub fn kind(&mut self) -> Kind {
        match self.peek_byte() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            _ => Kind::Invalid,
        }
    }

    /// Reads an object: f is called with each key and must read (or
    /// [`skip`](Reader::skip)) its value. A key appearing twice is passed
    /// twice. A malformed document is an `Invalid` error; an error of f is
    /// returned as it is.
    pub fn object<F>(&mut self, f: F) -> Result<(), crate::Error>
    where
        F: FnMut(&mut Reader<'a>, &str) -> Result<(), crate::Error>,
    {
        self.obj(f)
    }

    /// Reads an array: f is called for each element and must read it.
    pub fn array<F>(&mut self, f: F) -> Result<(), crate::Error>
    where
        F: FnMut(&mut Reader<'a>) -> Result<(), crate::Error>,
    {
        self.arr(f)
    }

    fn obj<E, F>(&mut self, mut f: F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(&mut Reader<'a>, &str) -> Result<(), E>,
    {
        self.expect(b'{', "expected an object")?;
        self.enter()?;
        if self.peek_byte() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if self.peek_byte() != Some(b'"') {
                return Err(self.error("expected a key").into());
            }
            let key = self.string()?;
            self.expect(b':', "expected ':'")?;
            let before = self.pos;
            f(self, &key)?;
            if self.pos == before {
                return Err(self.error("a value was not read").into());
            }
            match self.peek_byte() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or '}'").into()),
            }
        }
    }

    fn arr<E, F>(&mut self, mut f: F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(&mut Reader<'a>) -> Result<(), E>,
    {
        self.expect(b'[', "expected an array")?;
        self.enter()?;
        if self.peek_byte() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            let before = self.pos;
            f(self)?;
            if self.pos == before {
                return Err(self.error("a value was not read").into());
            }
            match self.peek_byte() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or ']'").into()),
            }
        }
    }

    fn error(&self, what: &'static str) -> Error {
        Error { offset: self.pos, what }
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("nested too deep");
        }
        Ok(())
    }

    /// Reads a string, borrowed from the input when it holds no escape.
    pub fn string(&mut self) -> Result<Cow<'a, str>, Error> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        let b = self.b;
        let mut i = start;
        // The fast path: no escape.
        while i < b.len() && b[i] != b'"' && b[i] != b'\\' && b[i] >= 0x20 {
            i += 1;
        }
        if i < b.len() && b[i] == b'"' {
            self.pos = i + 1;
            return match std::str::from_utf8(&b[start..i]) {
                Ok(s) => Ok(Cow::Borrowed(s)),
                Err(_) => self.err("a string is not UTF-8"),
            };
        }
        let mut out: Vec<u8> = Vec::with_capacity(i - start + 16);
        out.extend_from_slice(&b[start..i]);
        loop {
            let c = match b.get(i) {
                Some(&c) => c,
                None => {
                    self.pos = i;
                    return self.err("unterminated string");
                }
            };
            match c {
                b'"' => break,
                b'\\' => {
                    let e = b.get(i + 1).copied();
                    i += 2;
                    match e {
                        Some(b'"') => out.push(b'"'),
                        Some(b'\\') => out.push(b'\\'),
                        Some(b'/') => out.push(b'/'),
                        Some(b'b') => out.push(8),
                        Some(b'f') => out.push(12),
                        Some(b'n') => out.push(b'\n'),
                        Some(b'r') => out.push(b'\r'),
                        Some(b't') => out.push(b'\t'),
                        Some(b'u') => {
                            let mut cp = match hex4(b, i) {
                                Some(v) => v,
                                None => {
                                    self.pos = i;
                                    return self.err("bad \\u escape");
                                }
                            };
                            i += 4;
                            if (0xD800..0xDC00).contains(&cp) {
                                // A surrogate pair, or U+FFFD.
                                match (b.get(i), b.get(i + 1), hex4(b, i + 2)) {
                                    (Some(b'\\'), Some(b'u'), Some(lo)) if (0xDC00..0xE000).contains(&lo) => {
                                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                        i += 6;
                                    }
                                    _ => cp = 0xFFFD,
                                }
                            } else if (0xDC00..0xE000).contains(&cp) {
                                cp = 0xFFFD;
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => {
                            self.pos = i - 1;
                            return self.err("bad escape");
                        }
                    }
                }
                c if c < 0x20 => {
                    self.pos = i;
                    return self.err("control character in a string");
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        self.pos = i + 1;
        match String::from_utf8(out) {
            Ok(s) => Ok(Cow::Owned(s)),
            Err(_) => self.err("a string is not UTF-8"),
        }
    }

    /// Reads a number's text as it stands ("12", "-1.5e3").
    pub fn number(&mut self) -> Result<&'a str, Error> {
        self.ws();
        let b = self.b;
        let start = self.pos;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let digits = |i: &mut usize| {
            let s = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i - s
        };
        let int_start = i;
        let n = digits(&mut i);
        if n == 0 || (n > 1 && b[int_start] == b'0') {
            return self.err("expected a number");
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                self.pos = i;
                return self.err("expected a digit");
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                self.pos = i;
                return self.err("expected a digit");
            }
        }
        self.pos = i;
        // ASCII only.
        Ok(std::str::from_utf8(&b[start..i]).unwrap_or("0"))
    }

    /// Reads an integer (no fraction, no exponent) that fits an i64.
    pub fn int(&mut self) -> Result<i64, Error> {
        let start = self.pos;
        let s = self.number()?;
        s.parse::<i64>().or_else(|_| {
            self.pos = start;
            self.err("expected an integer")
        })
    }

    /// Reads true or false.
    pub fn bool(&mut self) -> Result<bool, Error> {
        self.ws();
        if self.b[self.pos..].starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if self.b[self.pos..].starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            self.err("expected true or false")
        }
    }

    /// Reads null when it comes next and reports whether it did.
    pub fn null(&mut self) -> bool {
        self.ws();
        if self.b[self.pos..].starts_with(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    /// Reads and checks the next value, whatever it is.
    pub fn skip(&mut self) -> Result<(), Error> {
        match self.kind() {
            Kind::Object => self.obj(|r, _| r.skip()),
            Kind::Array => self.arr(|r| r.skip()),
            Kind::String => self.string().map(|_| ()),
            Kind::Number => self.number().map(|_| ()),
            Kind::Bool => self.bool().map(|_| ()),
            Kind::Null => {
                if self.null() {
                    Ok(())
                } else {
                    self.err("expected null")
                }
            }
            Kind::Invalid => self.err("expected a value"),
        }
    }

    /// Checks that only white space is left.
    pub fn end(&mut self) -> Result<(), Error> {
        if self.peek_byte().is_some() {
            return self.err("data after the value");
        }
        Ok(())
    }

    /// The byte offset reached.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let s = b.get(i..i + 4)?;
    let mut v = 0u32;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = v << 4 | d as u32;
    }
    Some(v)
}

/// Whether b is exactly one JSON value (with white space around it).
pub fn valid(b: &[u8]) -> bool {
    let mut r = Reader::new(b);
    r.skip().is_ok() && r.end().is_ok()
}

/// Reads the top-level string fields `names` of a JSON object: the i-th
/// result is the value of names[i], or None when absent. Other fields are
/// checked and skipped; a named field that is not a string is an error.
pub fn string_fields<'a, const N: usize>(b: &'a [u8], names: [&str; N]) -> Result<[Option<Cow<'a, str>>; N], crate::Error> {
    const NONE: Option<Cow<'static, str>> = None;
    let mut out: [Option<Cow<'a, str>>; N] = [NONE; N];
    let mut r = Reader::new(b);
    let mut bad: Option<String> = None;
    let res = r.object(|r, key| {
        match names.iter().position(|n| *n == key) {
            Some(i) if r.kind() == Kind::String => out[i] = Some(r.string()?),
            Some(_) if r.kind() == Kind::Null => {
                r.null();
            }
            Some(_) => {
                bad = Some(key.to_string());
                r.skip()?;
            }
            None => r.skip()?,
        }
        Ok(())
    });
    if let Some(key) = bad {
        return Err(crate::Error::invalid(format!("field {} is not a string", crate::codec::quote(&key, 64))));
    }
    res?;
    r.end()?;
    Ok(out)
}

/// Appends JSON to one buffer. Commas are placed for you.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
    comma: bool,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// An empty writer with room for n bytes.
    pub fn with_capacity(n: usize) -> Writer {
        Writer { buf: Vec::with_capacity(n), comma: false }
    }

    /// Empties the writer, keeping its buffer.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.comma = false;
    }

    fn sep(&mut self) {
        if self.comma {
            self.buf.push(b',');
        }
    }

    /// `{`
    pub fn object_start(&mut self) {
        self.sep();
        self.buf.push(b'{');
        self.comma = false;
    }
    /// `}`
    pub fn object_end(&mut self) {
        self.buf.push(b'}');
        self.comma = true;
    }
    /// `[`
    pub fn array_start(&mut self) {
        self.sep();
        self.buf.push(b'[');
        self.comma = false;
    }
    /// `]`
    pub fn array_end(&mut self) {
        self.buf.push(b']');
        self.comma = true;
    }
    /// An object key; the value follows.
    pub fn key(&mut self, k: &str) {
        self.sep();
        push_string(&mut self.buf, k);
        self.buf.push(b':');
        self.comma = false;
    }
    /// A string value.
    pub fn string(&mut self, s: &str) {
        self.sep();
        push_string(&mut self.buf, s);
        self.comma = true;
    }
    /// An integer value.
    pub fn int(&mut self, v: i64) {
        self.sep();
        push_int(&mut self.buf, v);
        self.comma = true;
    }
    /// A boolean value.
    pub fn bool(&mut self, v: bool) {
        self.sep();
        self.buf.extend_from_slice(if v { b"true" } else { b"false" });
        self.comma = true;
    }
    /// null.
    pub fn null(&mut self) {
        self.sep();
        self.buf.extend_from_slice(b"null");
        self.comma = true;
    }
    /// A value already encoded as JSON (the caller vouches for it).
    pub fn raw(&mut self, json: &[u8]) {
        self.sep();
        self.buf.extend_from_slice(json);
        self.comma = true;
    }
    /// `"k":"v"`
    pub fn string_field(&mut self, k: &str, v: &str) {
        self.key(k);
        self.string(v);
    }
    /// `"k":v`
    pub fn int_field(&mut self, k: &str, v: i64) {
        self.key(k);
        self.int(v);
    }
    /// `"k":true`
    pub fn bool_field(&mut self, k: &str, v: bool) {
        self.key(k);
        self.bool(v);
    }
    /// `"k":` and a value already encoded as JSON.
    pub fn raw_field(&mut self, k: &str, json: &[u8]) {
        self.key(k);
        self.raw(json);
    }
    /// What was written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    /// The buffer.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

fn push_int(dst: &mut Vec<u8>, v: i64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let neg = v < 0;
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        tmp[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if neg {
        dst.push(b'-');
    }
    dst.extend_from_slice(&tmp[i..]);
}

fn push_string(dst: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    dst.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            c if c < 0x20 || c == b'<' || c == b'>' || c == b'&' => {
                dst.extend_from_slice(&b[start..i]);
                dst.extend_from_slice(b"\\u00");
                dst.push(HEX[(c >> 4) as usize]);
                dst.push(HEX[(c & 15) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        dst.extend_from_slice(&b[start..i]);
        dst.extend_from_slice(esc);
        start = i + 1;
    }
    dst.extend_from_slice(&b[start..]);
    dst.push(b'"');
}
