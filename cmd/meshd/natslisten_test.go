package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/daemon"
	"github.com/meshd/meshd/internal/syncbuf"
	"github.com/nats-io/nats.go"
)

// runBounded runs meshd with args in-process and returns its exit code and
// stderr; a run that does not return within 30 s (it started serving)
// fails the test.
func runBounded(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- run(args, &stdout, &stderr) }()
	select {
	case code := <-done:
		return code, stderr.String()
	case <-time.After(30 * time.Second):
		t.Fatalf("meshd %s did not return: it started; stderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	return 0, ""
}

func writeSecret(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunRefusesNATSListenWithoutCredentials: --nats-listen alone, or
// beyond loopback without TLS, does not start.
func TestRunRefusesNATSListenWithoutCredentials(t *testing.T) {
	dir := t.TempDir()
	pw := writeSecret(t, dir, "nats.pw", "s3cret\n")
	base := []string{"run", "--plugins", dir, "--data", filepath.Join(dir, "data"), "--http", "127.0.0.1:0", "--admin", "off"}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no credentials", []string{"--nats-listen", "127.0.0.1:0"},
			"nats-listen: a NATS client port needs credentials: give --nats-user with --nats-password-file, or --nats-nkey-file"},
		{"user without password", []string{"--nats-listen", "127.0.0.1:0", "--nats-user", "tool"},
			"nats-password-file: nats-user \"tool\" has no password"},
		{"all interfaces without TLS", []string{"--nats-listen", "0.0.0.0:0", "--nats-user", "tool", "--nats-password-file", pw},
			"is not a loopback address"},
		{"missing password file", []string{"--nats-listen", "127.0.0.1:0", "--nats-user", "tool", "--nats-password-file", filepath.Join(dir, "nope")},
			"--nats-password-file: open"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stderr := runBounded(t, append(base, c.args...)...)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, want 2 with %q; stderr:\n%s", code, c.want, stderr)
			}
			if strings.Contains(stderr, "s3cret") {
				t.Fatalf("the password is in the output:\n%s", stderr)
			}
		})
	}
}

// TestNATSConfigFileAndFlags: the file's NATS keys reach the daemon's
// configuration, the flags given win, and the secrets are read from their
// files.
func TestNATSConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	pwFile := writeSecret(t, dir, "file.pw", "from-the-file\n")
	flagPW := writeSecret(t, dir, "flag.pw", "from-the-flag\n")
	conf := writeSecret(t, dir, "c.toml", fmt.Sprintf(`nats_listen = "127.0.0.1:4222"
nats_user = "tool"
nats_password_file = %q
nats_allow_publish = ["a.b"]
nats_allow_subscribe = ["meshd.events.>"]
nats_tls_ca = "ca.pem"
`, pwFile))
	parse := func(args []string) daemon.Config {
		t.Helper()
		cfg := daemon.Default()
		var nf natsFlags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.StringVar(&cfg.NATSListen, "nats-listen", "", "")
		defineNATSFlags(fs, &cfg, &nf)
		memPages := fs.Uint("memory-pages", 1024, "")
		logLevel, logFormat := fs.String("log-level", "info", ""), fs.String("log-format", "text", "")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		if err := loadConfigFile(conf, fs, args, &cfg, memPages, logFormat, logLevel); err != nil {
			t.Fatal(err)
		}
		if _, err := resolveNATSSecrets(&cfg, nf, func(string) string { return "from-the-env" }); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	a := parse(nil).NATSAuth
	if a.User != "tool" || a.Password != "from-the-file" || strings.Join(a.AllowPublish, ",") != "a.b" ||
		strings.Join(a.AllowSubscribe, ",") != "meshd.events.>" || a.TLSCA != "ca.pem" {
		t.Fatalf("from the file: %+v", a)
	}
	a = parse([]string{"--nats-password-file", flagPW, "--nats-allow-publish", "x.>, y.z", "--nats-user", "ops"}).NATSAuth
	if a.User != "ops" || a.Password != "from-the-flag" || strings.Join(a.AllowPublish, ",") != "x.>,y.z" ||
		strings.Join(a.AllowSubscribe, ",") != "meshd.events.>" {
		t.Fatalf("flags over the file: %+v", a)
	}
}

