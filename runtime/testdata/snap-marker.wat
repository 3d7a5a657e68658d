;; A test guest for snapshots (runtime/snapshot_test.go). Its initialiser
;; writes 0x11 at 70000 (the second page of its memory) and counts its
;; runs in $inits. meshd_http by the first input byte:
;;   w  write 0x77 at 70000 and at 200000 (a page past the initial memory,
;;      grown by the initialiser)
;;   r  output the bytes at 70000 and 200000, $inits, and the data
;;      segment's first byte
(module
  (import "meshd" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 2 64)
  (global $inits (mut i32) (i32.const 0))
  (data (i32.const 16) "D")

  (func (export "meshd_abi_v1"))
  (func (export "_initialize")
    (global.set $inits (i32.add (global.get $inits) (i32.const 1)))
    (drop (memory.grow (i32.const 2)))
    (i32.store8 (i32.const 70000) (i32.const 0x11))
    (i32.store8 (i32.const 200000) (i32.const 0x22)))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 16) (i32.const 1)))
    (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)
    (drop (call $input_read (i32.const 1024) (i32.const 16)))
    (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 0x77)) ;; w
      (then
        (i32.store8 (i32.const 70000) (i32.const 0x77))
        (i32.store8 (i32.const 200000) (i32.const 0x77))
        (return (i32.const 0))))
    (i32.store8 (i32.const 2048) (i32.load8_u (i32.const 70000)))
    (i32.store8 (i32.const 2049) (i32.load8_u (i32.const 200000)))
    (i32.store8 (i32.const 2050) (global.get $inits))
    (i32.store8 (i32.const 2051) (i32.load8_u (i32.const 16)))
    (drop (call $output_write (i32.const 2048) (i32.const 4)))
    (i32.const 0))
)
