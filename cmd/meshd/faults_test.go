package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/syncbuf"
)

// The fault suite: real meshd processes killed, stopped and started on
// damaged data directories. Each case checks what a shop relies on: every
// order that got a 201 ends PAID or CANCELLED as the rules say, is paid at
// most once, and none is stuck; a damaged file costs a repair or a clear
// not-ready, never a crash loop.

// faultNode runs meshd on one plugin and data directory across restarts.
type faultNode struct {
	t       *testing.T
	bin     string
	plugins string
	data    string
	extra   []string
	cmd     *exec.Cmd
	base    string
	logs    []*syncbuf.Buffer
}

func newFaultNode(t *testing.T, extra ...string) *faultNode {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs meshd; skipped with -short")
	}
	bin := buildMeshd(t)
	dir, plugins := pluginDir(t, demoPlugins("order", "payment"))
	return &faultNode{t: t, bin: bin, plugins: plugins, data: filepath.Join(dir, "data"), extra: extra}
}

func (n *faultNode) start() {
	n.t.Helper()
	args := append([]string{"run", "--plugins", n.plugins, "--data", n.data, "--http", "127.0.0.1:0", "--admin", "off", "--no-watch"}, n.extra...)
	cmd, base, l := startBinary(n.t, n.bin, args...)
	n.cmd, n.base = cmd, base
	n.logs = append(n.logs, l)
}

func (n *faultNode) allLogs() string {
	var b strings.Builder
	for _, l := range n.logs {
		b.WriteString(l.String())
	}
	s := b.String()
	return s[max(0, len(s)-6000):]
}

// load posts orders from four clients until stop closes or count orders
// were accepted, and returns what each accepted order must end as. Orders
// whose request failed (the process died under them) are not counted: no
// 201, no promise.
func (n *faultNode) load(count int, stop <-chan struct{}) map[string]string {
	var mu sync.Mutex
	want := map[string]string{}
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				full := len(want) >= count
				mu.Unlock()
				if full {
					return
				}
				price, status := 1000, "PAID"
				if (i+c)%4 == 0 {
					price, status = 6000000, "CANCELLED" // over the payment limit
				}
				resp, err := client.Post(n.base+"/orders", "application/json",
					strings.NewReader(fmt.Sprintf(`{"user_id":"f%d","items":[{"name":"x","price":%d}]}`, c, price)))
				if err != nil {
					return // the process is gone
				}
				var o struct{ ID string }
				err = json.NewDecoder(resp.Body).Decode(&o)
				resp.Body.Close()
				if resp.StatusCode == 201 && err == nil && o.ID != "" {
					mu.Lock()
					want[o.ID] = status
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return want
}

// settle waits until every order in want has its final status and checks
// that each was paid at most once, by the payment named after it.
func (n *faultNode) settle(want map[string]string) {
	n.t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	type order struct {
		ID, Status string
		PaymentID  string `json:"payment_id"`
	}
	got := map[string]order{}
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		for id := range want {
			if o, ok := got[id]; ok && o.Status == want[id] {
				continue
			}
			resp, err := client.Get(n.base + "/orders/" + id)
			if err != nil {
				continue
			}
			var o order
			_ = json.NewDecoder(resp.Body).Decode(&o)
			resp.Body.Close()
			got[id] = o
		}
		done := true
		for id, status := range want {
			if got[id].Status != status {
				done = false
				break
			}
		}
		if done {
			break
		}
	}
	stuck := map[string]int{}
	for id, status := range want {
		o := got[id]
		if o.Status != status {
			stuck[fmt.Sprintf("%s, want %s", o.Status, status)]++
			continue
		}
		// An order is paid by the one payment named after it: a second
		// payment for it cannot exist (its id would be the same).
		if status == "PAID" {
			if o.PaymentID != "pay-"+id {
				n.t.Errorf("order %s paid by %q, want pay-%s", id, o.PaymentID, id)
				continue
			}
			resp, err := client.Get(n.base + "/payments/" + o.PaymentID)
			if err != nil {
				n.t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), `"COMPLETED"`) {
				n.t.Errorf("payment of order %s: %d %s", id, resp.StatusCode, b)
			}
		}
	}
	if len(stuck) > 0 {
		n.t.Fatalf("of %d accepted orders, these did not end as the rules say: %v\nlogs:\n%s", len(want), stuck, n.allLogs())
	}
}

