//! An in-memory host for `cargo test` on the build machine: the host
//! functions of ABI v1, v1.1 and v1.2 over maps, with the real host's
//! rules that a service can observe (grow and retry, effects applied only
//! when the call succeeds, grants, event types, JSON data, key sizes).
//! Only on targets other than wasm32.
//!
//! ```
//! use meshd_guest::{fake::Host, kv, Response, Service};
//!
//! fn setup(s: &mut Service) {
//!     s.handle("PUT /notes/{id}", |r| {
//!         kv::set(&meshd_guest::key(&["note", r.param("id").unwrap_or("")]), r.body())?;
//!         Ok(Response::new(204))
//!     });
//! }
//!
//! let host = Host::new(setup);
//! let resp = host.request("PUT", "/notes/n:1", r#""hi""#).unwrap();
//! assert_eq!(resp.status(), 204);
//! assert_eq!(host.kv("note:n%3A1").as_deref(), Some(&b"\"hi\""[..]));
//! ```
//!
//! The state is per thread: each test (cargo runs each on a thread of
//! its own) starts afresh with [`Host::new`].

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::codec::{self, Dec};
use crate::{json, Code, EventFields, Response, Service, ServiceInfo};

/// The largest output of one call, as the host's default.
pub const MAX_OUTPUT: usize = 1 << 20;

/// A failed call: the export's non-zero code and what it wrote as the
/// message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

/// An event the service published (applied: its call succeeded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub event_type: String,
    pub data: Vec<u8>,
    /// Some(ms) for publish_delayed.
    pub delay_ms: Option<i32>,
}

/// A call the service made with [`crate::call`], as the callee would see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Called {
    pub service: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub retryable: bool,
}

type Callee = Rc<dyn Fn(&Called) -> Result<Response, Code>>;

#[derive(Default)]
pub(crate) struct State {
    input: Vec<u8>,
    output: Vec<u8>,
    last_error: Vec<u8>,
    kv: BTreeMap<String, Vec<u8>>,
    pending: Vec<(String, Option<Vec<u8>>)>,
    events: Vec<Published>,
    pending_events: Vec<Published>,
    logs: Vec<(i32, String)>,
    publish: Option<Vec<String>>,
    no_kv: bool,
    calls: Vec<String>,
    discover: Vec<String>,
    config: HashMap<String, String>,
    services: HashMap<String, ServiceInfo>,
    callee: Option<Callee>,
    called: Vec<Called>,
    result: Option<Vec<u8>>,
    reads: usize,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

pub(crate) fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

fn copy_out(value: &[u8], buf: &mut [u8]) -> i32 {
    if value.len() <= buf.len() {
        buf[..value.len()].copy_from_slice(value);
    }
    value.len() as i32
}

impl State {
    fn fail(&mut self, code: Code, msg: &str) -> i32 {
        self.last_error = msg.as_bytes().to_vec();
        -(code as i32)
    }

    pub(crate) fn input_read(&mut self, buf: &mut [u8]) -> i32 {
        self.reads += 1;
        copy_out(&self.input, buf)
    }

    pub(crate) fn output_write(&mut self, b: &[u8]) -> i32 {
        if self.output.len() + b.len() > MAX_OUTPUT {
            return self.fail(Code::TooLarge, "output passes 1048576 bytes");
        }
        self.output.extend_from_slice(b);
        0
    }

    pub(crate) fn last_error(&mut self, buf: &mut [u8]) -> i32 {
        let e = std::mem::take(&mut self.last_error);
        let n = copy_out(&e, buf);
        self.last_error = e;
        n
    }

    pub(crate) fn log(&mut self, level: i32, msg: &[u8]) -> i32 {
        self.logs.push((level, String::from_utf8_lossy(msg).into_owned()));
        0
    }

    pub(crate) fn publish(&mut self, typ: &[u8], data: &[u8], delay_ms: Option<i32>) -> i32 {
        let typ = String::from_utf8_lossy(typ).into_owned();
        if let Err(why) = crate::check_event_type(&typ) {
            return self.fail(Code::Invalid, why);
        }
        if let Some(granted) = &self.publish {
            if !granted.iter().any(|g| *g == typ) {
                let msg = format!("fake host: not granted publishing {}", codec::quote(&typ, 128));
                return self.fail(Code::Denied, &msg);
            }
        }
        if !json::valid(data) {
            return self.fail(Code::Invalid, "event data is not JSON");
        }
        if let Some(d) = delay_ms {
            if d < 0 {
                return self.fail(Code::Invalid, "negative delay");
            }
        }
        self.pending_events.push(Published { event_type: typ, data: data.to_vec(), delay_ms });
        0
    }

