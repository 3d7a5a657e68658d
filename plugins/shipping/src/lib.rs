//! The shipping service, a meshd plugin written in Rust (meshd-guest).
//!
//! When an order is paid (ORDER_PAID from the order service) it creates
//! the order's shipment in its own store and publishes SHIPMENT_CREATED;
//! GET /shipments/{order_id} answers the shipment, or 404 before it
//! exists.
//!
//! Idempotent by construction: the shipment of an order is one key
//! (`shipment:<order_id>`), and the event's id is remembered
//! (`event:<event id>`) by the same invocation that writes the shipment and
//! publishes, so the check and all three effects are applied together or
//! not at all. A redelivered event, or a second ORDER_PAID of the same
//! order, creates nothing and publishes nothing.
//!
//! Build: `make plugins` (build/plugins/shipping.wasm), or
//! `cargo build --release --target wasm32-wasip1` (wasm32-wasi before
//! Rust 1.78).

use meshd_guest::{json, key, kv, log, publish, Error, Event, Level, Request, Response, Result, Service};

/// The event this service reacts to and the one it publishes.
pub const ORDER_PAID: &str = "ORDER_PAID";
pub const SHIPMENT_CREATED: &str = "SHIPMENT_CREATED";

/// The longest order id taken: escaped, a key stays well under the
/// host's 1024 bytes.
pub const MAX_ID: usize = 200;

fn setup(s: &mut Service) {
    s.declare("shipping", "1.0.0")
        .publishes(&[SHIPMENT_CREATED])
        .subscribe(ORDER_PAID, order_paid)
        .handle("GET /shipments/{order_id}", get_shipment);
}

meshd_guest::service!(setup);

fn shipment_key(order_id: &str) -> String {
    key(&["shipment", order_id])
}

fn event_key(event_id: &str) -> String {
    key(&["event", event_id])
}

/// ORDER_PAID {"order_id","user_id",...}: creates the order's shipment
/// once and publishes SHIPMENT_CREATED.
fn order_paid(e: &Event) -> Result<()> {
    let [order_id, user_id] = json::string_fields(e.data(), ["order_id", "user_id"])
        .map_err(|err| err.context("ORDER_PAID: invalid data"))?;
    let order_id = order_id.unwrap_or_default();
    if order_id.is_empty() || order_id.len() > MAX_ID {
        return Err(Error::invalid(format!("ORDER_PAID: invalid data: order_id must be 1-{MAX_ID} bytes")));
    }
    let user_id = user_id.unwrap_or_default();
    if user_id.len() > MAX_ID {
        return Err(Error::invalid(format!("ORDER_PAID: invalid data: user_id must be at most {MAX_ID} bytes")));
    }
    let done = event_key(e.id());
    if kv::get(&done)?.is_some() {
        return Ok(()); // a redelivery: this event's effects are applied
    }
    let skey = shipment_key(&order_id);
    if kv::get(&skey)?.is_some() {
        // Paid again (a duplicate payment's ORDER_PAID): one shipment per order.
        return kv::set(&done, b"1");
    }
    let shipment_id = key(&["shp", e.id()]);
    let mut w = json::Writer::with_capacity(192);
    w.object_start();
    w.string_field("shipment_id", &shipment_id);
    w.string_field("order_id", &order_id);
    w.string_field("user_id", &user_id);
    w.string_field("status", "CREATED");
    w.string_field("created_at", e.time());
    w.object_end();
    let shipment = w.into_bytes();
    kv::set(&skey, &shipment)?;
    kv::set(&done, b"1")?;
    publish(SHIPMENT_CREATED, &shipment)?;
    let mut msg = String::from("shipment created for order ");
    msg.push_str(&String::from_utf8_lossy(&json_quote(&order_id)));
    log(Level::Info, &msg);
    Ok(())
}

/// GET /shipments/{order_id}.
fn get_shipment(r: &Request) -> Result<Response> {
    let order_id = r.param("order_id").unwrap_or("");
    if order_id.len() > MAX_ID {
        return Ok(Response::problem(404, "Not Found", "no such shipment"));
    }
    match kv::get(&shipment_key(order_id))? {
        Some(v) => Ok(Response::json(200, v)),
        None => {
            let mut detail = String::from("no shipment for order ");
            detail.push_str(&String::from_utf8_lossy(&json_quote(order_id)));
            Ok(Response::problem(404, "Not Found", &detail))
        }
    }
}

