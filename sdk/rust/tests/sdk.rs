//! The SDK against the in-memory host: registrations and the declaration,
//! dispatch, the encodings, host calls and their errors, effects.

use std::time::Duration;

use meshd_guest::fake::{Called, Host, Published};
use meshd_guest::{json, key, kv, parse_key, CallRequest, Code, Level, Request, Response, Result, Service, ServiceInfo};

fn setup(s: &mut Service) {
    s.declare("demo", "1.2.3")
        .publishes(&["DEMO_DONE"])
        .handle("POST /items/{id}", put_item)
        .handle("GET /items/{id}", get_item)
        .handle("GET /files/{rest...}", |r| Ok(Response::json(200, json_str(r.param("rest").unwrap_or("")))))
        .handle("GET /echo", echo)
        .handle("GET /fail", |_| Err(meshd_guest::Error::internal("the handler failed")))
        .handle("POST /publish-then-fail", |r| {
            meshd_guest::publish("DEMO_DONE", r.body())?;
            kv::set("k", b"1")?;
            Err(meshd_guest::Error::internal("after effects"))
        })
        .handle("GET /config/{key}", |r| match meshd_guest::config(r.param("key").unwrap_or(""))? {
            Some(v) => Ok(Response::json(200, json_str(&v))),
            None => Ok(Response::problem(404, "Not Found", "")),
        })
        .handle("GET /discover/{name}", |r| match meshd_guest::discover(r.param("name").unwrap_or(""))? {
            Some(i) => Ok(Response::json(200, format!("{}|{}|{}|{}", i.name, i.status, i.version, i.instances))),
            None => Ok(Response::new(404)),
        })
        .handle("POST /call", |r| {
            let resp = meshd_guest::call("other", &CallRequest::post("/x?a=1", r.body()).header("X-Trace-Me", "1"))?;
            Ok(Response::json(resp.status(), resp.body().to_vec()))
        })
        .handle("GET /get", |_| match meshd_guest::get("other", "/y") {
            Ok(b) => Ok(Response::json(200, b)),
            Err(e) => Ok(Response::problem(502, "Bad Gateway", &e.to_string())),
        })
        .handle("POST /delayed", |r| {
            meshd_guest::publish_delayed("DEMO_DONE", r.body(), Duration::from_secs(2))?;
            Ok(Response::new(202))
        })
        .handle_internal("GET /internal", |r| Ok(Response::json(200, json_str(r.calling_service().unwrap_or("")))))
        .subscribe("DEMO_DONE", |e| {
            meshd_guest::log(Level::Info, "got an event");
            kv::set(&key(&["seen", e.id()]), e.data())
        });
}

fn json_str(s: &str) -> Vec<u8> {
    let mut w = json::Writer::new();
    w.string(s);
    w.into_bytes()
}

fn put_item(r: &Request) -> Result<Response> {
    let id = r.param("id").unwrap_or("");
    let [name] = json::string_fields(r.body(), ["name"])?;
    let name = match name {
        Some(n) if !n.is_empty() => n,
        _ => return Ok(Response::problem(400, "Bad Request", "name is required")),
    };
    let mut w = json::Writer::new();
    w.object_start();
    w.string_field("id", id);
    w.string_field("name", &name);
    w.object_end();
    kv::set(&key(&["item", id]), w.as_bytes())?;
    meshd_guest::publish("DEMO_DONE", w.as_bytes())?;
    Ok(Response::json(201, w.into_bytes()).header("location", &format!("/items/{id}")))
}

fn get_item(r: &Request) -> Result<Response> {
    match kv::get(&key(&["item", r.param("id").unwrap_or("")]))? {
        Some(v) => Ok(Response::json(200, v)),
        None => Ok(Response::problem(404, "Not Found", "no such item")),
    }
}