    fn check_key(&mut self, key: &[u8]) -> Result<String, i32> {
        if self.no_kv {
            return Err(self.fail(Code::Denied, "fake host: the service is not granted kv"));
        }
        if key.is_empty() {
            return Err(self.fail(Code::Invalid, "empty key"));
        }
        if key.len() > 1024 {
            return Err(self.fail(Code::TooLarge, "key longer than 1024 bytes"));
        }
        Ok(String::from_utf8_lossy(key).into_owned())
    }

    pub(crate) fn kv_get(&mut self, key: &[u8], buf: &mut [u8]) -> i32 {
        let key = match self.check_key(key) {
            Ok(k) => k,
            Err(ret) => return ret,
        };
        let pending = self.pending.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
        let value = match pending {
            Some(v) => v,
            None => self.kv.get(&key).cloned(),
        };
        match value {
            Some(v) => copy_out(&v, buf),
            None => self.fail(Code::NotFound, "no such key"),
        }
    }

    pub(crate) fn kv_set(&mut self, key: &[u8], val: Option<&[u8]>) -> i32 {
        let key = match self.check_key(key) {
            Ok(k) => k,
            Err(ret) => return ret,
        };
        self.pending.retain(|(k, _)| *k != key);
        self.pending.push((key, val.map(|v| v.to_vec())));
        0
    }

    pub(crate) fn discover(&mut self, name: &[u8], buf: &mut [u8]) -> i32 {
        let name = String::from_utf8_lossy(name).into_owned();
        if !self.discover.iter().any(|d| *d == name || d == "*") {
            let msg = format!("fake host: not granted discovering {}", codec::quote(&name, 64));
            return self.fail(Code::Denied, &msg);
        }
        let info = match self.services.get(&name) {
            Some(i) => i.clone(),
            None => return self.fail(Code::NotFound, "no such service"),
        };
        let mut w = json::Writer::new();
        w.object_start();
        w.string_field("name", &info.name);
        w.string_field("status", &info.status);
        w.string_field("version", &info.version);
        w.int_field("instances", info.instances);
        w.object_end();
        copy_out(w.as_bytes(), buf)
    }

    pub(crate) fn config_get(&mut self, key: &[u8], buf: &mut [u8]) -> i32 {
        let key = String::from_utf8_lossy(key).into_owned();
        match self.config.get(&key).cloned() {
            Some(v) => copy_out(v.as_bytes(), buf),
            None => self.fail(Code::NotFound, "no such configuration key"),
        }
    }

    pub(crate) fn call_result(&mut self, buf: &mut [u8]) -> i32 {
        match self.result.take() {
            Some(r) => {
                let n = copy_out(&r, buf);
                self.result = Some(r);
                n
            }
            None => self.fail(Code::NotFound, "no call result held"),
        }
    }
}

/// The call host function: checks the grant and the request, runs the
/// callee set with [`Host::on_call`] (outside the state's borrow, so the
/// callee may use the fake too) and holds its response.
pub(crate) fn call(callee: &[u8], req: &[u8], flags: i32) -> i32 {
    let prep = with(|h| {
        h.result = None;
        let service = String::from_utf8_lossy(callee).into_owned();
        if !h.calls.iter().any(|c| *c == service || c == "*") {
            let msg = format!("fake host: not granted calling {} (grants.calls)", codec::quote(&service, 64));
            return Err(h.fail(Code::Denied, &msg));
        }
        if flags & !1 != 0 {
            return Err(h.fail(Code::Invalid, "unknown call flags"));
        }
        let mut d = Dec::new(req);
        let decoded = (|| -> Result<Called, &'static str> {
            let method = d.str()?.to_string();
            let path = d.str()?.to_string();
            let query = d.str()?.to_string();
            let headers = d.pairs()?.map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let body = d.bytes()?.to_vec();
            let retryable = flags & 1 != 0 || matches!(method.as_str(), "GET" | "HEAD" | "PUT" | "DELETE");
            Ok(Called { service: service.clone(), method, path, query, headers, body, retryable })
        })();
        let called = match decoded {
            Ok(c) => c,
            Err(e) => return Err(h.fail(Code::Invalid, e)),
        };
        if called.method.is_empty() || !called.method.bytes().all(|c| c.is_ascii_uppercase()) || !called.path.starts_with('/') {
            return Err(h.fail(Code::Invalid, "malformed call request"));
        }
        if !called.body.is_empty() && !json::valid(&called.body) {
            return Err(h.fail(Code::Invalid, "call body is not JSON"));
        }
        h.called.push(called.clone());
        match h.callee.clone() {
            Some(f) => Ok((f, called)),
            None => Err(h.fail(Code::NotFound, "fake host: no service answers calls")),
        }
    });
    let (f, called) = match prep {
        Ok(p) => p,
        Err(ret) => return ret,
    };
    match f(&called) {
        Ok(resp) => with(|h| {
            let mut b = Vec::new();
            resp.encode(&mut b);
            let n = b.len() as i32;
            h.result = Some(b);
            n
        }),
        Err(code) => with(|h| h.fail(code, "fake host: the callee failed")),
    }
}

