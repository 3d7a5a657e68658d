;; A test guest for the runtime's pool and limits. Its meshd_http behaviour
;; is chosen by the first input byte:
;;   e  echo the input back
;;   t  trap (unreachable)
;;   l  loop forever
;;   m  grow memory until refused, then trap
;;   o  write 64 KiB of output 32 times (2 MiB, past the 1 MiB cap)
;;   c  return code 5 (invalid argument) having written "bad input"
;;   n  write the number of calls this instance served (one byte)
;;   s  sleep in a busy loop for about as many iterations as the input is long × 2^20
(module
  (import "meshd" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (global $inits (mut i32) (i32.const 0))
  (data (i32.const 0) "{\"name\":\"guest\"}")
  (data (i32.const 32) "bad input")

  (func (export "meshd_abi_v1"))
  (func (export "_initialize") (global.set $inits (i32.add (global.get $inits) (i32.const 1))))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 16)))
    (i32.const 0))

  (func (export "meshd_http") (param $n i32) (result i32)
    (local $op i32) (local $i i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    ;; input lands at offset 1024; this guest's buffer holds 60 KiB
    (if (i32.gt_u (local.get $n) (i32.const 61440)) (then (return (i32.const 3))))
    (drop (call $input_read (i32.const 1024) (i32.const 61440)))
    (local.set $op (i32.load8_u (i32.const 1024)))
    (if (i32.eq (local.get $op) (i32.const 0x65)) ;; e
      (then (drop (call $output_write (i32.const 1024) (local.get $n))) (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 0x74)) ;; t
      (then unreachable))
    (if (i32.eq (local.get $op) (i32.const 0x6c)) ;; l
      (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $op) (i32.const 0x6d)) ;; m
      (then
        (loop $grow
          (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        unreachable))
    (if (i32.eq (local.get $op) (i32.const 0x6f)) ;; o
      (then
        (loop $out
          (drop (call $output_write (i32.const 0) (i32.const 65536)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $out (i32.lt_u (local.get $i) (i32.const 32))))
        (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 0x63)) ;; c
      (then (drop (call $output_write (i32.const 32) (i32.const 9))) (return (i32.const 5))))
    (if (i32.eq (local.get $op) (i32.const 0x6e)) ;; n
      (then
        (i32.store8 (i32.const 64) (global.get $calls))
        (i32.store8 (i32.const 65) (global.get $inits))
        (drop (call $output_write (i32.const 64) (i32.const 2)))
        (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 0x73)) ;; s
      (then
        (local.set $i (i32.shl (local.get $n) (i32.const 20)))
        (loop $spin
          (local.set $i (i32.sub (local.get $i) (i32.const 1)))
          (br_if $spin (i32.gt_s (local.get $i) (i32.const 0))))
        (return (i32.const 0))))
    (i32.const 8))
)
