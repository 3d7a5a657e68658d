;; A test guest for instances renewed in place (runtime/renew_test.go):
;; everything a call can change that a fresh instance must not see. Its
;; initialiser writes 0x11 at 70000. meshd_http by the first input byte:
;;   r  output the byte at 70000, $calls, what table slot 1 returns
;;      ("A" as the element segment put it), the memory's size in pages
;;      and the byte at 300 (0 unless a call wrote it)
;;   w  write 0x77 at 70000 and at 300, add one to $calls
;;   s  set table slot 1 to $b (returns "B")
;;   n  set the table's null slot 3 to $a
;;   g  grow the memory by a page
;;   x  drop the passive data segment
;;   i  copy the passive data segment ("P") to 2052 and output it (traps
;;      when it was dropped)
(module
  (import "meshd" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (type $letter (func (result i32)))
  (memory (export "memory") 2 64)
  (global $calls (mut i32) (i32.const 0))
  (table $t 4 funcref)
  (elem (i32.const 0) $a $a $a)
  (elem declare func $b)
  (data (i32.const 16) "D")
  (data $p "P")

  (func $a (result i32) (i32.const 0x41))
  (func $b (result i32) (i32.const 0x42))
  (func (export "meshd_abi_v1"))
  (func (export "_initialize")
    (drop (memory.grow (i32.const 2)))
    (i32.store8 (i32.const 70000) (i32.const 0x11)))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 16) (i32.const 1)))
    (i32.const 0))
  (func (export "meshd_http") (param $n i32) (result i32)
    (local $op i32)
    (drop (call $input_read (i32.const 1024) (i32.const 16)))
    (local.set $op (i32.load8_u (i32.const 1024)))
    (if (i32.eq (local.get $op) (i32.const 0x77)) ;; w
      (then
        (i32.store8 (i32.const 70000) (i32.const 0x77))
        (i32.store8 (i32.const 300) (i32.const 0x77))
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 0x73)) ;; s
      (then (table.set $t (i32.const 1) (ref.func $b)) (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 0x6e)) ;; n
      (then (table.set $t (i32.const 3) (ref.func $a)) (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 0x67)) ;; g
      (then (drop (memory.grow (i32.const 1))) (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 0x78)) ;; x
      (then (data.drop $p) (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 0x69)) ;; i
      (then
        (memory.init $p (i32.const 2052) (i32.const 0) (i32.const 1))
        (drop (call $output_write (i32.const 2052) (i32.const 1)))
        (return (i32.const 0))))
    (i32.store8 (i32.const 2048) (i32.load8_u (i32.const 70000)))
    (i32.store8 (i32.const 2049) (global.get $calls))
    (i32.store8 (i32.const 2050) (call_indirect $t (type $letter) (i32.const 1)))
    (i32.store8 (i32.const 2051) (memory.size))
    (i32.store8 (i32.const 2052) (i32.load8_u (i32.const 300)))
    (drop (call $output_write (i32.const 2048) (i32.const 5)))
    (i32.const 0))
)
