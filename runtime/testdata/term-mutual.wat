;; Mutual recursion: even(n) calls odd(n-1) twice, odd(n) calls even(n-1) twice.
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

  (func $even (param $n i32)
    (if (i32.eqz (local.get $n)) (then (return)))
    (call $odd (i32.sub (local.get $n) (i32.const 1)))
    (call $odd (i32.sub (local.get $n) (i32.const 1))))

  (func $odd (param $n i32)
    (if (i32.eqz (local.get $n)) (then (return)))
    (call $even (i32.sub (local.get $n) (i32.const 1)))
    (call $even (i32.sub (local.get $n) (i32.const 1))))

  (func (export "meshd_http") (param i32) (result i32)
    (call $even (i32.const 40))
    (i32.const 0))
)
