;; Recursion to a depth the caller chooses: meshd_http(n) calls f(n), and
;; f(n) returns 1 + f(n-1), so the call needs n frames of native stack and
;; returns once they are unwound. With n = 0, f counts down past zero and
;; would go 2^32 - 1 calls deep: recursion without end, as far as any
;; stack goes, until the stack limit traps. The input's length is n.
;; Part of the stack tests (stack_test.go).
(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"name\":\"stack\"}")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 16)))
    (i32.const 0))

  (func $f (param $n i32) (result i32)
    (if (i32.eq (local.get $n) (i32.const 1)) (then (return (i32.const 1))))
    (i32.add (i32.const 1) (call $f (i32.sub (local.get $n) (i32.const 1)))))

  (func (export "meshd_http") (param $n i32) (result i32)
    (drop (call $f (local.get $n)))
    (i32.const 0))
)
