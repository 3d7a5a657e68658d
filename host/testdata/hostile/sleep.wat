;; Sleeps 60 s with WASI poll_oneoff (a clock subscription).
;; Expected: the sleep ends at the call's deadline (504 after the call timeout, not after 60 s).
(module
  (import "meshd" "output_write" (func $out (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\22routes\22:[{\22method\22:\22GET\22,\22path\22:\22/h/sleep\22}]}")
  (data (i32.const 1024) "\c8\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $out (i32.const 0) (i32.const 47)))
    (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)
    ;; one clock subscription of 60 s at 4096 (tag 0 = clock, timeout at +24)
    (i64.store (i32.const 4120) (i64.const 60000000000))
    (drop (call $poll (i32.const 4096) (i32.const 8192) (i32.const 1) (i32.const 8256)))
    (drop (call $out (i32.const 1024) (i32.const 12)))
    (i32.const 0))
)
