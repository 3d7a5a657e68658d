package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/daemon"
)

func TestRunRefusesBadConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(file, []byte("http = \"\"\ncolour = 1\n[[policy]]\nservice = \"a\"\nrate = -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "--config", file, "--data", t.TempDir()}, &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, &stderr)
	}
	for _, want := range []string{"line 1: http", "line 2: colour: unknown key", "line 5: policy[0].rate"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, &stderr)
		}
	}
}

func TestFlagsOverrideConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(file, []byte("http = \"127.0.0.1:1\"\nrequest_timeout = \"3s\"\nmemory_pages = 32\nlog_level = \"debug\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := daemon.Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "")
	memPages := fs.Uint("memory-pages", 1024, "")
	logLevel := fs.String("log-level", "info", "")
	logFormat := fs.String("log-format", "text", "")
	args := []string{"--http", "127.0.0.1:2", "--log-level", "warn"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := loadConfigFile(file, fs, args, &cfg, memPages, logFormat, logLevel); err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:2" || *logLevel != "warn" {
		t.Errorf("flags did not win: http %q, log level %q", cfg.HTTPAddr, *logLevel)
	}
	if cfg.RequestTimeout != 3*time.Second || *memPages != 32 {
		t.Errorf("file values lost: request timeout %v, memory pages %d", cfg.RequestTimeout, *memPages)
	}
}
