//! HTTP requests the gateway routes to the service, and their responses.

use std::borrow::Cow;

use crate::codec::{self, Dec, Pairs};

/// The consumer of a request made by another service: `service:` and its name.
pub const CONSUMER_PREFIX: &str = "service:";

/// An HTTP request (the ABI's Request encoding), borrowed from the call's
/// input: nothing is copied to decode it. Valid for the handler's call.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    route: &'a str,
    params: Pairs<'a>,
    headers: Pairs<'a>,
    consumer: &'a str,
    request_id: &'a str,
    traceparent: &'a str,
    body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Decodes an encoded request.
    pub fn decode(b: &'a [u8]) -> Result<Request<'a>, &'static str> {
        let mut d = Dec::new(b);
        Ok(Request {
            method: d.str()?,
            path: d.str()?,
            query: d.str()?,
            route: d.str()?,
            params: d.pairs()?,
            headers: d.pairs()?,
            consumer: d.str()?,
            request_id: d.str()?,
            traceparent: d.str()?,
            body: d.bytes()?,
        })
    }

    /// "POST".
    pub fn method(&self) -> &'a str {
        self.method
    }
    /// "/orders/42".
    pub fn path(&self) -> &'a str {
        self.path
    }
    /// The raw query without '?': "limit=10".
    pub fn query(&self) -> &'a str {
        self.query
    }
    /// The route the gateway matched, exactly as declared: "GET /orders/{id}".
    pub fn route(&self) -> &'a str {
        self.route
    }
    /// The value of the route's wildcard `name` ("id" in "GET /orders/{id}").
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.into_iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
    /// The route's wildcards.
    pub fn params(&self) -> Pairs<'a> {
        self.params
    }
    /// The first value of a header; names match without regard to case.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.into_iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }
    /// Every header value, in order (names in lower case, one pair per value).
    pub fn headers(&self) -> Pairs<'a> {
        self.headers
    }
    /// The first value of query parameter `name`, unescaped ('+' is a space,
    /// %XX a byte); borrowed when there is nothing to unescape.
    pub fn query_value(&self, name: &str) -> Option<Cow<'a, str>> {
        for part in self.query.split('&') {
            let (k, v) = match part.find('=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, ""),
            };
            if unescape(k) == name {
                return Some(unescape(v));
            }
        }
        None
    }
    /// The authenticated caller, empty when anonymous; `service:<name>` for
    /// a call from another service.
    pub fn consumer(&self) -> &'a str {
        self.consumer
    }
    /// The service that called this route with [`crate::call`], or None
    /// for a request that came through the gateway.
    pub fn calling_service(&self) -> Option<&'a str> {
        self.consumer.strip_prefix(CONSUMER_PREFIX)
    }
    /// The request's X-Request-Id.
    pub fn request_id(&self) -> &'a str {
        self.request_id
    }
    /// The W3C trace context.
    pub fn traceparent(&self) -> &'a str {
        self.traceparent
    }
    /// The body: JSON (the gateway checked it) or empty.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
}

fn unescape(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|c| c == b'%' || c == b'+') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match (unhex(b[i + 1]), unhex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// An HTTP response (the ABI's Response encoding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response of `status` (100-599; anything else becomes 500) with no
    /// header and no body.
    pub fn new(status: u16) -> Response {
        let status = if (100..=599).contains(&status) { status } else { 500 };
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    /// `status` with `body` as application/json.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        let mut r = Response::new(status).header("content-type", "application/json");
        r.body = body.into();
        r
    }

    /// `status` with an RFC 9457 application/problem+json body:
    /// `{"type":"about:blank","title":...,"status":...,"detail":...}`; an
    /// empty detail is left out.
    pub fn problem(status: u16, title: &str, detail: &str) -> Response {
        let mut r = Response::new(status).header("content-type", "application/problem+json");
        r.body = problem_body(r.status, title, detail);
        r
    }

    /// Adds a header value (names are sent as given; use lower case).
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets a header, replacing the values it had.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of a header; names match without regard to case.
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Appends the response's encoding to dst.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        codec::put_u32(dst, self.status as u32);
        codec::put_pairs(dst, self.headers.len(), self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        codec::put_bytes(dst, &self.body);
    }

    /// Decodes an encoded response (a call's result).
    pub fn decode(b: &[u8]) -> Result<Response, &'static str> {
        let mut d = Dec::new(b);
        let status = d.u32()?;
        let headers = d.pairs()?.map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let body = d.bytes()?.to_vec();
        Ok(Response { status: status.min(u16::MAX as u32) as u16, headers, body })
    }
}

/// The problem+json body [`Response::problem`] writes.
pub fn problem_body(status: u16, title: &str, detail: &str) -> Vec<u8> {
    let mut w = crate::json::Writer::with_capacity(64 + title.len() + detail.len());
    w.object_start();
    w.string_field("type", "about:blank");
    w.string_field("title", title);
    w.int_field("status", status as i64);
    if !detail.is_empty() {
        w.string_field("detail", detail);
    }
    w.object_end();
    w.into_bytes()
}
