;; A deep stack unwound slowly: f(n) calls f(n-1) first and, once that
;; returns, copies 512 KiB three times (memory.copy: straight-line code
;; that makes no Wasm call). The way down (200,000 calls) takes
;; milliseconds; the way back up takes tens of seconds, and only a check
;; after each call returns can stop it. Part of the termination tests
;; (termination_test.go).
(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 16)
  (data (i32.const 0) "{\"name\":\"term\"}")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 15)))
    (i32.const 0))

  (func $f (param $n i32)
    (if (i32.eqz (local.get $n)) (then (return)))
    (call $f (i32.sub (local.get $n) (i32.const 1)))
    (memory.copy (i32.const 524288) (i32.const 0) (i32.const 524288))
    (memory.copy (i32.const 0) (i32.const 524288) (i32.const 524288))
    (memory.copy (i32.const 524288) (i32.const 0) (i32.const 524288)))

  (func (export "meshd_http") (param i32) (result i32)
    (call $f (i32.const 200000))
    (i32.const 0))
)
