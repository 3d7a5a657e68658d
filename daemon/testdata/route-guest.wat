;; A guest that declares the routes the test gives it and answers every
;; request 200 with an X-Service header and a body naming the service, so a
;; test can tell which service took a request (HEAD included).
;; routeGuest (daemon/routeconflict_test.go) fills in DECLARATION and
;; RESPONSE (WAT string bodies) and their lengths.
(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "RESPONSE")
  (data (i32.const 4096) "DECLARATION")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 4096) (i32.const DECLARATION_LEN)))
    (i32.const 0))
  (func (export "meshd_http") (param i32) (result i32)
    (drop (call $output_write (i32.const 16) (i32.const RESPONSE_LEN)))
    (i32.const 0)))
