;; Declares 2 MiB (the output cap is 1 MiB). Expected: refused at load.
(module
  (import "meshd" "output_write" (func $out (param i32 i32) (result i32)))
  (memory (export "memory") 40)
  (data (i32.const 0) "{\22routes\22:[{\22method\22:\22GET\22,\22path\22:\22/h/l-hugedecl\22}]}")
  (data (i32.const 1024) "\c8\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $out (i32.const 0) (i32.const 2097152)))
    (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)

    (drop (call $out (i32.const 1024) (i32.const 12)))
    (i32.const 0))
)