/// The in-memory host, driving the service set up by one setup function.
pub struct Host {
    setup: fn(&mut Service),
}

impl Host {
    /// A fresh host for this thread (empty store, every topic granted, kv
    /// granted, no calls, no discovery) and a fresh registration of setup.
    pub fn new(setup: fn(&mut Service)) -> Host {
        with(|h| *h = State::default());
        crate::service::reset();
        Host { setup }
    }

    /// Grants publishing only these types (by default every type is).
    pub fn grant_publish(&self, types: &[&str]) -> &Host {
        with(|h| h.publish = Some(types.iter().map(|t| t.to_string()).collect()));
        self
    }
    /// Takes the kv grant away: every kv call is `Denied`.
    pub fn deny_kv(&self) -> &Host {
        with(|h| h.no_kv = true);
        self
    }
    /// Grants calling these services ("*": any).
    pub fn grant_calls(&self, services: &[&str]) -> &Host {
        with(|h| h.calls = services.iter().map(|t| t.to_string()).collect());
        self
    }
    /// Grants discovering these services ("*": any).
    pub fn grant_discover(&self, services: &[&str]) -> &Host {
        with(|h| h.discover = services.iter().map(|t| t.to_string()).collect());
        self
    }
    /// Sets a configuration value.
    pub fn set_config(&self, key: &str, value: &str) -> &Host {
        with(|h| h.config.insert(key.to_string(), value.to_string()));
        self
    }
    /// Makes a service known to discover.
    pub fn add_service(&self, info: ServiceInfo) -> &Host {
        with(|h| h.services.insert(info.name.clone(), info));
        self
    }
    /// Answers the service's calls with f (its Err is the call's code).
    pub fn on_call(&self, f: impl Fn(&Called) -> Result<Response, Code> + 'static) -> &Host {
        with(|h| h.callee = Some(Rc::new(f)));
        self
    }

    fn invoke(&self, input: Vec<u8>, export: fn(i32, fn(&mut Service)) -> i32) -> Result<Vec<u8>, Failure> {
        let n = input.len() as i32;
        with(|h| {
            h.input = input;
            h.output.clear();
            h.last_error.clear();
            h.pending.clear();
            h.pending_events.clear();
            h.result = None;
        });
        let code = export(n, self.setup);
        with(|h| {
            let pending = std::mem::take(&mut h.pending);
            let events = std::mem::take(&mut h.pending_events);
            let output = std::mem::take(&mut h.output);
            if code != 0 {
                return Err(Failure { code, message: String::from_utf8_lossy(&output).into_owned() });
            }
            for (k, v) in pending {
                match v {
                    Some(v) => h.kv.insert(k, v),
                    None => h.kv.remove(&k),
                };
            }
            h.events.extend(events);
            Ok(output)
        })
    }

