;; A test guest whose initialiser reads random bytes (WASI random_get) and
;; keeps them: meshd cannot tell what they seed, so it takes no snapshot.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "meshd_abi_v1"))
  (func (export "_initialize") (drop (call $random_get (i32.const 0) (i32.const 16))))
  (func (export "meshd_describe") (result i32) (i32.const 0))
  (func (export "meshd_http") (param i32) (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 16)))
    (i32.const 0))
)
