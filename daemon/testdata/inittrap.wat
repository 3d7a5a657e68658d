;; A module that traps while initialising: refused at load.
(module
  (memory (export "memory") 1)
  (func (export "meshd_abi_v1"))
  (func (export "_initialize") unreachable)
  (func (export "meshd_describe") (result i32) (i32.const 0)))