    /// Runs meshd_describe and returns the declaration.
    pub fn describe(&self) -> Result<String, Failure> {
        self.invoke(Vec::new(), |_, setup| crate::service::describe(setup))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Serves a request as the gateway would: matches method and path
    /// (a "?query" on it is the query) against the declared routes and runs
    /// meshd_http. No route matching is a 404 problem from the fake.
    pub fn request(&self, method: &str, path: &str, body: &str) -> Result<Response, Failure> {
        self.request_with(method, path, &[], "", body.as_bytes())
    }

    /// request with headers (lower-case names) and a consumer.
    pub fn request_with(&self, method: &str, path: &str, headers: &[(&str, &str)], consumer: &str, body: &[u8]) -> Result<Response, Failure> {
        let (path, query) = match path.find('?') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (path, ""),
        };
        let svc = crate::service::service(self.setup);
        let (route, params) = match match_route(&svc, method, path) {
            Some(m) => m,
            None => return Ok(Response::problem(404, "Not Found", "no route")),
        };
        let mut b = Vec::with_capacity(128 + body.len());
        for s in [method, path, query, &route] {
            codec::put_bytes(&mut b, s.as_bytes());
        }
        codec::put_pairs(&mut b, params.len(), params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        codec::put_pairs(&mut b, headers.len(), headers.iter().copied());
        for s in [consumer, "req-fake", ""] {
            codec::put_bytes(&mut b, s.as_bytes());
        }
        codec::put_bytes(&mut b, body);
        let out = self.invoke(b, crate::service::http)?;
        Response::decode(&out).map_err(|e| Failure { code: 0, message: format!("the response does not decode: {e}") })
    }

    /// Delivers an event (attempt 1) to meshd_event.
    pub fn event(&self, event_type: &str, id: &str, data: &str) -> Result<(), Failure> {
        self.deliver(&EventFields { id, source: "fake", event_type, time: "2026-01-02T03:04:05.000000000Z", traceparent: "", attempt: 1, data: data.as_bytes() })
    }

    /// Delivers an event with every field given.
    pub fn deliver(&self, ev: &EventFields<'_>) -> Result<(), Failure> {
        let mut b = Vec::new();
        ev.encode(&mut b);
        self.invoke(b, crate::service::event).map(|_| ())
    }

    /// The stored value of key (applied writes only).
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        with(|h| h.kv.get(key).cloned())
    }
    /// Stores a value, as if an earlier call had.
    pub fn set_kv(&self, key: &str, value: &[u8]) {
        with(|h| h.kv.insert(key.to_string(), value.to_vec()));
    }
    /// The stored keys, in order.
    pub fn keys(&self) -> Vec<String> {
        with(|h| h.kv.keys().cloned().collect())
    }
    /// The events published by succeeded calls, in order.
    pub fn events(&self) -> Vec<Published> {
        with(|h| h.events.clone())
    }
    /// The log lines as (level, message).
    pub fn logs(&self) -> Vec<(i32, String)> {
        with(|h| h.logs.clone())
    }
    /// The calls made, in order (denied ones excluded).
    pub fn calls(&self) -> Vec<Called> {
        with(|h| h.called.clone())
    }
    /// How many times input_read was called (grow and retry shows here).
    pub fn input_reads(&self) -> usize {
        with(|h| h.reads)
    }
}

/// Matches method and path against the declared routes as net/http would
/// for these patterns: literal segments, {name} for one segment, {name...}
/// for the rest; the route with the most literal segments wins.
fn match_route(svc: &Service, method: &str, path: &str) -> Option<(String, Vec<(String, String)>)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut best: Option<(usize, String, Vec<(String, String)>)> = None;
    for (m, p, _) in svc.routes() {
        if m != method {
            continue;
        }
        let pat: Vec<&str> = p.trim_start_matches('/').split('/').collect();
        let mut params = Vec::new();
        let mut literal = 0;
        let mut ok = true;
        for (i, ps) in pat.iter().enumerate() {
            if let Some(name) = ps.strip_prefix('{').and_then(|s| s.strip_suffix("...}")) {
                params.push((name.to_string(), segs.get(i..).map(|r| r.join("/")).unwrap_or_default()));
                break;
            }
            let seg = match segs.get(i) {
                Some(s) => *s,
                None => {
                    ok = false;
                    break;
                }
            };
            if let Some(name) = ps.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if seg.is_empty() {
                    ok = false;
                    break;
                }
                params.push((name.to_string(), seg.to_string()));
            } else if *ps == seg {
                literal += 1;
            } else {
                ok = false;
                break;
            }
            if i == pat.len() - 1 && segs.len() != pat.len() {
                ok = false;
            }
        }
        if ok && best.as_ref().map_or(true, |b| literal > b.0) {
            best = Some((literal, format!("{m} {p}"), params));
        }
    }
    best.map(|(_, r, p)| (r, p))
}
