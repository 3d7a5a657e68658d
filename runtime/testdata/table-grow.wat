;; A guest whose meshd_http grows its table by 67,000,000 entries (536 MB of
;; references, were it allowed) and returns what table.grow returned: the
;; table's old size, or -1 when refused. Its table declares no maximum, as
;; Go's linker writes it.
(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 2 funcref)
  (elem (i32.const 0) $describe $describe)
  (data (i32.const 0) "{\"name\":\"tables\"}")

  (func (export "meshd_abi_v1"))
  (func $describe (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 17)))
    (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)
    (table.grow $t (ref.null func) (i32.const 67000000))))
