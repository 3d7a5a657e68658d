//! The host functions of import module `meshd` as safe calls on slices.
//! Each returns the raw i32: a length or 0 on success, a negated code on
//! failure. On wasm32 they are the real imports; on any other target
//! (`cargo test`) they reach the in-memory host of [`crate::fake`].

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::raw;

    fn p(b: &[u8]) -> i32 {
        b.as_ptr() as usize as i32
    }
    fn l(b: &[u8]) -> i32 {
        b.len() as i32
    }
    fn pm(b: &mut [u8]) -> i32 {
        b.as_mut_ptr() as usize as i32
    }

    // Safety, for all: each pointer and length describe one live slice of
    // the module's memory; the host writes only into the mutable ones, and
    // only within their length.
    pub fn input_read(buf: &mut [u8]) -> i32 {
        unsafe { raw::input_read(pm(buf), l(buf)) }
    }
    pub fn output_write(b: &[u8]) -> i32 {
        unsafe { raw::output_write(p(b), l(b)) }
    }
    pub fn last_error(buf: &mut [u8]) -> i32 {
        unsafe { raw::last_error(pm(buf), l(buf)) }
    }
    pub fn log(level: i32, msg: &[u8]) -> i32 {
        unsafe { raw::log(level, p(msg), l(msg)) }
    }
    pub fn publish(typ: &[u8], data: &[u8]) -> i32 {
        unsafe { raw::publish(p(typ), l(typ), p(data), l(data)) }
    }
    pub fn kv_get(key: &[u8], buf: &mut [u8]) -> i32 {
        unsafe { raw::kv_get(p(key), l(key), pm(buf), l(buf)) }
    }
    pub fn kv_set(key: &[u8], val: &[u8]) -> i32 {
        unsafe { raw::kv_set(p(key), l(key), p(val), l(val)) }
    }
    pub fn kv_delete(key: &[u8]) -> i32 {
        unsafe { raw::kv_delete(p(key), l(key)) }
    }
    pub fn discover(name: &[u8], buf: &mut [u8]) -> i32 {
        unsafe { raw::discover(p(name), l(name), pm(buf), l(buf)) }
    }
    pub fn publish_delayed(typ: &[u8], data: &[u8], delay_ms: i32) -> i32 {
        unsafe { raw::publish_delayed(p(typ), l(typ), p(data), l(data), delay_ms) }
    }
    pub fn config_get(key: &[u8], buf: &mut [u8]) -> i32 {
        unsafe { raw::config_get(p(key), l(key), pm(buf), l(buf)) }
    }
    pub fn call(callee: &[u8], req: &[u8], flags: i32) -> i32 {
        unsafe { raw::call(p(callee), l(callee), p(req), l(req), flags) }
    }
    pub fn call_result(buf: &mut [u8]) -> i32 {
        unsafe { raw::call_result(pm(buf), l(buf)) }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use crate::fake::with;

    pub fn input_read(buf: &mut [u8]) -> i32 {
        with(|h| h.input_read(buf))
    }
    pub fn output_write(b: &[u8]) -> i32 {
        with(|h| h.output_write(b))
    }
    pub fn last_error(buf: &mut [u8]) -> i32 {
        with(|h| h.last_error(buf))
    }
    pub fn log(level: i32, msg: &[u8]) -> i32 {
        with(|h| h.log(level, msg))
    }
    pub fn publish(typ: &[u8], data: &[u8]) -> i32 {
        with(|h| h.publish(typ, data, None))
    }
    pub fn kv_get(key: &[u8], buf: &mut [u8]) -> i32 {
        with(|h| h.kv_get(key, buf))
    }
    pub fn kv_set(key: &[u8], val: &[u8]) -> i32 {
        with(|h| h.kv_set(key, Some(val)))
    }
    pub fn kv_delete(key: &[u8]) -> i32 {
        with(|h| h.kv_set(key, None))
    }
    pub fn discover(name: &[u8], buf: &mut [u8]) -> i32 {
        with(|h| h.discover(name, buf))
    }
    pub fn publish_delayed(typ: &[u8], data: &[u8], delay_ms: i32) -> i32 {
        with(|h| h.publish(typ, data, Some(delay_ms)))
    }
    pub fn config_get(key: &[u8], buf: &mut [u8]) -> i32 {
        with(|h| h.config_get(key, buf))
    }
    pub fn call(callee: &[u8], req: &[u8], flags: i32) -> i32 {
        crate::fake::call(callee, req, flags)
    }
    pub fn call_result(buf: &mut [u8]) -> i32 {
        with(|h| h.call_result(buf))
    }
}

pub(crate) use imp::*;

/// Fills `buf` by calling `f` until the value fits, following the ABI's
/// grow-and-retry rule: a call with a buffer too small copies nothing and
/// returns the full length. Returns the value's length or the negative
/// result. `buf` keeps its capacity for the next call.
pub(crate) fn fill(buf: &mut Vec<u8>, hint: usize, mut f: impl FnMut(&mut [u8]) -> i32) -> Result<usize, i32> {
    let mut want = hint.max(64);
    // Bounded: each retry grows the buffer to the length the host asked
    // for; a host whose value keeps growing gets four tries.
    for _ in 0..4 {
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let n = f(&mut buf[..]);
        if n < 0 {
            return Err(n);
        }
        let n = n as usize;
        if n <= buf.len() {
            return Ok(n);
        }
        want = n;
    }
    Err(-(crate::Code::Internal as i32))
}
