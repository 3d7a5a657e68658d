;; Recursion without end: f(n) returns 1 + f(n+1), so the call stack grows
;; until wazero's limit and the call traps (stack overflow). Part of the
;; termination tests (termination_test.go): the checks at function entry
;; must not get in the way of that trap.
(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"name\":\"term\"}")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 15)))
    (i32.const 0))

  (func $f (param $n i32) (result i32)
    (i32.add (i32.const 1) (call $f (i32.add (local.get $n) (i32.const 1)))))

  (func (export "meshd_http") (param i32) (result i32)
    (call $f (i32.const 0)))
)
