;; conformance.wat — a meshd ABI v1 guest written by hand in the WebAssembly
;; text format, to prove that a non-Go module can implement the ABI (docs/ABI.md).
;; Service "conformance" (file conformance.wasm). Generated offsets and lengths of
;; the constant strings are listed beside each data segment.
;;
;; Memory layout: constants below 4096; the response is built at 4096; values
;; read back land at 32768 (32 KiB); the input buffer is at 65536 with a
;; capacity of 65536; call requests are built at 131072 (64 KiB).
;;
;; Routes (dispatched on the request's route field):
;;   POST /wat/echo     200, body = request body
;;   POST /wat/kv       kv_set("value", body) then kv_get("value") (read your write); 200, body = what was read
;;   GET  /wat/kv       200 with kv_get("value"), 404 when not found
;;   POST /wat/publish  publish("WAT_EVENT", body); 202
;;   GET  /wat/badptr   kv_get into a buffer past the end of memory; 200 and the last_error message when it
;;                      returned -1 (bad pointer), 500 otherwise
;;   GET  /wat/trap     executes unreachable
;;   GET  /wat/denied   publish("NOT_GRANTED", "{}"); 403 and the last_error message when it returned -4 (denied)
;;   GET  /wat/event    200 with kv_get("last-event"), 404 when not found
;;   GET  /wat/whoami   internal route (ABI v1.2; callable by services, not served by the gateway): 200, body =
;;                      the request's consumer field
;; Service calls (ABI v1.2 imports call and call_result; the callee is service "conformance", itself):
;;   POST /wat/call         calls POST /wat/echo with the request body; reads the result first into a 4-byte
;;                          buffer (too small: call_result must return the full length and copy nothing),
;;                          then into one large enough; answers the callee's status and body. 502 and the
;;                          last_error message when the call fails; 500 when grow-and-retry misbehaves.
;;   GET  /wat/call-whoami  calls GET /wat/whoami the same way: answers what the callee saw as consumer
;;   GET  /wat/call-denied  calls service "not-granted"; 403 and the last_error message when it returned -4
;;   GET  /wat/call-badptr  calls with a request pointer past the end of memory; 200 and the last_error message
;;                          when it returned -1, 500 otherwise
;; Event WAT_EVENT: kv_set("last-event", data), log a line, return 0.
(module
  (import "meshd" "input_read"   (func $input_read   (param i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "meshd" "last_error"   (func $last_error   (param i32 i32) (result i32)))
  (import "meshd" "log"          (func $log          (param i32 i32 i32) (result i32)))
  (import "meshd" "publish"      (func $publish      (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "kv_get"       (func $kv_get       (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "kv_set"       (func $kv_set       (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "kv_delete"    (func $kv_delete    (param i32 i32) (result i32)))
  (import "meshd" "discover"     (func $discover     (param i32 i32 i32 i32) (result i32)))
  ;; ABI v1.2
  (import "meshd" "call"         (func $call         (param i32 i32 i32 i32 i32) (result i32)))
  (import "meshd" "call_result"  (func $call_result  (param i32 i32) (result i32)))

  (memory (export "memory") 3)
  ;; decl: offset 2048, length 631
  (data (i32.const 2048) "{\"name\":\"conformance\",\"version\":\"1.0.0\",\"routes\":[{\"method\":\"POST\",\"path\":\"/wat/echo\"},{\"method\":\"POST\",\"path\":\"/wat/kv\"},{\"method\":\"GET\",\"path\":\"/wat/kv\"},{\"method\":\"POST\",\"path\":\"/wat/publish\"},{\"method\":\"GET\",\"path\":\"/wat/badptr\"},{\"method\":\"GET\",\"path\":\"/wat/trap\"},{\"method\":\"GET\",\"path\":\"/wat/denied\"},{\"method\":\"GET\",\"path\":\"/wat/event\"},{\"method\":\"POST\",\"path\":\"/wat/call\"},{\"method\":\"GET\",\"path\":\"/wat/call-whoami\"},{\"method\":\"GET\",\"path\":\"/wat/call-denied\"},{\"method\":\"GET\",\"path\":\"/wat/call-badptr\"},{\"method\":\"GET\",\"path\":\"/wat/whoami\",\"internal\":true}],\"subscriptions\":[{\"type\":\"WAT_EVENT\"}],\"publishes\":[\"WAT_EVENT\"]}")
  ;; r_echo: offset 427, length 14
  (data (i32.const 427) "POST /wat/echo")
  ;; r_kvset: offset 441, length 12
  (data (i32.const 441) "POST /wat/kv")
  ;; r_kvget: offset 453, length 11
  (data (i32.const 453) "GET /wat/kv")
  ;; r_pub: offset 464, length 17
  (data (i32.const 464) "POST /wat/publish")
  ;; r_badptr: offset 481, length 15
  (data (i32.const 481) "GET /wat/badptr")
  ;; r_trap: offset 496, length 13
  (data (i32.const 496) "GET /wat/trap")
  ;; r_denied: offset 509, length 15
  (data (i32.const 509) "GET /wat/denied")
  ;; r_event: offset 524, length 14
  (data (i32.const 524) "GET /wat/event")
  ;; h_ct: offset 538, length 12
  (data (i32.const 538) "content-type")
  ;; h_json: offset 550, length 16
  (data (i32.const 550) "application/json")
  ;; k_val: offset 566, length 5
  (data (i32.const 566) "value")
  ;; k_event: offset 571, length 10
  (data (i32.const 571) "last-event")
  ;; t_wat: offset 581, length 9
  (data (i32.const 581) "WAT_EVENT")
  ;; t_nope: offset 590, length 11
  (data (i32.const 590) "NOT_GRANTED")
  ;; empty_obj: offset 601, length 2
  (data (i32.const 601) "{}")
  ;; log_msg: offset 603, length 34
  (data (i32.const 603) "conformance guest handled an event")
  ;; r_call: offset 637, length 14
  (data (i32.const 637) "POST /wat/call")
  ;; r_cwho: offset 651, length 20
  (data (i32.const 651) "GET /wat/call-whoami")
  ;; r_cden: offset 671, length 20
  (data (i32.const 671) "GET /wat/call-denied")
  ;; r_cbad: offset 691, length 20
  (data (i32.const 691) "GET /wat/call-badptr")
  ;; r_who: offset 711, length 15
  (data (i32.const 711) "GET /wat/whoami")
  ;; s_callee: offset 726, length 11
  (data (i32.const 726) "conformance")
  ;; s_nope: offset 737, length 11
  (data (i32.const 737) "not-granted")
  ;; m_post: offset 748, length 4
  (data (i32.const 748) "POST")
  ;; m_get: offset 752, length 3
  (data (i32.const 752) "GET")
  ;; p_echo: offset 755, length 9
  (data (i32.const 755) "/wat/echo")
  ;; p_who: offset 764, length 11
  (data (i32.const 764) "/wat/whoami")

  (global $IN i32 (i32.const 65536))
  (global $INCAP i32 (i32.const 65536))
  (global $OUT i32 (i32.const 4096))
  ;; values read back from the store land here (32 KiB)
  (global $VAL i32 (i32.const 32768))
  (global $VALCAP i32 (i32.const 32768))
  ;; call requests are built here (64 KiB)
  (global $CR i32 (i32.const 131072))
  (global $CRCAP i32 (i32.const 65536))

  (func (export "meshd_abi_v1"))

  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 2048) (i32.const 631)))
    (i32.const 0))

  ;; end of the str/bytes field at $off
  (func $str_end (param $off i32) (result i32)
    (i32.add (i32.add (local.get $off) (i32.const 4)) (i32.load (local.get $off))))

  ;; end of the pairs field at $off
  (func $pairs_end (param $off i32) (result i32)
    (local $n i32)
    (local.set $n (i32.load (local.get $off)))
    (local.set $off (i32.add (local.get $off) (i32.const 4)))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $off (call $str_end (call $str_end (local.get $off))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $off))

  ;; byte equality of [a, a+alen) and [b, b+blen)
  (func $eq (param $a i32) (param $alen i32) (param $b i32) (param $blen i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $alen) (local.get $blen)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $alen)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; writes a Response: status, one header content-type: application/json, body
  (func $respond (param $status i32) (param $body i32) (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $OUT))
    (i32.store (local.get $p) (local.get $status))
    (i32.store offset=4 (local.get $p) (i32.const 1))
    (i32.store offset=8 (local.get $p) (i32.const 12))
    (memory.copy (i32.add (local.get $p) (i32.const 12)) (i32.const 538) (i32.const 12))
    (local.set $p (i32.add (local.get $p) (i32.const 24)))
    (i32.store (local.get $p) (i32.const 16))
    (memory.copy (i32.add (local.get $p) (i32.const 4)) (i32.const 550) (i32.const 16))
    (local.set $p (i32.add (local.get $p) (i32.const 20)))
    (i32.store (local.get $p) (local.get $len))
    (memory.copy (i32.add (local.get $p) (i32.const 4)) (local.get $body) (local.get $len))
    (local.set $p (i32.add (i32.add (local.get $p) (i32.const 4)) (local.get $len)))
    (drop (call $output_write (global.get $OUT) (i32.sub (local.get $p) (global.get $OUT))))
    (i32.const 0))

  ;; answers 200 with the stored value of a key, or 404
  (func $get_key (param $k i32) (param $klen i32) (result i32)
    (local $n i32)
    (local.set $n (call $kv_get (local.get $k) (local.get $klen) (global.get $VAL) (global.get $VALCAP)))
    (if (i32.eq (local.get $n) (i32.const -2))
      (then (return (call $respond (i32.const 404) (i32.const 601) (i32.const 2)))))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.const 8))))
    (if (i32.gt_u (local.get $n) (global.get $VALCAP)) (then (return (i32.const 3))))
    (call $respond (i32.const 200) (global.get $VAL) (local.get $n)))

  ;; answers with the last error message
  (func $respond_error (param $status i32) (result i32)
    (local $n i32)
    (local.set $n (call $last_error (global.get $VAL) (global.get $VALCAP)))
    (call $respond (local.get $status) (global.get $VAL) (local.get $n)))

  ;; writes a str/bytes field of [src, src+len) at $o and returns its end
  (func $put (param $o i32) (param $src i32) (param $len i32) (result i32)
    (i32.store (local.get $o) (local.get $len))
    (memory.copy (i32.add (local.get $o) (i32.const 4)) (local.get $src) (local.get $len))
    (i32.add (i32.add (local.get $o) (i32.const 4)) (local.get $len)))

  ;; builds a CallRequest at $CR (method, path, empty query, no headers,
  ;; body) and returns its length, or -1 when it does not fit
  (func $call_request (param $m i32) (param $mlen i32) (param $p i32) (param $plen i32) (param $b i32) (param $blen i32) (result i32)
    (local $o i32)
    (if (i32.gt_u (local.get $blen) (i32.sub (global.get $CRCAP) (i32.const 1024))) (then (return (i32.const -1))))
    (local.set $o (call $put (global.get $CR) (local.get $m) (local.get $mlen)))
    (local.set $o (call $put (local.get $o) (local.get $p) (local.get $plen)))
    (local.set $o (call $put (local.get $o) (i32.const 0) (i32.const 0)))
    (i32.store (local.get $o) (i32.const 0))
    (local.set $o (call $put (i32.add (local.get $o) (i32.const 4)) (local.get $b) (local.get $blen)))
    (i32.sub (local.get $o) (global.get $CR)))

  ;; calls service "conformance" with the request built at $CR ($len bytes),
  ;; reads the result with grow and retry and answers the callee's status
  ;; and body
  (func $call_and_answer (param $len i32) (result i32)
    (local $n i32) (local $r i32) (local $off i32)
    (if (i32.lt_s (local.get $len) (i32.const 0)) (then (return (i32.const 3))))
    (local.set $n (call $call (i32.const 726) (i32.const 11) (global.get $CR) (local.get $len) (i32.const 0)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (call $respond_error (i32.const 502)))))
    ;; a 4-byte buffer is too small for any response (at least 12 bytes):
    ;; the full length comes back and nothing is copied
    (i32.store (global.get $VAL) (i32.const 0x5a5a5a5a))
    (local.set $r (call $call_result (global.get $VAL) (i32.const 4)))
    (if (i32.or (i32.ne (local.get $r) (local.get $n))
                (i32.ne (i32.load (global.get $VAL)) (i32.const 0x5a5a5a5a)))
      (then (return (call $respond (i32.const 500) (i32.const 601) (i32.const 2)))))
    (if (i32.gt_u (local.get $n) (global.get $VALCAP)) (then (return (i32.const 3))))
    ;; again, with room: the same response, without calling again
    (local.set $r (call $call_result (global.get $VAL) (global.get $VALCAP)))
    (if (i32.ne (local.get $r) (local.get $n))
      (then (return (call $respond (i32.const 500) (i32.const 601) (i32.const 2)))))
    ;; status, headers, body
    (local.set $off (call $pairs_end (i32.add (global.get $VAL) (i32.const 4))))
    (call $respond (i32.load (global.get $VAL)) (i32.add (local.get $off) (i32.const 4)) (i32.load (local.get $off))))

  (func (export "meshd_http") (param $n i32) (result i32)
    (local $route i32) (local $rlen i32) (local $off i32) (local $body i32) (local $blen i32) (local $r i32)
    (local $consumer i32)
    (if (i32.gt_u (local.get $n) (global.get $INCAP)) (then (return (i32.const 3))))
    (drop (call $input_read (global.get $IN) (global.get $INCAP)))
    ;; method, path, query, then route
    (local.set $off (call $str_end (call $str_end (call $str_end (global.get $IN)))))
    (local.set $rlen (i32.load (local.get $off)))
    (local.set $route (i32.add (local.get $off) (i32.const 4)))
    ;; route, params, headers, consumer, request id, traceparent, then body
    (local.set $off (call $str_end (local.get $off)))
    (local.set $off (call $pairs_end (call $pairs_end (local.get $off))))
    (local.set $consumer (local.get $off))
    (local.set $off (call $str_end (call $str_end (call $str_end (local.get $off)))))
    (local.set $blen (i32.load (local.get $off)))
    (local.set $body (i32.add (local.get $off) (i32.const 4)))

    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 427) (i32.const 14))
      (then (return (call $respond (i32.const 200) (local.get $body) (local.get $blen)))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 441) (i32.const 12))
      (then
        (if (i32.lt_s (call $kv_set (i32.const 566) (i32.const 5) (local.get $body) (local.get $blen)) (i32.const 0))
          (then (return (call $respond_error (i32.const 500)))))
        (return (call $get_key (i32.const 566) (i32.const 5)))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 453) (i32.const 11))
      (then (return (call $get_key (i32.const 566) (i32.const 5)))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 524) (i32.const 14))
      (then (return (call $get_key (i32.const 571) (i32.const 10)))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 464) (i32.const 17))
      (then
        (if (i32.lt_s (call $publish (i32.const 581) (i32.const 9) (local.get $body) (local.get $blen)) (i32.const 0))
          (then (return (call $respond_error (i32.const 500)))))
        (return (call $respond (i32.const 202) (i32.const 601) (i32.const 2)))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 481) (i32.const 15))
      (then
        (local.set $r (call $kv_get (i32.const 566) (i32.const 5) (i32.const 0xFFFFFFF0) (i32.const 64)))
        (if (i32.eq (local.get $r) (i32.const -1))
          (then (return (call $respond_error (i32.const 200)))))
        (return (call $respond (i32.const 500) (i32.const 601) (i32.const 2)))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 496) (i32.const 13))
      (then (unreachable)))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 509) (i32.const 15))
      (then
        (local.set $r (call $publish (i32.const 590) (i32.const 11) (i32.const 601) (i32.const 2)))
        (if (i32.eq (local.get $r) (i32.const -4))
          (then (return (call $respond_error (i32.const 403)))))
        (return (call $respond (i32.const 500) (i32.const 601) (i32.const 2)))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 711) (i32.const 15))
      (then (return (call $respond (i32.const 200) (i32.add (local.get $consumer) (i32.const 4)) (i32.load (local.get $consumer))))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 637) (i32.const 14))
      (then (return (call $call_and_answer
        (call $call_request (i32.const 748) (i32.const 4) (i32.const 755) (i32.const 9) (local.get $body) (local.get $blen))))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 651) (i32.const 20))
      (then (return (call $call_and_answer
        (call $call_request (i32.const 752) (i32.const 3) (i32.const 764) (i32.const 11) (i32.const 0) (i32.const 0))))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 671) (i32.const 20))
      (then
        (local.set $r (call $call (i32.const 737) (i32.const 11) (global.get $CR)
          (call $call_request (i32.const 752) (i32.const 3) (i32.const 755) (i32.const 9) (i32.const 0) (i32.const 0))
          (i32.const 0)))
        (if (i32.eq (local.get $r) (i32.const -4))
          (then (return (call $respond_error (i32.const 403)))))
        (return (call $respond (i32.const 500) (i32.const 601) (i32.const 2)))))
    (if (call $eq (local.get $route) (local.get $rlen) (i32.const 691) (i32.const 20))
      (then
        (local.set $r (call $call (i32.const 726) (i32.const 11) (i32.const 0xFFFFFFF0) (i32.const 16) (i32.const 0)))
        (if (i32.eq (local.get $r) (i32.const -1))
          (then (return (call $respond_error (i32.const 200)))))
        (return (call $respond (i32.const 500) (i32.const 601) (i32.const 2)))))
    (call $respond (i32.const 404) (i32.const 601) (i32.const 2)))

  (func (export "meshd_event") (param $n i32) (result i32)
    (local $off i32)
    (if (i32.gt_u (local.get $n) (global.get $INCAP)) (then (return (i32.const 3))))
    (drop (call $input_read (global.get $IN) (global.get $INCAP)))
    ;; id, source, type, time, datacontenttype, traceparent, attempt (u32), then data
    (local.set $off (call $str_end (call $str_end (call $str_end (global.get $IN)))))
    (local.set $off (call $str_end (call $str_end (call $str_end (local.get $off)))))
    (local.set $off (i32.add (local.get $off) (i32.const 4)))
    (if (i32.lt_s (call $kv_set (i32.const 571) (i32.const 10) (i32.add (local.get $off) (i32.const 4)) (i32.load (local.get $off))) (i32.const 0))
      (then (return (i32.const 8))))
    (drop (call $log (i32.const 0) (i32.const 603) (i32.const 34)))
    (i32.const 0))
)
