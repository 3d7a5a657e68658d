;; Direct and table calls mixed: f(n) calls g(n-1) directly and through the table; g(n) calls f(n-1) the same way.
;; Part of the termination tests (termination_test.go): no function of
;; this guest contains a loop, so only the checks at function entry can
;; stop it at its deadline.
(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"name\":\"term\"}")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 15)))
    (i32.const 0))

  (type $t (func (param i32)))
  (table 2 funcref)
  (elem (i32.const 0) $f $g)

  (func $f (type $t) (param $n i32)
    (if (i32.eqz (local.get $n)) (then (return)))
    (call $g (i32.sub (local.get $n) (i32.const 1)))
    (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 1)))

  (func $g (type $t) (param $n i32)
    (if (i32.eqz (local.get $n)) (then (return)))
    (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 0))
    (call $f (i32.sub (local.get $n) (i32.const 1))))

  (func (export "meshd_http") (param i32) (result i32)
    (call $f (i32.const 40))
    (i32.const 0))
)
