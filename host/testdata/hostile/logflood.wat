;; One request logs 200,000 lines of 60 KiB, then one line of 60 MiB.
;; Expected: 200 (or 504 if the loop runs past the deadline); the daemon's log grows by a bounded
;; amount: each line is capped and the service's lines are rate limited (dropped lines are counted).
(module
  (import "meshd" "output_write" (func $out (param i32 i32) (result i32)))
  (import "meshd" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 961)
  (data (i32.const 0) "{\22routes\22:[{\22method\22:\22GET\22,\22path\22:\22/h/logflood\22}]}")
  (data (i32.const 1024) "\c8\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $out (i32.const 0) (i32.const 50)))
    (i32.const 0))
  (global $i (mut i32) (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)
    (global.set $i (i32.const 0))
    (loop $l
      (drop (call $log (i32.const 0) (i32.const 0) (i32.const 61440)))
      (global.set $i (i32.add (global.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (global.get $i) (i32.const 200000))))
    (drop (call $log (i32.const 2) (i32.const 0) (i32.const 62914560)))
    (drop (call $out (i32.const 1024) (i32.const 12)))
    (i32.const 0))
)
