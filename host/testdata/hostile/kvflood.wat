;; Buffers effects without end: 512 kv_set of 1 MiB to one key, then 100,000 kv_set
;; of 1 KiB to distinct keys, ignoring every error, and answers 200.
;; Expected: the buffered effects stay within the per-call caps (count and bytes), so the
;; daemon's heap does not grow by hundreds of MiB; the call may answer 200 or fail.
(module
  (import "meshd" "output_write" (func $out (param i32 i32) (result i32)))
  (import "meshd" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 20)
  (data (i32.const 0) "{\22routes\22:[{\22method\22:\22GET\22,\22path\22:\22/h/kvflood\22}]}")
  (data (i32.const 1024) "\c8\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $out (i32.const 0) (i32.const 49)))
    (i32.const 0))
  (global $i (mut i32) (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)
    (global.set $i (i32.const 0))
    (loop $l
      (drop (call $set (i32.const 0) (i32.const 1) (i32.const 65536) (i32.const 1048576)))
      (global.set $i (i32.add (global.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (global.get $i) (i32.const 512))))
    (global.set $i (i32.const 0))
    (loop $m
      (i32.store (i32.const 8000) (global.get $i))
      (drop (call $set (i32.const 8000) (i32.const 4) (i32.const 65536) (i32.const 1024)))
      (global.set $i (i32.add (global.get $i) (i32.const 1)))
      (br_if $m (i32.lt_u (global.get $i) (i32.const 100000))))
    (drop (call $out (i32.const 1024) (i32.const 12)))
    (i32.const 0))
)