fn echo(r: &Request) -> Result<Response> {
    let mut w = json::Writer::new();
    w.object_start();
    w.string_field("method", r.method());
    w.string_field("path", r.path());
    w.string_field("route", r.route());
    w.string_field("q", &r.query_value("q").unwrap_or_default());
    w.string_field("h", r.header("X-Thing").unwrap_or("-"));
    w.string_field("consumer", r.consumer());
    w.string_field("rid", r.request_id());
    w.object_end();
    Ok(Response::json(200, w.into_bytes()))
}

#[test]
fn declaration_is_generated_from_registrations() {
    let h = Host::new(setup);
    let d = h.describe().unwrap();
    assert!(d.starts_with(r#"{"name":"demo","version":"1.2.3","routes":[{"method":"POST","path":"/items/{id}"},"#), "{d}");
    assert!(d.contains(r#"{"method":"GET","path":"/internal","internal":true}"#), "{d}");
    assert!(d.ends_with(r#""subscriptions":[{"type":"DEMO_DONE"}],"publishes":["DEMO_DONE"]}"#), "{d}");
    assert!(json::valid(d.as_bytes()));
}

fn bad_setup(s: &mut Service) {
    s.handle("get /x", |_| Ok(Response::new(200)))
        .handle("GET /a/{b", |_| Ok(Response::new(200)))
        .handle("GET /ok", |_| Ok(Response::new(200)))
        .handle("GET /ok", |_| Ok(Response::new(200)))
        .subscribe("BAD TYPE", |_| Ok(()));
}

#[test]
fn bad_registrations_fail_describe_with_every_reason() {
    let h = Host::new(bad_setup);
    let f = h.describe().unwrap_err();
    assert_eq!(f.code, Code::Invalid as i32);
    for want in ["method must be upper-case letters", "a wildcard must be a whole segment", "route registered twice", "may hold only letters"] {
        assert!(f.message.contains(want), "{want:?} missing from {:?}", f.message);
    }
}

#[test]
fn write_then_read_and_effects_applied_on_success() {
    let h = Host::new(setup);
    let r = h.request("POST", "/items/a:b", r#"{"name":"Box \"1\""}"#).unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.get_header("Location"), Some("/items/a:b"));
    assert_eq!(r.body(), br#"{"id":"a:b","name":"Box \"1\""}"#);
    // The key is escaped like the Go SDK's guest.Key.
    assert_eq!(h.keys(), vec!["item:a%3Ab".to_string()]);
    assert_eq!(h.events(), vec![Published { event_type: "DEMO_DONE".into(), data: r.body().to_vec(), delay_ms: None }]);
    let g = h.request("GET", "/items/a:b", "").unwrap();
    assert_eq!((g.status(), g.body()), (200, r.body()));
    let missing = h.request("GET", "/items/zz", "").unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.get_header("content-type"), Some("application/problem+json"));
    assert_eq!(missing.body(), br#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no such item"}"#);
    let bad = h.request("POST", "/items/x", r#"{"name":""}"#).unwrap();
    assert_eq!(bad.status(), 400);
}

#[test]
fn a_failed_call_leaves_no_effects() {
    let h = Host::new(setup);
    let f = h.request("POST", "/publish-then-fail", "{}").unwrap_err();
    assert_eq!(f.code, Code::Internal as i32);
    assert_eq!(f.message, "internal error: after effects");
    assert!(h.events().is_empty() && h.keys().is_empty());
    let f = h.request("GET", "/fail", "").unwrap_err();
    assert_eq!(f.message, "internal error: the handler failed");
}

#[test]
fn request_fields_reach_the_handler() {
    let h = Host::new(setup);
    let r = h.request_with("GET", "/echo?x=1&q=a+b%21", &[("x-thing", "v1"), ("x-thing", "v2")], "service:order", b"").unwrap();
    assert_eq!(
        std::str::from_utf8(r.body()).unwrap(),
        r#"{"method":"GET","path":"/echo","route":"GET /echo","q":"a b!","h":"v1","consumer":"service:order","rid":"req-fake"}"#
    );
    let r = h.request("GET", "/files/a/b/c", "").unwrap();
    assert_eq!(r.body(), br#""a/b/c""#);
}

#[test]
fn an_unknown_route_or_type_is_answered() {
    let h = Host::new(setup);
    // The SDK answers a route it has no handler for (the host never sends
    // one; the fake's matcher never does either, so drive the export).
    let f = h.event("NOPE", "e1", "{}").unwrap_err();
    assert_eq!(f.code, Code::NotFound as i32);
    assert_eq!(f.message, r#"event: no handler for type "NOPE""#);
}

#[test]
fn events_are_handled_and_logged() {
    let h = Host::new(setup);
    h.event("DEMO_DONE", "ev:1", r#"{"n":1}"#).unwrap();
    assert_eq!(h.kv("seen:ev%3A1").as_deref(), Some(&br#"{"n":1}"#[..]));
    assert_eq!(h.logs(), vec![(0, "got an event".to_string())]);
}

#[test]
fn denied_and_invalid_publishes_are_errors_with_the_hosts_message() {
    let h = Host::new(setup);
    h.grant_publish(&["OTHER"]);
    let f = h.request("POST", "/items/1", r#"{"name":"n"}"#).unwrap_err();
    assert_eq!(f.message, r#"denied: fake host: not granted publishing "DEMO_DONE""#);
    assert!(h.keys().is_empty(), "the write of the failed call was applied");
    let h = Host::new(setup);
    h.deny_kv();
    let f = h.request("GET", "/items/1", "").unwrap_err();
    assert!(f.message.starts_with("denied: "), "{}", f.message);
}

#[test]
fn large_values_are_read_with_grow_and_retry() {
    let h = Host::new(setup);
    let big = format!(r#"{{"id":"big","name":"{}"}}"#, "x".repeat(20000));
    h.set_kv("item:big", big.as_bytes());
    let r = h.request("GET", "/items/big", "").unwrap();
    assert_eq!(r.body(), big.as_bytes());
    // The input is read once: its length is known up front.
    assert_eq!(h.input_reads(), 1);
}

#[test]
fn config_and_discover() {
    let h = Host::new(setup);
    h.set_config("limit", "5");
    assert_eq!(h.request("GET", "/config/limit", "").unwrap().body(), br#""5""#);
    assert_eq!(h.request("GET", "/config/none", "").unwrap().status(), 404);
    let f = h.request("GET", "/discover/pay", "").unwrap_err();
    assert!(f.message.contains("not granted discovering"), "{}", f.message);
    h.grant_discover(&["pay"]).add_service(ServiceInfo { name: "pay".into(), status: "UP".into(), version: "1".into(), instances: 2 });
    assert_eq!(h.request("GET", "/discover/pay", "").unwrap().body(), b"pay|UP|1|2");
}

#[test]
fn calls_carry_the_request_and_return_the_response() {
    let h = Host::new(setup);
    let f = h.request("POST", "/call", "{}").unwrap_err();
    assert!(f.message.contains("not granted calling \"other\""), "{}", f.message);
    h.grant_calls(&["other"]).on_call(|c: &Called| Ok(Response::json(207, c.body.clone())));
    let r = h.request("POST", "/call", r#"{"big":"yes"}"#).unwrap();
    assert_eq!((r.status(), r.body()), (207, &br#"{"big":"yes"}"#[..]));
    let c = &h.calls()[0];
    assert_eq!((c.method.as_str(), c.path.as_str(), c.query.as_str(), c.retryable), ("POST", "/x", "a=1", false));
    assert_eq!(c.headers, vec![("x-trace-me".to_string(), "1".to_string())]);

    h.on_call(|_| Ok(Response::problem(404, "Not Found", "")));
    let r = h.request("GET", "/get", "").unwrap();
    assert_eq!(r.status(), 502);
    assert!(std::str::from_utf8(r.body()).unwrap().contains(r#"not found: \"other\" answered 404"#), "{:?}", std::str::from_utf8(r.body()));
}

#[test]
fn delayed_publish_and_internal_routes() {
    let h = Host::new(setup);
    assert_eq!(h.request("POST", "/delayed", "{}").unwrap().status(), 202);
    assert_eq!(h.events()[0].delay_ms, Some(2000));
    let r = h.request_with("GET", "/internal", &[], "service:order", b"").unwrap();
    assert_eq!(r.body(), br#""order""#);
}

#[test]
fn keys_match_the_go_sdk() {
    for (parts, want) in [
        (&["order", "0b5e6c1e-9a8f-4f7e-8a43-0c1d2e3f4a5b"][..], "order:0b5e6c1e-9a8f-4f7e-8a43-0c1d2e3f4a5b"),
        (&["rm", "user", "alice", "0"][..], "rm:user:alice:0"),
        (&["rm", "user", "alice:0"][..], "rm:user:alice%3A0"),
        (&["a%3A"][..], "a%253A"),
        (&["é/* >"][..], "%C3%A9%2F%2A%20%3E"),
        (&["x", ""][..], "x:"),
        (&[""][..], ""),
        (&[][..], ""),
    ] {
        assert_eq!(key(parts), want, "{parts:?}");
        if !parts.is_empty() {
            assert_eq!(parse_key(want).unwrap(), parts.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        }
    }
    for bad in ["a b", "a%3", "a%", "a%3a", "a%41", "a%ZZ", "é", "a/b"] {
        assert_eq!(parse_key(bad), None, "{bad:?}");
    }
}

#[test]
fn json_reader_and_writer() {
    let doc = br#" {"s":"a\"\\\/\n\u00e9\ud83d\ude00","n":-12,"f":1.5e3,"b":true,"z":null,"a":[1,{"x":[]}],"o":{}} "#;
    let mut r = json::Reader::new(doc);
    let mut seen = Vec::new();
    r.object(|r, k| {
        match k {
            "s" => seen.push(r.string()?.into_owned()),
            "n" => seen.push(r.int()?.to_string()),
            "f" => seen.push(r.number()?.to_string()),
            "b" => seen.push(r.bool()?.to_string()),
            "z" => seen.push(r.null().to_string()),
            _ => r.skip()?,
        }
        Ok(())
    })
    .unwrap();
    r.end().unwrap();
    assert_eq!(seen, vec!["a\"\\/\né😀", "-12", "1.5e3", "true", "true"]);

    for bad in [&b"{"[..], b"{\"a\"}", b"[1,]", b"01", b"\"\x01\"", b"{} x", b"tru", b"\"\\q\"", b"", b"1.", b"-"] {
        assert!(!json::valid(bad), "{:?} is not JSON", std::str::from_utf8(bad));
    }
    let deep = "[".repeat(100) + &"]".repeat(100);
    assert!(!json::valid(deep.as_bytes()), "nesting past MAX_DEPTH is refused");
    assert!(json::valid(("[".repeat(60) + &"]".repeat(60)).as_bytes()));

    let mut w = json::Writer::new();
    w.object_start();
    w.string_field("s", "q\"\\\n\t\x01<é");
    w.int_field("min", i64::MIN);
    w.key("a");
    w.array_start();
    w.int(0);
    w.bool(false);
    w.null();
    w.raw(b"{}");
    w.array_end();
    w.object_end();
    assert_eq!(std::str::from_utf8(w.as_bytes()).unwrap(), r#"{"s":"q\"\\\n\t\u0001\u003cé","min":-9223372036854775808,"a":[0,false,null,{}]}"#);
    let [s] = json::string_fields(w.as_bytes(), ["s"]).unwrap();
    assert_eq!(s.as_deref(), Some("q\"\\\n\t\x01<é"));
    assert!(json::string_fields(br#"{"s":1}"#, ["s"]).is_err());
}

#[test]
fn codes_round_trip() {
    for c in 1..=8 {
        assert_eq!(Code::from_i32(-c).as_i32(), c);
    }
    assert_eq!(Code::from_i32(-99), Code::Internal);
    assert_eq!(meshd_guest::Error::new(Code::Denied, "x").to_string(), "denied: x");
}
