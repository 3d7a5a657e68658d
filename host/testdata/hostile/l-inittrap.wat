;; Its initialiser traps. Expected: refused at load.
(module
  (import "meshd" "output_write" (func $out (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\22routes\22:[{\22method\22:\22GET\22,\22path\22:\22/h/l-inittrap\22}]}")
  (data (i32.const 1024) "\c8\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $out (i32.const 0) (i32.const 52)))
    (i32.const 0))
  (func (export "_initialize")
    unreachable)
  (func (export "meshd_http") (param $n i32) (result i32)

    (drop (call $out (i32.const 1024) (i32.const 12)))
    (i32.const 0))
)
