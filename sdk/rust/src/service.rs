//! The service's registrations (routes, subscriptions, publications), the
//! declaration generated from them, and the exports' dispatch.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::codec::quote;
use crate::json::Writer;
use crate::{sys, Code, Error, Event, Request, Response, Result};

type HttpHandler = Box<dyn Fn(&Request<'_>) -> Result<Response>>;
type EventHandler = Box<dyn Fn(&Event<'_>) -> Result<()>>;

struct Route {
    method: String,
    path: String,
    internal: bool,
}

/// What the service serves and publishes. The function given to
/// [`service!`](crate::service) fills it once per instance, before the
/// first call; `meshd_describe` declares what it holds.
#[derive(Default)]
pub struct Service {
    name: String,
    version: String,
    routes: Vec<Route>,
    handlers: BTreeMap<String, HttpHandler>, // by the declared route, "METHOD /path"
    subscriptions: Vec<String>,
    subscribers: BTreeMap<String, EventHandler>, // by event type
    publishes: Vec<String>,
    problems: Vec<String>,
}

impl Service {
    /// Sets the service's name and version. The name is optional; when set
    /// it must equal the module's file name without ".wasm".
    pub fn declare(&mut self, name: &str, version: &str) -> &mut Service {
        self.name = name.to_string();
        self.version = version.to_string();
        self
    }

    /// Registers h for a route: a method, one space and a Go 1.22 net/http
    /// path pattern, e.g. "GET /orders/{id}". The gateway matches it and
    /// hands the request to h, wildcards in [`Request::param`]. Other
    /// services reach every route with [`call`](crate::call).
    ///
    /// A malformed pattern or a route registered twice fails the module's
    /// load with a message saying so.
    pub fn handle<F>(&mut self, pattern: &str, h: F) -> &mut Service
    where
        F: Fn(&Request<'_>) -> Result<Response> + 'static,
    {
        self.add_route(pattern, false, Box::new(h))
    }

    /// Registers an internal route: callable by other services
    /// ([`call`](crate::call)), not served by the gateway (ABI v1.2).
    pub fn handle_internal<F>(&mut self, pattern: &str, h: F) -> &mut Service
    where
        F: Fn(&Request<'_>) -> Result<Response> + 'static,
    {
        self.add_route(pattern, true, Box::new(h))
    }

    fn add_route(&mut self, pattern: &str, internal: bool, h: HttpHandler) -> &mut Service {
        match parse_pattern(pattern) {
            Err(why) => self.problems.push(format!("handle({}): {why}", quote(pattern, 256))),
            Ok((method, path)) => {
                let key = format!("{method} {path}");
                if self.handlers.contains_key(&key) {
                    self.problems.push(format!("handle({}): route registered twice", quote(pattern, 256)));
                } else {
                    self.handlers.insert(key, h);
                    self.routes.push(Route { method: method.to_string(), path: path.to_string(), internal });
                }
            }
        }
        self
    }

    /// Registers h for events of one type. An error from h has the event
    /// redelivered. An invalid type or a type subscribed twice fails the
    /// module's load.
    pub fn subscribe<F>(&mut self, event_type: &str, h: F) -> &mut Service
    where
        F: Fn(&Event<'_>) -> Result<()> + 'static,
    {
        if let Err(why) = check_event_type(event_type) {
            self.problems.push(format!("subscribe({}): {why}", quote(event_type, 256)));
        } else if self.subscribers.contains_key(event_type) {
            self.problems.push(format!("subscribe({}): subscribed twice", quote(event_type, 256)));
        } else {
            self.subscribers.insert(event_type.to_string(), Box::new(h));
            self.subscriptions.push(event_type.to_string());
        }
        self
    }

    /// Declares the event types the service publishes; the operator must
    /// grant them for the module to load.
    pub fn publishes(&mut self, types: &[&str]) -> &mut Service {
        for t in types {
            if let Err(why) = check_event_type(t) {
                self.problems.push(format!("publishes({}): {why}", quote(t, 256)));
            } else if !self.publishes.iter().any(|p| p == t) {
                self.publishes.push(t.to_string());
            }
        }
        self
    }

    /// The declaration JSON (docs/ABI.md, "Declaration"), or the problems
    /// of the registrations.
    pub fn declaration(&self) -> std::result::Result<Vec<u8>, String> {
        if !self.problems.is_empty() {
            return Err(self.problems.join("; "));
        }
        let mut w = Writer::with_capacity(256);
        w.object_start();
        if !self.name.is_empty() {
            w.string_field("name", &self.name);
        }
        if !self.version.is_empty() {
            w.string_field("version", &self.version);
        }
        if !self.routes.is_empty() {
            w.key("routes");
            w.array_start();
            for r in &self.routes {
                w.object_start();
                w.string_field("method", &r.method);
                w.string_field("path", &r.path);
                if r.internal {
                    w.bool_field("internal", true);
                }
                w.object_end();
            }
            w.array_end();
        }
        if !self.subscriptions.is_empty() {
            w.key("subscriptions");
            w.array_start();
            for t in &self.subscriptions {
                w.object_start();
                w.string_field("type", t);
                w.object_end();
            }
            w.array_end();
        }
        if !self.publishes.is_empty() {
            w.key("publishes");
            w.array_start();
            for t in &self.publishes {
                w.string(t);
            }
            w.array_end();
        }
        w.object_end();
        Ok(w.into_bytes())
    }

    /// The declared routes as (method, path, internal).
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.routes.iter().map(|r| (r.method.as_str(), r.path.as_str(), r.internal))
    }
}

/// Splits "METHOD /path" and checks both halves as the Go SDK does.
fn parse_pattern(p: &str) -> std::result::Result<(&str, &str), &'static str> {
    let i = match p.find(|c| c == ' ' || c == '\t') {
        Some(i) if i > 0 => i,
        _ => return Err("want \"METHOD /path\""),
    };
    let (method, path) = (&p[..i], p[i..].trim_start_matches(|c| c == ' ' || c == '\t'));
    if !method.bytes().all(|c| c.is_ascii_uppercase()) {
        return Err("method must be upper-case letters");
    }
    if !path.starts_with('/') {
        return Err("path must start with '/'");
    }
    if path.contains(|c| c == ' ' || c == '\t') {
        return Err("path must not contain spaces");
    }
    let segs: Vec<&str> = path[1..].split('/').collect();
    for (k, seg) in segs.iter().enumerate() {
        if !seg.contains(|c| c == '{' || c == '}') {
            continue;
        }
        if !seg.starts_with('{') || !seg.ends_with('}') || seg.matches('{').count() != 1 || seg.matches('}').count() != 1 {
            return Err("a wildcard must be a whole segment: {name}");
        }
        let mut name = &seg[1..seg.len() - 1];
        if let Some(rest) = name.strip_suffix("...") {
            if k != segs.len() - 1 {
                return Err("{name...} must be the last segment");
            }
            name = rest;
        }
        if name == "$" && k == segs.len() - 1 {
            continue;
        }
        let ident = !name.is_empty()
            && name.bytes().enumerate().all(|(i, c)| c == b'_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()) || c >= 0x80);
        if !ident {
            return Err("wildcard name must be a Go identifier");
        }
    }
    Ok((method, path))
}

/// The ABI's rule for event types: 1-128 bytes, tokens of letters, digits,
/// '_' and '-' separated by single dots.
pub fn check_event_type(t: &str) -> std::result::Result<(), &'static str> {
    if t.is_empty() {
        return Err("event type is empty");
    }
    if t.len() > 128 {
        return Err("event type is longer than 128 bytes");
    }
    for tok in t.split('.') {
        if tok.is_empty() {
            return Err("event type has an empty dot-separated token");
        }
        if !tok.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
            return Err("event type may hold only letters, digits, '_' and '-' and dots between tokens");
        }
    }
    Ok(())
}

thread_local! {
    static SERVICE: RefCell<Option<Rc<Service>>> = RefCell::new(None);
    static INPUT: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    static OUTPUT: RefCell<Vec<u8>> = RefCell::new(Vec::new());
}

/// The registered service, set up on first use.
pub(crate) fn service(setup: fn(&mut Service)) -> Rc<Service> {
    if let Some(s) = SERVICE.with(|s| s.borrow().clone()) {
        return s;
    }
    #[cfg(target_arch = "wasm32")]
    install_panic_hook();
    let mut s = Service::default();
    setup(&mut s);
    let s = Rc::new(s);
    SERVICE.with(|c| *c.borrow_mut() = Some(s.clone()));
    s
}

/// Forgets the registered service (the fake host starts each test afresh).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn reset() {
    SERVICE.with(|s| *s.borrow_mut() = None);
}

/// A panic aborts the instance (panic = "abort": the call traps and the
/// host throws the instance away); the hook logs its message first, cut
/// to 1 KiB, so the operator sees why.
#[cfg(target_arch = "wasm32")]
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        let mut cut = msg.len().min(1024);
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        let _ = sys::log(crate::Level::Error as i32, msg[..cut].as_bytes());
    }));
}

