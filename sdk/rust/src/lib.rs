//! meshd-guest: write meshd services in Rust.
//!
//! A meshd service is a WebAssembly reactor module speaking meshd's ABI
//! (docs/ABI.md). This crate is its guest half for Rust, as `guest/` is for
//! Go: register routes and event handlers, and call the host's key-value
//! store, event bus, configuration, log, discovery and other services.
//!
//! ```no_run
//! use meshd_guest::{json, kv, Request, Response, Result, Service};
//!
//! fn setup(s: &mut Service) {
//!     s.declare("hello", "1.0.0")
//!         .publishes(&["GREETED"])
//!         .handle("POST /hello/{name}", greet);
//! }
//!
//! fn greet(r: &Request) -> Result<Response> {
//!     let name = r.param("name").unwrap_or("");
//!     kv::set(&meshd_guest::key(&["greeted", name]), b"1")?;
//!     let mut w = json::Writer::new();
//!     w.object_start();
//!     w.string_field("hello", name);
//!     w.object_end();
//!     meshd_guest::publish("GREETED", w.as_bytes())?;
//!     Ok(Response::json(200, w.into_bytes()))
//! }
//!
//! meshd_guest::service!(setup);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasi` (Rust before 1.78, Debian's
//! 1.63) or `wasm32-wasip1` (current rustup); see the crate's README
//! section in meshd's README. `cargo test` runs on the build machine
//! against [`fake`], an in-memory host.
//!
//! Every host call returns [`Result`]; its [`Error`] carries the ABI's
//! [`Code`] and the host's message. Effects (events, key writes) are the
//! host's to apply when the call succeeds: a handler that returns `Err`,
//! or panics, leaves no trace.

mod call;
mod codec;
mod error;
mod event;
mod http;
pub mod json;
mod keys;
mod service;
mod sys;

#[cfg(target_arch = "wasm32")]
pub mod raw;

#[cfg(not(target_arch = "wasm32"))]
pub mod fake;

pub use call::{call, get, CallRequest};
pub use codec::Pairs;
pub use error::{Code, Error, Result};
pub use event::{Event, EventFields};
pub use http::{problem_body, Request, Response, CONSUMER_PREFIX};
pub use keys::{key, parse_key, KEY_SEP};
pub use service::{check_event_type, Service};

#[doc(hidden)]
pub mod rt {
    pub use crate::service::{describe, event, http};
}

use std::cell::RefCell;
use std::time::Duration;

/// Exports the module's entry points (`meshd_abi_v1`, `meshd_describe`,
/// `meshd_http`, `meshd_event`) for a service set up by `setup`, a
/// `fn(&mut Service)` run once per instance before its first call.
#[macro_export]
macro_rules! service {
    ($setup:path) => {
        #[no_mangle]
        pub extern "C" fn meshd_abi_v1() {}

        #[no_mangle]
        pub extern "C" fn meshd_describe() -> i32 {
            $crate::rt::describe($setup)
        }

        #[no_mangle]
        pub extern "C" fn meshd_http(n: i32) -> i32 {
            $crate::rt::http(n, $setup)
        }

        #[no_mangle]
        pub extern "C" fn meshd_event(n: i32) -> i32 {
            $crate::rt::event(n, $setup)
        }
    };
}

thread_local! {
    static ERR_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    static VAL_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::new());
}

/// The error of a negative host result, with the host's message from
/// `last_error`.
pub(crate) fn host_error(ret: i32) -> Error {
    let msg = ERR_BUF.with(|b| {
        let mut b = b.borrow_mut();
        match sys::fill(&mut b, 256, sys::last_error) {
            Ok(n) => String::from_utf8_lossy(&b[..n]).into_owned(),
            Err(_) => String::new(),
        }
    });
    Error::new(Code::from_i32(ret), msg)
}

fn check(ret: i32) -> Result<()> {
    if ret < 0 {
        Err(host_error(ret))
    } else {
        Ok(())
    }
}

/// Reads a value with grow and retry into the reused value buffer; None
/// when the host answers not found.
fn read_value(hint: usize, f: impl FnMut(&mut [u8]) -> i32) -> Result<Option<Vec<u8>>> {
    VAL_BUF.with(|b| {
        let mut b = b.borrow_mut();
        match sys::fill(&mut b, hint, f) {
            Ok(n) => Ok(Some(b[..n].to_vec())),
            Err(ret) if ret == -(Code::NotFound as i32) => Ok(None),
            Err(ret) => Err(host_error(ret)),
        }
    })
}

/// The service's own key-value store. Writes and deletes are applied when
/// the current call succeeds; reads see the call's own pending writes.
pub mod kv {
    use super::*;

    /// The value of key, or None when absent.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
        read_value(512, |buf| sys::kv_get(key.as_bytes(), buf))
    }

    /// Writes key (applied when the call succeeds). Keys are 1-1024 bytes.
    pub fn set(key: &str, value: &[u8]) -> Result<()> {
        check(sys::kv_set(key.as_bytes(), value))
    }

    /// Deletes key (absent is fine; applied when the call succeeds).
    pub fn delete(key: &str) -> Result<()> {
        check(sys::kv_delete(key.as_bytes()))
    }
}

/// Publishes an event of that type with that data (JSON), sent when the
/// current call succeeds. `Denied` unless the operator granted the type.
pub fn publish(event_type: &str, data: &[u8]) -> Result<()> {
    check(sys::publish(event_type.as_bytes(), data))
}

/// The longest delay of [`publish_delayed`]: 2^31-1 ms, about 24.8 days.
pub const MAX_DELAY: Duration = Duration::from_millis(i32::MAX as u64);

/// Publishes an event to be delivered after delay (rounded down to
/// milliseconds, at most [`MAX_DELAY`]); sent only if the current call
/// succeeds, the delay counting from then. Needs ABI v1.1.
pub fn publish_delayed(event_type: &str, data: &[u8], delay: Duration) -> Result<()> {
    if delay > MAX_DELAY {
        return Err(Error::invalid("delay must be between 0 and 2147483647ms"));
    }
    check(sys::publish_delayed(event_type.as_bytes(), data, delay.as_millis() as i32))
}

/// The operator's configuration value of key (the `[config]` table of the
/// service's `<name>.toml`), or None. Needs ABI v1.1.
pub fn config(key: &str) -> Result<Option<String>> {
    Ok(read_value(128, |buf| sys::config_get(key.as_bytes(), buf))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Log levels (slog's divided by four).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Debug = -1,
    Info = 0,
    Warn = 1,
    Error = 2,
}

/// A log line for the service. The host caps its length and rate.
pub fn log(level: Level, msg: &str) {
    let _ = sys::log(level as i32, msg.as_bytes());
}

/// What [`discover`] says about a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    pub status: String,
    pub version: String,
    pub instances: i64,
}

/// Describes a loaded service, or None when there is none. `Denied`
/// unless the operator granted discovering it.
pub fn discover(name: &str) -> Result<Option<ServiceInfo>> {
    let v = match read_value(256, |buf| sys::discover(name.as_bytes(), buf))? {
        Some(v) => v,
        None => return Ok(None),
    };
    let mut info = ServiceInfo::default();
    let mut r = json::Reader::new(&v);
    r.object(|r, k| {
        match k {
            "name" => info.name = r.string()?.into_owned(),
            "status" => info.status = r.string()?.into_owned(),
            "version" => info.version = r.string()?.into_owned(),
            "instances" => info.instances = r.int()?,
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(Some(info))
}
