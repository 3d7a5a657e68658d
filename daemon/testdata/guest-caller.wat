;; The WAT caller of daemon/calls_bench_test.go: a hand-written guest that
;; makes service-to-service calls with nothing between it and the ABI, so
;; the runtime's own cost of a call (the two host-function crossings, the
;; binding, the mesh client, the callee's invocation) is measured apart
;; from the Go SDK's. Loaded as service "watcaller".
;;
;;   GET /watcaller/{callee}/{rest...}?N  calls GET /{rest...} on callee N
;;        times (at most 10000) and answers 200
;;        {"ok":K,"failed":F,"code":"..."}: K calls answered 200, F did not
;;        (code: the last failure's ABI code name, or "status S" for a
;;        response of status S), as guest-caller's /caller/loop does.
;;
;; Each call is the ABI's whole round: `call`, then `call_result` into a
;; buffer of its own when the call answered (the response's status is its
;; first u32). A failed call's message is not read (no `last_error`): the
;; code is all this caller needs.
;;
;; Memory: 400 code name lengths, 512 code names (16 bytes a slot),
;; 1024 declaration, 8192 input (8 KiB), 16384 call request,
;; 20480 call response (4 KiB), 32768 output.
(module
  (import "meshd" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "meshd" "call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (import "meshd" "call_result" (func $call_result (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  (data (i32.const 400) "\02\00\00\00\0b\00\00\00\09\00\00\00\09\00\00\00\06\00\00\00\10\00\00\00\0b\00\00\00\07\00\00\00\0e\00\00\00")
  (data (i32.const 512) "ok")
  (data (i32.const 528) "bad pointer")
  (data (i32.const 544) "not found")
  (data (i32.const 560) "too large")
  (data (i32.const 576) "denied")
  (data (i32.const 592) "invalid argument")
  (data (i32.const 608) "unavailable")
  (data (i32.const 624) "timeout")
  (data (i32.const 640) "internal error")
  (data (i32.const 1024) "{\"routes\":[{\"method\":\"GET\",\"path\":\"/watcaller/{callee}/{rest...}\"}]}")

  (func (export "meshd_abi_v1"))

  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 1024) (i32.const 68)))
    (i32.const 0))

  ;; $str copies n bytes at src to dst and returns dst+n.
  (func $str (param $dst i32) (param $src i32) (param $n i32) (result i32)
    (memory.copy (local.get $dst) (local.get $src) (local.get $n))
    (i32.add (local.get $dst) (local.get $n)))

  ;; $itoa writes v in decimal at dst and returns the end.
  (func $itoa (param $dst i32) (param $v i32) (result i32)
    (local $end i32) (local $t i32)
    ;; count the digits
    (local.set $end (i32.add (local.get $dst) (i32.const 1)))
    (local.set $t (i32.div_u (local.get $v) (i32.const 10)))
    (block $counted
      (loop $count
        (br_if $counted (i32.eqz (local.get $t)))
        (local.set $end (i32.add (local.get $end) (i32.const 1)))
        (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
        (br $count)))
    ;; write them backwards
    (local.set $t (local.get $end))
    (loop $write
      (local.set $t (i32.sub (local.get $t) (i32.const 1)))
      (i32.store8 (local.get $t)
        (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $write (i32.gt_u (local.get $t) (local.get $dst))))
    (local.get $end))

  (func (export "meshd_http") (param $len i32) (result i32)
    (local $p i32) (local $path i32) (local $pathEnd i32) (local $q i32)
    (local $qEnd i32) (local $n i32) (local $name i32) (local $j i32)
    (local $reqLen i32) (local $i i32) (local $r i32) (local $ok i32)
    (local $failed i32) (local $code i32) (local $status i32) (local $o i32)
    ;; the request: method, path, query are its first three strs
    (if (i32.gt_u (local.get $len) (i32.const 8192)) (then (return (i32.const 3))))
    (if (i32.ne (call $input_read (i32.const 8192) (i32.const 8192)) (local.get $len))
      (then (return (i32.const 8))))
    (local.set $p (i32.add (i32.const 8196) (i32.load (i32.const 8192))))
    (local.set $path (i32.add (local.get $p) (i32.const 4)))
    (local.set $pathEnd (i32.add (local.get $path) (i32.load (local.get $p))))
    (local.set $q (i32.add (local.get $pathEnd) (i32.const 4)))
    (local.set $qEnd (i32.add (local.get $q) (i32.load (local.get $pathEnd))))
    ;; N: the query's leading decimal digits, at most 10000
    (block $digits
      (loop $digit
        (br_if $digits (i32.ge_u (local.get $q) (local.get $qEnd)))
        (local.set $r (i32.sub (i32.load8_u (local.get $q)) (i32.const 48)))
        (br_if $digits (i32.gt_u (local.get $r) (i32.const 9)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (local.get $r)))
        (if (i32.gt_u (local.get $n) (i32.const 10000)) (then (local.set $n (i32.const 10000))))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $digit)))
    ;; callee: the path's segment after "/watcaller/"; the call's path: the rest
    (local.set $name (i32.add (local.get $path) (i32.const 11)))
    (local.set $j (local.get $name))
    (block $found
      (loop $scan
        (br_if $found (i32.ge_u (local.get $j) (local.get $pathEnd)))
        (br_if $found (i32.eq (i32.load8_u (local.get $j)) (i32.const 47)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $scan)))
    ;; the call request: "GET", the path, no query, no headers, no body
    (i32.store (i32.const 16384) (i32.const 3))
    (i32.store (i32.const 16388) (i32.const 0x544547)) ;; "GET"
    (i32.store (i32.const 16391) (i32.sub (local.get $pathEnd) (local.get $j)))
    (local.set $p (call $str (i32.const 16395) (local.get $j) (i32.sub (local.get $pathEnd) (local.get $j))))
    (i64.store (local.get $p) (i64.const 0))
    (i32.store (i32.add (local.get $p) (i32.const 8)) (i32.const 0))
    (local.set $reqLen (i32.sub (i32.add (local.get $p) (i32.const 12)) (i32.const 16384)))
    ;; the calls
    (block $done
      (loop $calls
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $r (call $call (local.get $name) (i32.sub (local.get $j) (local.get $name))
          (i32.const 16384) (local.get $reqLen) (i32.const 0)))
        (if (i32.lt_s (local.get $r) (i32.const 0))
          (then
            (local.set $failed (i32.add (local.get $failed) (i32.const 1)))
            (local.set $code (i32.sub (i32.const 0) (local.get $r)))
            (local.set $status (i32.const 0)))
          (else
            (local.set $r (call $call_result (i32.const 20480) (i32.const 4096)))
            (if (i32.or (i32.lt_s (local.get $r) (i32.const 4)) (i32.gt_s (local.get $r) (i32.const 4096)))
              (then
                (local.set $failed (i32.add (local.get $failed) (i32.const 1)))
                (local.set $code (i32.const 8))
                (local.set $status (i32.const 0)))
              (else
                (if (i32.eq (i32.load (i32.const 20480)) (i32.const 200))
                  (then (local.set $ok (i32.add (local.get $ok) (i32.const 1))))
                  (else
                    (local.set $failed (i32.add (local.get $failed) (i32.const 1)))
                    (local.set $status (i32.load (i32.const 20480)))))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $calls)))
    ;; the answer: status 200, no headers, the JSON body at 32780
    (local.set $o (call $str (i32.const 32780) (i32.const 1100) (i32.const 6)))
    (local.set $o (call $itoa (local.get $o) (local.get $ok)))
    (local.set $o (call $str (local.get $o) (i32.const 1106) (i32.const 10)))
    (local.set $o (call $itoa (local.get $o) (local.get $failed)))
    (local.set $o (call $str (local.get $o) (i32.const 1116) (i32.const 9)))
    (if (i32.ne (local.get $status) (i32.const 0))
      (then
        (local.set $o (call $str (local.get $o) (i32.const 1125) (i32.const 7)))
        (local.set $o (call $itoa (local.get $o) (local.get $status))))
      (else
        (if (i32.gt_u (local.get $code) (i32.const 8)) (then (local.set $code (i32.const 8))))
        (local.set $o (call $str (local.get $o)
          (i32.add (i32.const 512) (i32.shl (local.get $code) (i32.const 4)))
          (i32.load (i32.add (i32.const 400) (i32.shl (local.get $code) (i32.const 2))))))))
    (local.set $o (call $str (local.get $o) (i32.const 1132) (i32.const 2)))
    (i32.store (i32.const 32768) (i32.const 200))
    (i32.store (i32.const 32772) (i32.const 0))
    (i32.store (i32.const 32776) (i32.sub (local.get $o) (i32.const 32780)))
    (drop (call $output_write (i32.const 32768) (i32.sub (local.get $o) (i32.const 32768))))
    (i32.const 0))

  ;; pieces of the answer
  (data (i32.const 1100) "{\"ok\":,\"failed\":,\"code\":\"status \"}"))
