//! The ABI's imports exactly as declared (docs/ABI.md): every argument an
//! i32, pointers are offsets into the module's memory. The SDK calls them
//! for you; they are public for tests of the ABI itself (a conformance
//! guest handing the host a bad pointer on purpose). Only on wasm32.

#[link(wasm_import_module = "meshd")]
extern "C" {
    pub fn input_read(buf: i32, cap: i32) -> i32;
    pub fn output_write(ptr: i32, len: i32) -> i32;
    pub fn last_error(buf: i32, cap: i32) -> i32;
    pub fn log(level: i32, ptr: i32, len: i32) -> i32;
    pub fn publish(type_ptr: i32, type_len: i32, data_ptr: i32, data_len: i32) -> i32;
    pub fn kv_get(key_ptr: i32, key_len: i32, buf: i32, cap: i32) -> i32;
    pub fn kv_set(key_ptr: i32, key_len: i32, val_ptr: i32, val_len: i32) -> i32;
    pub fn kv_delete(key_ptr: i32, key_len: i32) -> i32;
    pub fn discover(name_ptr: i32, name_len: i32, buf: i32, cap: i32) -> i32;
    // ABI v1.1: linked only into a module that uses them.
    pub fn publish_delayed(type_ptr: i32, type_len: i32, data_ptr: i32, data_len: i32, delay_ms: i32) -> i32;
    pub fn config_get(key_ptr: i32, key_len: i32, buf: i32, cap: i32) -> i32;
    // ABI v1.2.
    pub fn call(callee_ptr: i32, callee_len: i32, req_ptr: i32, req_len: i32, flags: i32) -> i32;
    pub fn call_result(buf: i32, cap: i32) -> i32;
}
