//! Service-to-service calls (ABI v1.2).

use std::cell::RefCell;

use crate::codec;
use crate::{sys, Code, Error, Response, Result};

/// A request to a route of another service ([`call`]).
///
/// The host adds what the callee must be able to trust: the consumer
/// (`service:` and this service's name), the current request id and a
/// child span of its trace context. Headers x-request-id, traceparent and
/// tracestate are therefore refused (`Invalid`).
#[derive(Clone, Debug, Default)]
pub struct CallRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    retryable: bool,
}

impl CallRequest {
    /// A request of method to path; a "?query" on path moves to the query.
    pub fn new(method: &str, path: &str) -> CallRequest {
        let (path, query) = match path.find('?') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (path, ""),
        };
        CallRequest { method: method.to_string(), path: path.to_string(), query: query.to_string(), ..Default::default() }
    }
    /// GET path.
    pub fn get(path: &str) -> CallRequest {
        CallRequest::new("GET", path)
    }
    /// POST path with a JSON body.
    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> CallRequest {
        CallRequest::new("POST", path).body(body)
    }
    /// Sets the raw query (without '?').
    pub fn query(mut self, query: &str) -> CallRequest {
        self.query = query.to_string();
        self
    }
    /// Adds a header value; names are sent in lower case.
    pub fn header(mut self, name: &str, value: &str) -> CallRequest {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }
    /// Sets the body (JSON or empty).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> CallRequest {
        self.body = body.into();
        self
    }
    /// Lets the host retry the call (on a timeout or an unavailable callee,
    /// within the current deadline) although its method is not idempotent:
    /// set it when the callee's route is safe to run twice. GET, HEAD, PUT
    /// and DELETE are retryable without it.
    pub fn retryable(mut self) -> CallRequest {
        self.retryable = true;
        self
    }

    /// Appends the ABI's call request encoding to dst.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        let method = if self.method.is_empty() { "GET" } else { self.method.as_str() };
        codec::put_bytes(dst, method.as_bytes());
        codec::put_bytes(dst, self.path.as_bytes());
        codec::put_bytes(dst, self.query.as_bytes());
        codec::put_pairs(dst, self.headers.len(), self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        codec::put_bytes(dst, &self.body);
    }

    /// The flags argument of `call`.
    pub fn flags(&self) -> i32 {
        if self.retryable {
            1
        } else {
            0
        }
    }
}

thread_local! {
    static REQ: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    static RESULT: RefCell<Vec<u8>> = RefCell::new(Vec::new());
}

/// Calls a route of `service` (the callee's file name without ".wasm") and
/// returns its response, whatever its status: a 404 or a 500 of the callee
/// is a response, not an error. The callee's effects are its own.
///
/// Errors: `Denied` when calls to service are not granted (grants.calls),
/// `NotFound` when there is no such service or route, `Invalid` for a
/// malformed request or past the depth limit, `TooLarge`, `Unavailable`,
/// `Timeout` when the current deadline ran out.
pub fn call(service: &str, req: &CallRequest) -> Result<Response> {
    let n = REQ.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        req.encode(&mut b);
        sys::call(service.as_bytes(), &b, req.flags())
    });
    if n < 0 {
        return Err(crate::host_error(n));
    }
    RESULT.with(|b| {
        let mut b = b.borrow_mut();
        let len = sys::fill(&mut b, n as usize, sys::call_result).map_err(crate::host_error)?;
        Response::decode(&b[..len]).map_err(|e| Error::new(Code::Internal, format!("call: decoding the response: {e}")))
    })
}

/// Calls GET path on service and returns the body of a 2xx response; any
/// other status is an error of code `Unavailable` (5xx) or `NotFound`
/// (404) or `Invalid` (other 4xx), whose message holds the status.
pub fn get(service: &str, path: &str) -> Result<Vec<u8>> {
    let resp = call(service, &CallRequest::get(path))?;
    let status = resp.status();
    if (200..300).contains(&status) {
        return Ok(resp.body().to_vec());
    }
    let code = match status {
        404 => Code::NotFound,
        s if s >= 500 => Code::Unavailable,
        _ => Code::Invalid,
    };
    Err(Error::new(code, format!("{} answered {status}", codec::quote(service, 64))))
}
