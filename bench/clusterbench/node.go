package clusterbench

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// logHead and logTail are how much of the start and of the end of a
// node's log a Node keeps for error messages.
const (
	logHead = 8 << 10
	logTail = 8 << 10
)

// startWait bounds how long a node may take to serve: cluster nodes wait
// for a majority of each other, and a cold start compiles the modules.
const startWait = 4 * time.Minute

// stopWait bounds how long Stop waits for a node to exit after SIGTERM
// before it kills it.
const stopWait = 20 * time.Second

var (
	servingLine = regexp.MustCompile(`msg="meshd serving" http=(\S+)`)
	adminLine   = regexp.MustCompile(`msg="admin listening" admin=(\S+)`)
)

// NodeConfig says how to start one meshd process.
type NodeConfig struct {
	Bin      string   // the meshd binary
	Name     string   // --node
	Services []string // demo plugins copied from PluginSrc into the node's plugin directory
	// PluginSrc is the directory holding <service>.wasm and <service>.toml
	// (build/plugins).
	PluginSrc string
	// Dir is the node's own directory: plugins/ and data/ are made in it.
	Dir string
	// Cache, when set, is a data directory's cache/ of an earlier run,
	// copied into the node's before it starts: a warm start instead of
	// compiling every module (on a loaded machine, three nodes compiling
	// at once can take long enough for their starts to time out).
	Cache string
	// ClusterListen and ClusterRoutes make the node a cluster node
	// (--cluster-listen, --cluster-routes); empty for a node of its own.
	ClusterListen string
	ClusterRoutes []string
}

// Node is one running meshd process.
type Node struct {
	Name  string
	Base  string // the gateway, http://host:port
	Admin string // the admin listener, http://host:port
	Pid   int

	cmd  *exec.Cmd
	log  *lineLog
	done chan struct{}
	err  error // Wait's, once done is closed

	stopOnce sync.Once
}

// StartNode starts a node and returns at once; Wait for it to serve.
func StartNode(c NodeConfig) (*Node, error) {
	plugins := filepath.Join(c.Dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return nil, err
	}
	for _, s := range c.Services {
		for _, ext := range []string{".wasm", ".toml"} {
			b, err := os.ReadFile(filepath.Join(c.PluginSrc, s+ext))
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(plugins, s+ext), b, 0o644); err != nil {
				return nil, err
			}
		}
	}
	if c.Cache != "" {
		if err := copyDir(c.Cache, filepath.Join(c.Dir, "data", "cache")); err != nil {
			return nil, err
		}
	}
	args := []string{"run", "--plugins", plugins, "--data", filepath.Join(c.Dir, "data"),
		"--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--no-watch", "--node", c.Name}
	if c.ClusterListen != "" {
		args = append(args, "--cluster-name", "clusterbench", "--cluster-listen", c.ClusterListen,
			"--cluster-routes", strings.Join(c.ClusterRoutes, ","))
	}
	n := &Node{Name: c.Name, log: newLineLog(), done: make(chan struct{})}
	n.cmd = exec.Command(c.Bin, args...)
	n.cmd.Stdout = n.log
	n.cmd.Stderr = n.log
	dieWithParent(n.cmd)
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	n.Pid = n.cmd.Process.Pid
	go func() {
		n.err = n.cmd.Wait()
		close(n.done)
	}()
	return n, nil
}

// Wait waits until the node serves (its gateway and admin addresses are
// logged), for at most startWait.
func (n *Node) Wait() error {
	deadline := time.After(startWait)
	for n.Base == "" || n.Admin == "" {
		select {
		case a := <-n.log.serving:
			n.Base = "http://" + a
		case a := <-n.log.admin:
			n.Admin = "http://" + a
		case <-n.done:
			return fmt.Errorf("node %s exited before serving (%v); log:\n%s", n.Name, n.err, n.Log())
		case <-deadline:
			return fmt.Errorf("node %s did not serve within %v; log:\n%s", n.Name, startWait, n.Log())
		}
	}
	return nil
}

// Log is the tail of the node's log.
func (n *Node) Log() string { return n.log.String() }

// Stop sends SIGTERM, waits for the node to exit for at most stopWait and
// kills it otherwise. Safe to call more than once.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(stopWait):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	})
}

// CPU is the user and system CPU time the node's process used so far.
func (n *Node) CPU() (time.Duration, error) { return ProcCPU(n.Pid) }

// userHZ is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on every
// Linux architecture Go supports.
const userHZ = 100

// ProcCPU is the user and system CPU time of process pid, from
// /proc/<pid>/stat (10 ms resolution).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may hold spaces and parentheses itself: fields are counted after the
// last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("clusterbench: /proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("clusterbench: /proc stat: %d fields after the command name, want 13 or more", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("clusterbench: /proc stat: CPU time %.20q", s)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// lineLog is a node's stdout and stderr: it keeps the last logTail bytes
// and sends the gateway and admin addresses of the first lines naming them.
type lineLog struct {
	mu      sync.Mutex
	partial []byte
	head    []byte
	skipped int // bytes between head and tail not kept
	tail    []byte
	serving chan string
	admin   chan string
}

func newLineLog() *lineLog {
	return &lineLog{serving: make(chan string, 1), admin: make(chan string, 1)}
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rest := p
	if n := min(logHead-len(l.head), len(rest)); n > 0 {
		l.head, rest = append(l.head, rest[:n]...), rest[n:]
	}
	l.tail = append(l.tail, rest...)
	if len(l.tail) > 2*logTail {
		cut := len(l.tail) - logTail
		l.skipped += cut
		l.tail = append(l.tail[:0], l.tail[cut:]...)
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := l.partial[:i]
		if m := servingLine.FindSubmatch(line); m != nil {
			offer(l.serving, string(m[1]))
		}
		if m := adminLine.FindSubmatch(line); m != nil {
			offer(l.admin, string(m[1]))
		}
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) > logTail { // a line that long names no address
		l.partial = l.partial[:0]
	}
	return len(p), nil
}

// String is the start of the log and its end, with how much was left
// out between them.
func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	tail, skipped := l.tail, l.skipped
	if len(tail) > logTail {
		skipped += len(tail) - logTail
		tail = tail[len(tail)-logTail:]
	}
	if skipped == 0 {
		return string(l.head) + string(tail)
	}
	return fmt.Sprintf("%s\n[... %d bytes ...]\n%s", l.head, skipped, tail)
}

// offer sends v on c unless c already holds a value.
func offer(c chan string, v string) {
	select {
	case c <- v:
	default:
	}
}

// copyDir copies the regular files of the tree src into dst.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}
