;; hostile-ops.wat — a guest that calls meshd's host functions with whatever
;; pointers, lengths and repeat counts its input says, to test and fuzz the
;; binding's checks and caps from a real instance.
;;
;; meshd_http(n) grows memory to hold the input at 65536 (IN), reads it and
;; runs its ops. Input: u32 count, then count ops of 7 u32 each
;;   fn, repeat, a, b, c, d, e
;; then any data the ops point at (address IN + offset). Each op calls host
;; function fn with (a, b, c, d, e) as its arguments (as many as it takes),
;; repeat times (0 counts as 1), and appends the last result, 4 bytes, to
;; the output (through the scratch word at address 0). fn:
;;   0 input_read   1 output_write  2 last_error  3 log      4 publish
;;   5 kv_get       6 kv_set        7 kv_delete   8 discover 9 publish_delayed
;;   10 config_get  11 call          12 call_result
;;   13 snapshot: output_write of the whole memory (result 0)
;; Any other fn answers -99. meshd_http returns 0.
;;
;; Fuzz mode, when count is 0xFFFFFFFF: one call of fn with a..e read from
;; the 6 u32 after count; the output is the whole memory before the call,
;; whatever the call wrote with output_write, the whole memory after the
;; call, and the result (4 bytes). The guest itself changes no memory
;; between the two snapshots.
(module
  (import "meshd" "input_read"      (func $input_read      (param i32 i32) (result i32)))
  (import "meshd" "output_write"    (func $output_write    (param i32 i32) (result i32)))
  (import "meshd" "last_error"      (func $last_error      (param i32 i32) (result i32)))
  (import "meshd" "log"             (func $log             (param i32 i32 i32) (result i32)))
  (import "meshd" "publish"         (func $publish         (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "kv_get"          (func $kv_get          (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "kv_set"          (func $kv_set          (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "kv_delete"       (func $kv_delete       (param i32 i32) (result i32)))
  (import "meshd" "discover"        (func $discover        (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "publish_delayed" (func $publish_delayed (param i32 i32 i32 i32 i32) (result i32)))
  (import "meshd" "config_get"      (func $config_get      (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "call"            (func $callsvc         (param i32 i32 i32 i32 i32) (result i32)))
  (import "meshd" "call_result"     (func $call_result     (param i32 i32) (result i32)))

  (memory (export "memory") 1)
  ;; decl: offset 16, length 61
  (data (i32.const 16) "{\"name\":\"hostile\",\"routes\":[{\"method\":\"POST\",\"path\":\"/ops\"}]}")

  (global $IN i32 (i32.const 65536))

  (func (export "meshd_abi_v1"))

  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 16) (i32.const 61)))
    (i32.const 0))

  (func $call (param $fn i32) (param $a i32) (param $b i32) (param $c i32) (param $d i32) (param $e i32) (result i32)
    (block $default
    (block $f13 (block $f12 (block $f11 (block $f10 (block $f9 (block $f8 (block $f7 (block $f6
    (block $f5 (block $f4 (block $f3 (block $f2 (block $f1 (block $f0
      (br_table $f0 $f1 $f2 $f3 $f4 $f5 $f6 $f7 $f8 $f9 $f10 $f11 $f12 $f13 $default (local.get $fn)))
      (return (call $input_read (local.get $a) (local.get $b))))
      (return (call $output_write (local.get $a) (local.get $b))))
      (return (call $last_error (local.get $a) (local.get $b))))
      (return (call $log (local.get $a) (local.get $b) (local.get $c))))
      (return (call $publish (local.get $a) (local.get $b) (local.get $c) (local.get $d))))
      (return (call $kv_get (local.get $a) (local.get $b) (local.get $c) (local.get $d))))
      (return (call $kv_set (local.get $a) (local.get $b) (local.get $c) (local.get $d))))
      (return (call $kv_delete (local.get $a) (local.get $b))))
      (return (call $discover (local.get $a) (local.get $b) (local.get $c) (local.get $d))))
      (return (call $publish_delayed (local.get $a) (local.get $b) (local.get $c) (local.get $d) (local.get $e))))
      (return (call $config_get (local.get $a) (local.get $b) (local.get $c) (local.get $d))))
      (return (call $callsvc (local.get $a) (local.get $b) (local.get $c) (local.get $d) (local.get $e))))
      (return (call $call_result (local.get $a) (local.get $b))))
      (return (call $output_write (i32.const 0) (i32.mul (memory.size) (i32.const 65536)))))
    (i32.const -99))

  (func (export "meshd_http") (param $n i32) (result i32)
    (local $need i32) (local $count i32) (local $op i32) (local $rep i32) (local $r i32)
    ;; pages needed for IN + n bytes
    (local.set $need (i32.shr_u (i32.add (i32.add (global.get $IN) (local.get $n)) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.lt_s (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const 0))
          (then (return (i32.const 3))))))
    (drop (call $input_read (global.get $IN) (local.get $n)))
    (local.set $count (i32.load (global.get $IN)))
    (if (i32.eq (local.get $count) (i32.const -1))
      (then
        (local.set $op (i32.add (global.get $IN) (i32.const 4)))
        (drop (call $call (i32.const 13) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
        (local.set $r (call $call
          (i32.load (local.get $op))
          (i32.load offset=4 (local.get $op)) (i32.load offset=8 (local.get $op))
          (i32.load offset=12 (local.get $op)) (i32.load offset=16 (local.get $op))
          (i32.load offset=20 (local.get $op))))
        (drop (call $call (i32.const 13) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
        (i32.store (i32.const 0) (local.get $r))
        (drop (call $output_write (i32.const 0) (i32.const 4)))
        (return (i32.const 0))))
    (local.set $op (i32.add (global.get $IN) (i32.const 4)))
    (block $done
      (loop $ops
        (br_if $done (i32.eqz (local.get $count)))
        (local.set $rep (i32.load offset=4 (local.get $op)))
        (loop $again
          (local.set $r (call $call
            (i32.load (local.get $op))
            (i32.load offset=8 (local.get $op)) (i32.load offset=12 (local.get $op))
            (i32.load offset=16 (local.get $op)) (i32.load offset=20 (local.get $op))
            (i32.load offset=24 (local.get $op))))
          (local.set $rep (i32.sub (local.get $rep) (i32.const 1)))
          (br_if $again (i32.gt_s (local.get $rep) (i32.const 0))))
        (i32.store (i32.const 0) (local.get $r))
        (drop (call $output_write (i32.const 0) (i32.const 4)))
        (local.set $op (i32.add (local.get $op) (i32.const 28)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $ops)))
    (i32.const 0))
)
