;; Writes 64 KiB of output 100 times (6.4 MiB against a 1 MiB output cap), ignoring errors.
;; Expected: the call fails (5xx); nothing past the cap is buffered.
(module
  (import "meshd" "output_write" (func $out (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "{\22routes\22:[{\22method\22:\22GET\22,\22path\22:\22/h/output\22}]}")
  (data (i32.const 1024) "\c8\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $out (i32.const 0) (i32.const 48)))
    (i32.const 0))
  (global $i (mut i32) (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)
    (global.set $i (i32.const 0))
    (loop $l
      (drop (call $out (i32.const 0) (i32.const 65536)))
      (global.set $i (i32.add (global.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (global.get $i) (i32.const 100))))
    (drop (call $out (i32.const 1024) (i32.const 12)))
    (i32.const 0))
)
