package main

import (
	"bytes"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestAdminTokenSources(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("token", "from-file\n", 0o600)
	loose := file("loose", "from-loose-file\n", 0o644)
	empty := file("empty", " \n", 0o600)
	twoLines := file("two", "a\nb\n", 0o600)
	huge := file("huge", strings.Repeat("x", maxTokenFileBytes+1), 0o600)
	for _, c := range []struct {
		name       string
		args       []string
		fromConfig string // admin_token of the configuration file
		env        string
		want       string
		src        adminTokenSource
		warn       string // a warning containing this, "" for none
		err        string
	}{
		{name: "none", src: tokenNone},
		{name: "env", env: "from-env\n", want: "from-env", src: tokenEnv},
		{name: "file", args: []string{"--admin-token-file", good}, env: "from-env", want: "from-file", src: tokenFile},
		{name: "loose file", args: []string{"--admin-token-file", loose}, want: "from-loose-file", src: tokenFile, warn: "readable by other users"},
		{name: "config file over env", fromConfig: "from-config", env: "from-env", want: "from-config", src: tokenConfig},
		{name: "flag warns", args: []string{"--admin-token", "from-flag"}, env: "from-env", want: "from-flag", src: tokenFlag, warn: "process list"},
		{name: "flag and file", args: []string{"--admin-token", "x", "--admin-token-file", good}, err: "give one"},
		{name: "missing file", args: []string{"--admin-token-file", filepath.Join(dir, "nope")}, err: "no such file"},
		{name: "empty file", args: []string{"--admin-token-file", empty}, err: "empty"},
		{name: "two lines", args: []string{"--admin-token-file", twoLines}, err: "one line"},
		{name: "huge file", args: []string{"--admin-token-file", huge}, err: "longer than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			tok := fs.String("admin-token", "", "")
			tokenFile := fs.String("admin-token-file", "", "")
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			if c.fromConfig != "" && *tok == "" {
				*tok = c.fromConfig
			}
			getenv := func(k string) string {
				if k == adminTokenEnv {
					return c.env
				}
				return ""
			}
			got, src, warn, err := resolveAdminToken(fs, *tok, *tokenFile, getenv)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want || src != c.src {
				t.Errorf("token %q from %d, want %q from %d", got, src, c.want, c.src)
			}
			if w := strings.Join(warn, "; "); (c.warn == "") != (w == "") || !strings.Contains(w, c.warn) {
				t.Errorf("warnings %q, want one containing %q", w, c.warn)
			}
		})
	}
}

// The token in the environment must not show in `meshd run -h`, which
// printed it as the flag's default.
func TestAdminTokenNotInUsage(t *testing.T) {
	t.Setenv(adminTokenEnv, "sekrit-from-env")
	var stdout, stderr bytes.Buffer
	run([]string{"run", "-h"}, &stdout, &stderr)
	if out := stdout.String() + stderr.String(); strings.Contains(out, "sekrit-from-env") || !strings.Contains(out, "admin-token-file") {
		t.Fatalf("usage shows the token or lacks --admin-token-file:\n%s", out)
	}
}

func TestSplitHosts(t *testing.T) {
	if got := strings.Join(splitHosts(" a.example, b.example:8081 ,,"), "|"); got != "a.example|b.example:8081" {
		t.Fatalf("splitHosts = %q", got)
	}
	if splitHosts("") != nil {
		t.Fatal("splitHosts(\"\") is not empty")
	}
}

// The real binary takes the admin token from $MESHD_ADMIN_TOKEN and from
// --admin-token-file: the admin listener then refuses /metrics without it.
func TestAdminTokenReachesTheListener(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildMeshd(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, env string
		args      []string
		token     string
	}{
		{"env", "from-env", nil, "from-env"},
		{"file", "", []string{"--admin-token-file", tokenFile}, "from-file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(adminTokenEnv, c.env)
			dir, plugins := pluginDir(t, nil)
			args := append([]string{"run", "--plugins", plugins, "--data", filepath.Join(dir, "data"),
				"--http", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, c.args...)
			_, _, logs := startBinary(t, bin, args...)
			m := adminListeningLine.FindStringSubmatch(logs.String())
			if m == nil {
				t.Fatalf("no admin address in the logs:\n%s", logs)
			}
			if strings.Contains(logs.String(), c.token) {
				t.Errorf("the logs show the token:\n%s", logs)
			}
			for _, tc := range []struct {
				token string
				want  int
			}{{"", 401}, {"wrong", 401}, {c.token, 200}} {
				req, err := http.NewRequest("GET", "http://"+m[1]+"/metrics", nil)
				if err != nil {
					t.Fatal(err)
				}
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("/metrics with token %q: %d, want %d", tc.token, resp.StatusCode, tc.want)
				}
			}
		})
	}
}

var adminListeningLine = regexp.MustCompile(`msg="admin listening".* admin=(\S+)`)
