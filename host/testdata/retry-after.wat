;; A test guest of call_retry_after (ABI v1.3), host/call_test.go: its
;; meshd_http takes an encoded call request as input, calls service
;; "user" with it, then asks call_retry_after, and writes the call's result
;; (i32) and the answer (i64), little-endian: 12 bytes.
(module
  (import "meshd" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "meshd" "call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (import "meshd" "call_retry_after" (func $call_retry_after (result i64)))
  (memory (export "memory") 2)
  (data (i32.const 0) "{\"name\":\"hostile\"}")
  (data (i32.const 32) "user")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 18)))
    (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)
    (if (i32.gt_u (local.get $n) (i32.const 60000)) (then (return (i32.const 3))))
    (drop (call $input_read (i32.const 1024) (i32.const 60000)))
    (i32.store (i32.const 64)
      (call $call (i32.const 32) (i32.const 4) (i32.const 1024) (local.get $n) (i32.const 0)))
    (i64.store (i32.const 68) (call $call_retry_after))
    (drop (call $output_write (i32.const 64) (i32.const 12)))
    (i32.const 0)))
