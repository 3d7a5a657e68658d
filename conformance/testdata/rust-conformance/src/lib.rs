//! The Rust guest of the cross-language ABI conformance suite (package
//! conformance): the routes of host/testdata/conformance.wat under /rust,
//! event type RUST_EVENT, service conformance-rust, written with
//! meshd-guest. `make fixtures` builds it into
//! conformance/testdata/rust-conformance.wasm.
//!
//! POST /rust/work is the benchmark's handler (not in the WAT guest): it
//! reads a small JSON order, stores it under work:<id> and publishes it.

use meshd_guest::{call, json, key, kv, log, publish, CallRequest, Code, Error, Level, Request, Response, Result, Service};

const NAME: &str = "conformance-rust";
const EVENT: &str = "RUST_EVENT";

fn setup(s: &mut Service) {
    s.declare(NAME, "1.0.0")
        .publishes(&[EVENT])
        .subscribe(EVENT, |e| {
            kv::set("last-event", e.data())?;
            log(Level::Info, "conformance guest handled an event");
            Ok(())
        })
        .handle("POST /rust/echo", |r| Ok(Response::json(200, r.body())))
        .handle("POST /rust/kv", |r| match kv::set("value", r.body()) {
            Ok(()) => get_key("value"),
            Err(e) => Ok(Response::json(500, e.message())),
        })
        .handle("GET /rust/kv", |_| get_key("value"))
        .handle("GET /rust/event", |_| get_key("last-event"))
        .handle("POST /rust/publish", |r| match publish(EVENT, r.body()) {
            Ok(()) => Ok(Response::json(202, "{}")),
            Err(e) => Ok(Response::json(500, e.message())),
        })
        .handle("GET /rust/badptr", |_| Ok(bad_pointer(Raw::KvGet)))
        .handle("GET /rust/trap", |_| panic!("the conformance guest traps on purpose"))
        .handle("GET /rust/denied", |_| match publish("NOT_GRANTED", b"{}") {
            Err(e) if e.is(Code::Denied) => Ok(Response::json(403, e.message())),
            _ => Ok(Response::json(500, "{}")),
        })
        .handle_internal("GET /rust/whoami", |r| Ok(Response::json(200, r.consumer())))
        .handle("POST /rust/call", |r| call_and_answer(CallRequest::post("/rust/echo", r.body())))
        .handle("GET /rust/call-whoami", |_| call_and_answer(CallRequest::get("/rust/whoami")))
        .handle("GET /rust/call-denied", |_| match call("not-granted", &CallRequest::get("/rust/echo")) {
            Err(e) if e.is(Code::Denied) => Ok(Response::json(403, e.message())),
            _ => Ok(Response::json(500, "{}")),
        })
        .handle("GET /rust/call-badptr", |_| Ok(bad_pointer(Raw::Call)))
        .handle("POST /rust/work", work);
}

meshd_guest::service!(setup);

fn get_key(k: &str) -> Result<Response> {
    match kv::get(k)? {
        Some(v) => Ok(Response::json(200, v)),
        None => Ok(Response::json(404, "{}")),
    }
}

fn call_and_answer(req: CallRequest) -> Result<Response> {
    match call(NAME, &req) {
        Ok(resp) => Ok(Response::json(resp.status(), resp.body())),
        Err(e) => Ok(Response::json(502, e.message())),
    }
}

enum Raw {
    KvGet,
    Call,
}

/// Hands the host a buffer past the end of memory, as the SDK never does:
/// 200 with the host's message when it answers bad pointer, 500 otherwise.
#[cfg(target_arch = "wasm32")]
fn bad_pointer(which: Raw) -> Response {
    use meshd_guest::raw;
    const BAD: i32 = 0xFFFF_FFF0_u32 as i32;
    let ret = unsafe {
        match which {
            Raw::KvGet => raw::kv_get(b"value".as_ptr() as i32, 5, BAD, 64),
            Raw::Call => raw::call(NAME.as_ptr() as i32, NAME.len() as i32, BAD, 16, 0),
        }
    };
    if ret != -1 {
        return Response::json(500, "{}");
    }
    let mut buf = vec![0u8; 4096];
    let n = unsafe { raw::last_error(buf.as_mut_ptr() as i32, buf.len() as i32) };
    buf.truncate(n.clamp(0, 4096) as usize);
    Response::json(200, buf)
}

#[cfg(not(target_arch = "wasm32"))]
fn bad_pointer(_: Raw) -> Response {
    Response::json(500, "{}")
}

/// {"id":"o-1","sku":"book","qty":2} is stored under work:<id> and
/// published; 202 with {"id":...}.
fn work(r: &Request) -> Result<Response> {
    let (mut id, mut sku, mut qty) = (None, None, 0);
    let mut rd = json::Reader::new(r.body());
    let parsed = rd
        .object(|rd, k| {
            match k {
                "id" => id = Some(rd.string()?),
                "sku" => sku = Some(rd.string()?),
                "qty" => qty = rd.int()?,
                _ => rd.skip()?,
            }
            Ok(())
        })
        .and_then(|()| rd.end().map_err(Error::from));
    let id = match (parsed, id) {
        (Ok(()), Some(id)) if !id.is_empty() => id,
        _ => return Ok(Response::problem(400, "Bad Request", "want {\"id\",\"sku\",\"qty\"}")),
    };
    let mut w = json::Writer::with_capacity(96);
    w.object_start();
    w.string_field("id", &id);
    w.string_field("sku", sku.as_deref().unwrap_or(""));
    w.int_field("qty", qty);
    w.object_end();
    kv::set(&key(&["work", &id]), w.as_bytes())?;
    publish(EVENT, w.as_bytes())?;
    w.clear();
    w.object_start();
    w.string_field("id", &id);
    w.object_end();
    Ok(Response::json(202, w.into_bytes()))
}
