package daemon

import (
	"strings"
	"testing"

	"github.com/meshd/meshd/internal/wattest"
)

// TestBadModulesAreRefused drops broken modules beside the good ones: each is
// refused with a log line naming the file and the reason, and the good
// services load and serve. (A module contesting a good one's routes at
// start refuses both: routeconflict_test.go.)
func TestBadModulesAreRefused(t *testing.T) {
	conformance := wattest.Build(t, "../host/testdata/conformance.wat")
	td := startDaemon(t, map[string][]byte{
		"corrupt.wasm":   []byte("not wasm at all"),
		"truncated.wasm": conformance[:len(conformance)/2],
		"nomarker.wasm":  wattest.Build(t, "testdata/nomarker.wat"),
		"inittrap.wasm":  wattest.Build(t, "testdata/inittrap.wat"),
		// The conformance guest again, under another name and with no grants file.
		"rogue.wasm": conformance,
	}, nil)

	logs := td.logs.String()
	refused := map[string][]string{
		"corrupt.wasm":   {"invalid module"},
		"truncated.wasm": {"invalid module"},
		"nomarker.wasm":  {"meshd_abi_v1"},
		"inittrap.wasm":  {"_initialize"},
		"rogue.wasm":     {"WAT_EVENT is not granted", "declares name", "conformance"},
	}
	for file, reasons := range refused {
		line := ""
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, "module refused") && strings.Contains(l, "file="+file) {
				line = l
			}
		}
		if line == "" {
			t.Errorf("no 'module refused' log line for %s", file)
			continue
		}
		for _, r := range reasons {
			if !strings.Contains(line, r) {
				t.Errorf("%s: refusal %q does not say %q", file, line, r)
			}
		}
	}
	got := strings.Join(td.Services(), ",")
	if got != "conformance,order,payment,shipping" {
		t.Fatalf("loaded services %s, want conformance,order,payment,shipping", got)
	}
	if r := td.do(t, "POST", "/orders", "application/json", orderBody); r.status != 201 {
		t.Fatalf("POST /orders beside bad modules: %d %s", r.status, r.body)
	}
}