/// s as a JSON string (escaped; s is at most MAX_ID bytes here).
fn json_quote(s: &str) -> Vec<u8> {
    let mut w = json::Writer::with_capacity(s.len() + 2);
    w.string(s);
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshd_guest::fake::Host;
    use meshd_guest::EventFields;

    const PAID: &str = r#"{"order_id":"o-1","user_id":"u-1","payment_id":"p-1","paid_at":"2026-01-02T03:04:05.000000000Z"}"#;

    fn deliver(h: &Host, id: &str, data: &str, attempt: u32) -> std::result::Result<(), meshd_guest::fake::Failure> {
        h.deliver(&EventFields { id, source: "order", event_type: ORDER_PAID, time: "2026-01-02T03:04:06.000000000Z", traceparent: "", attempt, data: data.as_bytes() })
    }

    #[test]
    fn declares_its_route_subscription_and_publication() {
        let h = Host::new(setup);
        assert_eq!(
            h.describe().unwrap(),
            r#"{"name":"shipping","version":"1.0.0","routes":[{"method":"GET","path":"/shipments/{order_id}"}],"subscriptions":[{"type":"ORDER_PAID"}],"publishes":["SHIPMENT_CREATED"]}"#
        );
    }

    #[test]
    fn not_found_before_then_the_shipment() {
        let h = Host::new(setup);
        let r = h.request("GET", "/shipments/o-1", "").unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.get_header("content-type"), Some("application/problem+json"));
        assert_eq!(r.body(), br#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no shipment for order \"o-1\""}"#);

        deliver(&h, "ev-1", PAID, 1).unwrap();
        let want = r#"{"shipment_id":"shp:ev-1","order_id":"o-1","user_id":"u-1","status":"CREATED","created_at":"2026-01-02T03:04:06.000000000Z"}"#;
        let r = h.request("GET", "/shipments/o-1", "").unwrap();
        assert_eq!((r.status(), std::str::from_utf8(r.body()).unwrap()), (200, want));
        let ev = h.events();
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].event_type.as_str(), std::str::from_utf8(&ev[0].data).unwrap()), (SHIPMENT_CREATED, want));
        assert_eq!(h.logs(), vec![(0, r#"shipment created for order "o-1""#.to_string())]);
    }

    #[test]
    fn a_redelivery_or_a_second_payment_creates_and_publishes_nothing() {
        let h = Host::new(setup);
        deliver(&h, "ev-1", PAID, 1).unwrap();
        let first = h.kv("shipment:o-1").unwrap();
        deliver(&h, "ev-1", PAID, 2).unwrap();
        // The order service publishes ORDER_PAID again for a payment
        // delivered twice: a new event id, the same order.
        deliver(&h, "ev-2", PAID, 1).unwrap();
        assert_eq!(h.events().len(), 1, "published more than once");
        assert_eq!(h.kv("shipment:o-1").unwrap(), first, "the shipment was replaced");
        assert_eq!(h.keys(), vec!["event:ev-1", "event:ev-2", "shipment:o-1"]);
    }

    #[test]
    fn a_failed_delivery_leaves_nothing_so_the_redelivery_creates_it() {
        let h = Host::new(setup);
        h.grant_publish(&["OTHER"]);
        let f = deliver(&h, "ev-1", PAID, 1).unwrap_err();
        assert!(f.message.contains("not granted publishing"), "{}", f.message);
        assert!(h.keys().is_empty(), "a failed call's writes were applied: {:?}", h.keys());
        h.grant_publish(&[SHIPMENT_CREATED]);
        deliver(&h, "ev-1", PAID, 2).unwrap();
        assert_eq!(h.events().len(), 1);
    }

    #[test]
    fn user_supplied_parts_of_keys_are_escaped() {
        let h = Host::new(setup);
        deliver(&h, "ev:1", r#"{"order_id":"a:b/c","user_id":"u"}"#, 1).unwrap();
        assert_eq!(h.keys(), vec!["event:ev%3A1", "shipment:a%3Ab%2Fc"]);
        // Another order whose id is a prefix of this one sees nothing.
        let r = h.request("GET", "/shipments/a:b", "").unwrap();
        assert_eq!(r.status(), 404, "order a:b must not see a:b/c's shipment");
    }

    #[test]
    fn invalid_data_is_refused() {
        let h = Host::new(setup);
        let long = format!(r#"{{"order_id":"{}"}}"#, "x".repeat(MAX_ID + 1));
        for data in [r#"{"user_id":"u"}"#, r#"{"order_id":7}"#, "not json", r#"{"order_id":""}"#, long.as_str()] {
            let f = deliver(&h, "ev-x", data, 1).unwrap_err();
            assert!(f.message.contains("ORDER_PAID: invalid data"), "{data}: {}", f.message);
        }
        assert!(h.keys().is_empty() && h.events().is_empty());
    }
}
