package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/meshd/meshd/abi"
)

// goMarker is what guest-density's data holds in its route and answer,
// replaced in each copy by a six-character service tag.
const goMarker = "QqZzXx"

// goGuest is the Go service's module, built by `make fixtures`.
const goGuest = "bench/density/testdata/guest-density.wasm"

// service is one generated service: its name (the file's) and the URL
// path one request to it takes, whose answer holds tag.
type service struct {
	name, path, tag string
}

// goService writes the i-th copy of base, the guest-density module, into
// dir: its marker replaced by a tag of its own, so that each copy is a
// distinct module declaring a distinct route.
func goService(dir string, base []byte, i int) (service, error) {
	tag := fmt.Sprintf("g%05d", i)
	if !bytes.Contains(base, []byte(goMarker)) {
		return service{}, fmt.Errorf("%s holds no %q: rebuild it (make fixtures)", goGuest, goMarker)
	}
	wasm := bytes.ReplaceAll(base, []byte(goMarker), []byte(tag))
	s := service{name: tag, path: "/dsvc-" + tag + "/items/42", tag: "dsvc-" + tag}
	return s, os.WriteFile(filepath.Join(dir, s.name+".wasm"), wasm, 0o644)
}

// watTemplate is a WAT service: it declares one route and answers every
// request with one fixed response.
const watTemplate = `(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) RESPONSE)
  (data (i32.const 4096) DECLARATION)
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 4096) (i32.const DECLARATION_LEN)))
    (i32.const 0))
  (func (export "meshd_http") (param i32) (result i32)
    (drop (call $output_write (i32.const 16) (i32.const RESPONSE_LEN)))
    (i32.const 0)))
`

// watService writes the i-th WAT service, compiled by wat2wasm, into dir.
func watService(ctx context.Context, dir, scratch string, i int) (service, error) {
	tag := fmt.Sprintf("w%05d", i)
	s := service{name: tag, path: "/wsvc-" + tag + "/items/42", tag: "wsvc-" + tag}
	decl, err := json.Marshal(abi.Declaration{Routes: []abi.Route{{Method: "GET", Path: "/wsvc-" + tag + "/items/{id}"}}})
	if err != nil {
		return s, err
	}
	body := []byte(`{"svc":"` + s.tag + `"}`)
	resp := (&abi.Response{Status: 200, Headers: []abi.Pair{{Key: []byte("content-type"), Value: []byte("application/json")}}, Body: body}).Append(nil)
	src := strings.NewReplacer(
		"DECLARATION_LEN", fmt.Sprint(len(decl)),
		"RESPONSE_LEN", fmt.Sprint(len(resp)),
		"DECLARATION", watString(decl),
		"RESPONSE", watString(resp),
	).Replace(watTemplate)
	in := filepath.Join(scratch, tag+".wat")
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		return s, err
	}
	out, err := exec.CommandContext(ctx, "wat2wasm", in, "-o", filepath.Join(dir, tag+".wasm")).CombinedOutput()
	if err != nil {
		return s, fmt.Errorf("wat2wasm: %v: %s", err, out)
	}
	return s, nil
}

// watString is b as a WAT string literal, every byte escaped.
func watString(b []byte) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, c := range b {
		fmt.Fprintf(&sb, "\\%02x", c)
	}
	sb.WriteByte('"')
	return sb.String()
}

// generate writes n services of kind ("go" or "wat") into dir.
func generate(ctx context.Context, root, kind, dir string, n int) ([]service, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var base []byte
	if kind == "go" {
		var err error
		if base, err = os.ReadFile(filepath.Join(root, goGuest)); err != nil {
			return nil, fmt.Errorf("%w: run make fixtures", err)
		}
	}
	scratch, err := os.MkdirTemp("", "density-wat-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	out := make([]service, 0, n)
	for i := range n {
		var s service
		var err error
		if kind == "go" {
			s, err = goService(dir, base, i)
		} else {
			s, err = watService(ctx, dir, scratch, i)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// verify sends one request to each service and checks its answer.
func verify(ctx context.Context, addr string, svcs []service) error {
	for _, s := range svcs {
		code, body, err := get(ctx, "http://"+addr+s.path)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if code != 200 || !bytes.Contains(body, []byte(`"`+s.tag+`"`)) {
			return fmt.Errorf("%s: GET %s answered %d %s", s.name, s.path, code, bound(string(body), 200))
		}
	}
	return nil
}