// TestFaultSIGKILLUnderLoad: SIGKILL while four clients post orders, with
// lazy and with always sync; after a restart every accepted order settles
// as the rules say, paid at most once.
func TestFaultSIGKILLUnderLoad(t *testing.T) {
	for _, mode := range []string{"lazy", "always"} {
		t.Run(mode, func(t *testing.T) {
			var flags []string
			if mode == "always" {
				flags = []string{"--sync", "always"}
			}
			n := newFaultNode(t, flags...)
			n.start()
			stop := make(chan struct{})
			kill := time.AfterFunc(1500*time.Millisecond, func() {
				_ = n.cmd.Process.Kill()
				close(stop)
			})
			defer kill.Stop()
			want := n.load(100000, stop)
			_ = n.cmd.Wait()
			if len(want) == 0 {
				t.Fatalf("no order accepted before the kill\n%s", n.allLogs())
			}
			t.Logf("%d orders accepted before SIGKILL", len(want))
			n.start()
			n.settle(want)
		})
	}
}

// TestFaultSIGTERMUnderLoad: a graceful stop while orders flow cancels
// none that should be paid: the events it had fetched are handled before it
// exits, the rest wait in the stream for the restart.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	n := newFaultNode(t)
	n.start()
	stop := make(chan struct{})
	term := time.AfterFunc(1500*time.Millisecond, func() {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		close(stop)
	})
	defer term.Stop()
	want := n.load(100000, stop)
	if err := n.cmd.Wait(); err != nil {
		t.Fatalf("meshd exited with %v after SIGTERM\n%s", err, n.allLogs())
	}
	t.Logf("%d orders accepted before SIGTERM", len(want))
	n.start()
	n.settle(want)
}

// TestFaultDamagedFilesAtStart: the data directory of a stopped meshd is
// damaged in one way, and meshd is started on it again: it must start and
// serve orders (repairing what it can), never crash at start.
func TestFaultDamagedFilesAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		glob string // files under the data directory to damage
		how  func(t *testing.T, path string)
	}{
		{"compilation cache truncated", "cache/*/*", truncateHalf},
		{"compilation cache garbage", "cache/*/*", garbage},
		{"compilation cache empty", "cache/*/*", func(t *testing.T, p string) { writeFile(t, p, nil) }},
		{"event stream block truncated", "nats/jetstream/*/streams/MESHD_EVENTS/msgs/*.blk", truncateHalf},
		{"event stream block garbage", "nats/jetstream/*/streams/MESHD_EVENTS/msgs/*.blk", garbage},
		{"consumer state garbage", "nats/jetstream/*/streams/MESHD_EVENTS/obs/*/o.dat", garbage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFaultNode(t)
			n.start()
			before := n.load(20, nil)
			n.settle(before)
			if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			_ = n.cmd.Wait()
			files, _ := filepath.Glob(filepath.Join(n.data, tc.glob))
			damaged := 0
			for _, f := range files {
				if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
					tc.how(t, f)
					damaged++
				}
			}
			if damaged == 0 {
				t.Fatalf("no file matches %s under the data directory", tc.glob)
			}
			n.start() // fails the test if meshd does not come up
			after := n.load(20, nil)
			if len(after) < 20 {
				t.Fatalf("after the damage %d of 20 orders accepted\n%s", len(after), n.allLogs())
			}
			n.settle(after)
		})
	}
}

func truncateHalf(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

func garbage(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, max(fi.Size(), 64))
	for i := range b {
		b[i] = byte(i*131 + 7)
	}
	writeFile(t, path, b)
}
