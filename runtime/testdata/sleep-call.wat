;; A guest whose meshd_http sleeps 30 s with WASI poll_oneoff (one relative
;; clock subscription) when its input starts with "s", and echoes its input
;; otherwise.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"name\":\"sleeper\"}")

  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 18)))
    (i32.const 0))

  ;; sleep: a clock subscription at 256 (48 bytes), its event at 320, the
  ;; count of events at 352
  (func $sleep (param $ns i64)
    (i64.store (i32.const 256) (i64.const 0))       ;; userdata
    (i32.store8 (i32.const 264) (i32.const 0))      ;; tag: clock
    (i32.store (i32.const 272) (i32.const 1))       ;; clock id: monotonic
    (i64.store (i32.const 280) (local.get $ns))     ;; timeout, relative
    (i64.store (i32.const 288) (i64.const 0))       ;; precision
    (i32.store16 (i32.const 296) (i32.const 0))     ;; flags: relative
    (drop (call $poll_oneoff (i32.const 256) (i32.const 320) (i32.const 1) (i32.const 352))))

  (func (export "meshd_http") (param $n i32) (result i32)
    (if (i32.gt_u (local.get $n) (i32.const 1024)) (then (return (i32.const 3))))
    (drop (call $input_read (i32.const 1024) (i32.const 1024)))
    (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 0x73)) ;; s
      (then (call $sleep (i64.const 30000000000))))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0)))
