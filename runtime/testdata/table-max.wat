;; A guest with two tables that declare maxima: 16 and 100,000 entries.
;; meshd_http grows the first by 67,000,000 entries and returns what
;; table.grow returned (-1: refused).
(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $small 1 16 funcref)
  (table $large 1 100000 funcref)
  (data (i32.const 0) "{\"name\":\"tables\"}")

  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 17)))
    (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)
    (table.grow $small (ref.null func) (i32.const 67000000))))
