;; An initialiser that recurses without end: loading it must fail on the
;; stack limit (the initialiser runs under it too), without allocating more
;; than the limit allows. Part of the stack tests (stack_test.go).
(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"name\":\"stack\"}")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 16)))
    (i32.const 0))

  (func $f (param $n i32) (result i32)
    (i32.add (i32.const 1) (call $f (i32.add (local.get $n) (i32.const 1)))))

  (func (export "_initialize")
    (drop (call $f (i32.const 0))))
)
