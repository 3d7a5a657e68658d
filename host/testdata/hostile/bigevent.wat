;; Writes a key, then publishes an event of 1 MiB of JSON, and fails the call when publish
;; refuses it. Expected: publish refuses the event in the host function (too large), the call
;; fails (500) and its key write is not applied.
(module
  (import "meshd" "output_write" (func $out (param i32 i32) (result i32)))
  (import "meshd" "publish" (func $pub (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 20)
  (data (i32.const 0) "{\22routes\22:[{\22method\22:\22GET\22,\22path\22:\22/h/bigevent\22}]}")
  (data (i32.const 1024) "\c8\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $out (i32.const 0) (i32.const 50)))
    (i32.const 0))
  (data (i32.const 900) "H_BIG")
  (func (export "meshd_http") (param $n i32) (result i32)
    ;; 1 MiB JSON string at 65536: a quote, spaces, a quote
    (memory.fill (i32.const 65536) (i32.const 32) (i32.const 1048576))
    (i32.store8 (i32.const 65536) (i32.const 34))
    (i32.store8 (i32.const 1114111) (i32.const 34))
    (drop (call $set (i32.const 900) (i32.const 5) (i32.const 900) (i32.const 5)))
    (if (i32.lt_s (call $pub (i32.const 900) (i32.const 5) (i32.const 65536) (i32.const 1048576)) (i32.const 0))
      (then (return (i32.const 8))))
    (drop (call $out (i32.const 1024) (i32.const 12)))
    (i32.const 0))
)
