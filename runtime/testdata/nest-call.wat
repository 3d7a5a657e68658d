;; A guest whose meshd_http calls the test's host function meshd.test_nested once (a
;; service call to another module, as meshd's call does) and answers what
;; it returned as one byte.
(module
  (import "meshd" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "meshd" "test_nested" (func $nested (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"name\":\"outer\"}")

  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 16)))
    (i32.const 0))

  (func (export "meshd_http") (param $n i32) (result i32)
    (i32.store8 (i32.const 64) (call $nested))
    (drop (call $output_write (i32.const 64) (i32.const 1)))
    (i32.const 0)))