fn fail(code: Code, msg: &str) -> i32 {
    let _ = sys::output_write(msg.as_bytes());
    code as i32
}

/// Runs f with the call's input of n bytes read into the reused input
/// buffer.
fn with_input<T>(n: i32, f: impl FnOnce(std::result::Result<&[u8], Error>) -> T) -> T {
    let mut buf = INPUT.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let res = if n < 0 {
        Err(Error::invalid("negative input length"))
    } else {
        sys::fill(&mut buf, n as usize, sys::input_read).map_err(crate::host_error)
    };
    let out = match res {
        Ok(len) => f(Ok(&buf[..len])),
        Err(e) => f(Err(e)),
    };
    INPUT.with(|b| *b.borrow_mut() = buf);
    out
}

/// meshd_describe.
#[doc(hidden)]
pub fn describe(setup: fn(&mut Service)) -> i32 {
    match service(setup).declaration() {
        Ok(decl) => {
            if sys::output_write(&decl) < 0 {
                return Code::Internal as i32;
            }
            0
        }
        Err(why) => fail(Code::Invalid, &why),
    }
}

/// meshd_http: reads the request, runs the handler of its route, writes
/// the response.
#[doc(hidden)]
pub fn http(n: i32, setup: fn(&mut Service)) -> i32 {
    let svc = service(setup);
    with_input(n, |input| {
        let input = match input {
            Ok(b) => b,
            Err(e) => return fail(Code::Internal, &format!("http: reading input: {e}")),
        };
        let req = match Request::decode(input) {
            Ok(r) => r,
            Err(e) => return fail(Code::Invalid, &format!("http: decoding request: {e}")),
        };
        let resp = match svc.handlers.get(req.route()) {
            Some(h) => match h(&req) {
                Ok(r) => r,
                Err(e) => return fail(Code::Internal, &e.to_string()),
            },
            None => Response::problem(404, "Not Found", &format!("no handler for route {}", quote(req.route(), 256))),
        };
        OUTPUT.with(|o| {
            let mut o = o.borrow_mut();
            o.clear();
            resp.encode(&mut o);
            let ret = sys::output_write(&o);
            drop(o);
            if ret < 0 {
                return fail(Code::Internal, &format!("http: writing response: {}", crate::host_error(ret)));
            }
            0
        })
    })
}

/// meshd_event: reads the event and runs the handler of its type; a
/// handler error fails the call, so the host redelivers.
#[doc(hidden)]
pub fn event(n: i32, setup: fn(&mut Service)) -> i32 {
    let svc = service(setup);
    with_input(n, |input| {
        let input = match input {
            Ok(b) => b,
            Err(e) => return fail(Code::Internal, &format!("event: reading input: {e}")),
        };
        let ev = match Event::decode(input) {
            Ok(e) => e,
            Err(e) => return fail(Code::Invalid, &format!("event: decoding: {e}")),
        };
        match svc.subscribers.get(ev.event_type()) {
            Some(h) => match h(&ev) {
                Ok(()) => 0,
                Err(e) => fail(Code::Internal, &e.to_string()),
            },
            None => fail(Code::NotFound, &format!("event: no handler for type {}", quote(ev.event_type(), 256))),
        }
    })
}
