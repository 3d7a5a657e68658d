;; A module whose _initialize sleeps 30 s with WASI poll_oneoff (one relative
;; clock subscription): its load lasts until the initialiser's deadline, or
;; until it is cancelled.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"name\":\"sleepinit\"}")
  (func (export "meshd_abi_v1"))
  (func (export "_initialize")
    (i32.store8 (i32.const 264) (i32.const 0))                 ;; tag: clock
    (i32.store (i32.const 272) (i32.const 1))                  ;; clock id: monotonic
    (i64.store (i32.const 280) (i64.const 30000000000))        ;; 30 s, relative
    (drop (call $poll_oneoff (i32.const 256) (i32.const 320) (i32.const 1) (i32.const 352))))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 20)))
    (i32.const 0)))
