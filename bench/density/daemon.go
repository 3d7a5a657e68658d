package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// daemon is a running bin/meshd.
type daemon struct {
	cmd   *exec.Cmd
	http  string // the gateway's address
	admin string // the admin listener's address
	// Started is the time from exec to the "meshd serving" line (every
	// service of the plugin directory loaded, the gateway listening).
	Started time.Duration
	// Services is what that line counts.
	Services int

	mu        sync.Mutex
	fromCache int      // snapshots read from the cache directory
	taken     int      // snapshots taken by running the initialiser
	slept     int      // services fallen asleep (idle release)
	errs      []string // error lines (bounded)
	done      chan struct{}
}

// startDaemon runs meshd on the plugin directory plugins and the data
// directory data, with extra flags, and waits (at most wait) until it
// serves.
func startDaemon(bin, plugins, data string, wait time.Duration, extra ...string) (*daemon, error) {
	args := append([]string{"run", "--plugins", plugins, "--data", data,
		"--http", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--log-format", "json", "--log-level", "debug", "--no-watch"}, extra...)
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	d := &daemon{cmd: cmd, done: make(chan struct{})}
	serving := make(chan struct{})
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		_ = pw.Close()
	}()
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var once sync.Once
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			msg, _ := line["msg"].(string)
			d.mu.Lock()
			switch msg {
			case "admin listening":
				d.admin, _ = line["admin"].(string)
			case "meshd serving":
				d.http, _ = line["http"].(string)
				if n, ok := line["services"].(float64); ok {
					d.Services = int(n)
				}
				d.Started = time.Since(start)
				once.Do(func() { close(serving) })
			case "idle: instances closed, code released":
				d.slept++
			case "instances start from a snapshot":
				if fc, _ := line["from_cache"].(bool); fc {
					d.fromCache++
				} else {
					d.taken++
				}
			}
			if lv, _ := line["level"].(string); lv == "ERROR" && len(d.errs) < 20 {
				d.errs = append(d.errs, bound(sc.Text(), 300))
			}
			d.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case <-serving:
		return d, nil
	case <-d.done:
		return nil, fmt.Errorf("meshd exited before serving: %s", strings.Join(d.errors(), "; "))
	case <-time.After(wait):
		d.stop()
		return nil, fmt.Errorf("meshd not serving after %s", wait)
	}
}

// bound cuts s to n bytes and quotes it, for a message.
func bound(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strconv.Quote(s)
}

func (d *daemon) errors() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.errs...)
}

// snapshots returns how many services' snapshots were read from the cache
// and how many were taken by running an initialiser.
func (d *daemon) snapshots() (fromCache, taken int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fromCache, d.taken
}

// stop ends meshd (SIGTERM, then SIGKILL after 30 s) and waits for it.
func (d *daemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// sleeping is how many times a service of meshd fell asleep (idle
// release).
func (d *daemon) sleeping() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.slept
}

// asleep is how many of meshd's services are asleep now (/v1/services).
func (d *daemon) asleep(ctx context.Context) (int, error) {
	code, body, err := get(ctx, "http://"+d.admin+"/v1/services")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("/v1/services: status %d", code)
	}
	var view struct {
		Services []struct {
			Instances struct {
				Asleep bool `json:"asleep"`
			} `json:"instances"`
		} `json:"services"`
	}
	if err := json.Unmarshal(body, &view); err != nil {
		return 0, fmt.Errorf("/v1/services: %w", err)
	}
	n := 0
	for _, s := range view.Services {
		if s.Instances.Asleep {
			n++
		}
	}
	return n, nil
}

var client = &http.Client{Timeout: 20 * time.Second}

// get fetches url and returns the status and body.
func get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// gc has meshd run a garbage collection (the heap profile's gc=1), so the
// memory read next is not last cycle's garbage.
func (d *daemon) gc(ctx context.Context) error {
	code, _, err := get(ctx, "http://"+d.admin+"/debug/pprof/heap?gc=1")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("heap profile: status %d", code)
	}
	return err
}

// metric returns the value of an unlabelled metric of meshd's /metrics.
func (d *daemon) metric(ctx context.Context, name string) (float64, error) {
	code, body, err := get(ctx, "http://"+d.admin+"/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("metrics: status %d", code)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metrics: no %s", name)
}

// memory is a process's resident memory, in KiB.
type memory struct {
	RSS, PSS int64
	// Pss by kind of mapping (smaps); they sum to PSS.
	Code   int64 // wazero's compiled code: the cache files mapped, or anonymous executable memory
	Images int64 // the snapshots' images (unnamed files or memfds) and the instances' private mappings of them
	Anon   int64 // other anonymous memory: the Go heap, instances' own linear memory, stacks
	Binary int64 // the meshd executable
	Other  int64 // shared libraries and the rest
	// Shmem is the system's shared memory (/proc/meminfo): the snapshots'
	// memfd images live there whole, mapped or not, and VmRSS and Pss
	// count only their pages meshd has mapped. System-wide: read on a
	// machine where nothing else changes it.
	Shmem int64
	// ImageFiles is what meshd's unnamed snapshot image files hold (their
	// allocated blocks): pages of the page cache, reclaimable once
	// written back, that VmRSS counts only where mapped.
	ImageFiles int64
}

// readMemory reads /proc/pid/status VmRSS, smaps_rollup Pss, and sorts
// smaps' Pss by kind of mapping.
func readMemory(pid int) (memory, error) {
	var m memory
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	m.RSS = kbField(status, "VmRSS:")
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return m, err
	}
	m.Shmem = kbField(meminfo, "Shmem:")
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return m, err
	}
	for _, fd := range fds {
		p := fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())
		if link, _ := os.Readlink(p); !strings.Contains(link, "/snapshots/#") {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				m.ImageFiles += st.Blocks * 512 / 1024
			}
		}
	}
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, err
	}
	m.PSS = kbField(rollup, "Pss:")
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return m, err
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	kind := (*int64)(nil)
	for line := range strings.SplitSeq(string(smaps), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			// a mapping's header: range perms offset dev inode [path]
			path := ""
			if len(f) >= 6 {
				path = strings.Join(f[5:], " ")
			}
			switch {
			case strings.Contains(path, "/wazero-"), path == "" && strings.Contains(f[1], "x"):
				kind = &m.Code
			case strings.Contains(path, "meshd-snapshot"), strings.Contains(path, "/snapshots/#"):
				kind = &m.Images
			case exe != "" && strings.HasPrefix(path, exe):
				kind = &m.Binary
			case path == "" || path == "[heap]" || strings.HasPrefix(path, "[stack"):
				kind = &m.Anon
			default:
				kind = &m.Other
			}
			continue
		}
		if kind != nil && len(f) >= 2 && f[0] == "Pss:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			*kind += v
		}
	}
	return m, nil
}

// kbField reads "Name:   123 kB" from a /proc file.
func kbField(b []byte, name string) int64 {
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(name)); ok {
			f := strings.Fields(string(v))
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// buildMeshd builds cmd/meshd of the module at root into dir.
func buildMeshd(root, dir string) (string, error) {
	bin := filepath.Join(dir, "meshd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/meshd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/meshd: %v\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot finds the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
