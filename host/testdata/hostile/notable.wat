;; Declares a table with no maximum and asks table.grow for one more entry.
;; Expected: meshd caps a table without a maximum at its initial size, so
;; the growth is refused (-1) and the guest answers 200; it traps (500) if
;; the table grew.
(module
  (import "meshd" "output_write" (func $out (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\22routes\22:[{\22method\22:\22GET\22,\22path\22:\22/h/notable\22}]}")
  (data (i32.const 1024) "\c8\00\00\00\00\00\00\00\00\00\00\00")
  (table $t 1 funcref)
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $out (i32.const 0) (i32.const 49)))
    (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)
    (if (i32.ne (table.grow $t (ref.null func) (i32.const 1)) (i32.const -1)) (then unreachable))
    (drop (call $out (i32.const 1024) (i32.const 12)))
    (i32.const 0)))
