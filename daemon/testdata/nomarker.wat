;; A module without the meshd_abi_v1 marker: refused at load.
(module
  (memory (export "memory") 1)
  (func (export "meshd_describe") (result i32) (i32.const 0)))
