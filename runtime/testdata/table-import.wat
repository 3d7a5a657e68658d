;; A guest that imports a table, which no host module meshd links provides.
(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "meshd" "table" (table 1 funcref))
  (memory (export "memory") 1)
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32) (i32.const 0)))
