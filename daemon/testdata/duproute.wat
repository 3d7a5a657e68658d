;; A valid module that declares POST /orders, which the order service owns:
;; refused at load with a message naming both services.
(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"routes\":[{\"method\":\"POST\",\"path\":\"/orders\"}]}")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 16) (i32.const 47)))
    (i32.const 0))
  (func (export "meshd_http") (param i32) (result i32) (i32.const 8)))