func TestNATSPasswordFromEnv(t *testing.T) {
	env := func(string) string { return " from-env\n" }
	cfg := daemon.Default()
	if _, err := resolveNATSSecrets(&cfg, natsFlags{}, env); err != nil || cfg.NATSAuth.Password != "" {
		t.Fatalf("no user: password %q, %v; want none (the variable is for --nats-user)", cfg.NATSAuth.Password, err)
	}
	cfg.NATSAuth.User = "tool"
	if _, err := resolveNATSSecrets(&cfg, natsFlags{}, env); err != nil || cfg.NATSAuth.Password != "from-env" {
		t.Fatalf("password %q, %v", cfg.NATSAuth.Password, err)
	}
}

func TestNATSSecretFiles(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, content string
		mode          os.FileMode
		want, warn    string
	}{
		{"one line", "pw\n", 0o600, "", ""},
		{"two lines", "pw\nmore\n", 0o600, "must be one line", ""},
		{"empty", "\n", 0o600, "empty", ""},
		{"too long", strings.Repeat("x", maxSecretFileBytes+1), 0o600, "longer than", ""},
		{"readable by others", "pw", 0o644, "", "readable by other users"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			if err := os.WriteFile(p, []byte(c.content), c.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, c.mode); err != nil {
				t.Fatal(err)
			}
			s, warn, err := readSecretFile("--nats-password-file", p)
			switch {
			case c.want == "" && (err != nil || s != "pw"):
				t.Fatalf("read %q, %v", s, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want %q", err, c.want)
			case c.want != "" && strings.Contains(err.Error(), "pw"):
				t.Fatalf("the content is in the error: %v", err)
			case c.warn != "" && !strings.Contains(strings.Join(warn, "\n"), c.warn):
				t.Fatalf("warnings %q, want %q", warn, c.warn)
			}
		})
	}
}

var natsClientURL = regexp.MustCompile(`client_url=(nats://127\.0\.0\.1:\d+)`)

// TestNATSListenBinary runs the binary with a NATS client port and its
// credentials in a file: a client without them is refused, a client with
// them cannot forge PAYMENT_COMPLETED, and the services work.
func TestNATSListenBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildMeshd(t)
	dir, plugins := pluginDir(t, demoPlugins("order", "payment"))
	pw := writeSecret(t, dir, "nats.pw", "binary-test-password\n")
	_, base, logs := startBinary(t, bin, "run", "--plugins", plugins, "--data", filepath.Join(dir, "data"),
		"--http", "127.0.0.1:0", "--admin", "off", "--nats-listen", "127.0.0.1:0", "--nats-user", "tool", "--nats-password-file", pw)
	m := natsClientURL.FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no client_url in the logs:\n%s", logs)
	}
	url := m[1]
	if strings.Contains(logs.String(), "binary-test-password") {
		t.Fatalf("the password is in the logs:\n%s", logs)
	}

	resp, err := http.Post(base+"/orders", "application/json", strings.NewReader(`{"user_id":"u","items":[{"name":"pen","price":100}]}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST /orders: %v %v\nlogs:\n%s", err, resp, logs)
	}
	resp.Body.Close()

	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("without credentials: %v", err)
	}
	errs := make(chan error, 4)
	nc, err := nats.Connect(url, nats.UserInfo("tool", "binary-test-password"), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("with the password file's password: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish("meshd.events.PAYMENT_COMPLETED", []byte(`{"order_id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("forged event: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the forged event was not refused")
	}
	if !strings.Contains(logs.String(), "granted no subject") {
		t.Fatalf("the start does not say clients are granted nothing:\n%s", logs)
	}
}
