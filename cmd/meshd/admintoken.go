package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// adminTokenEnv names the environment variable that carries the admin
// listener's bearer token.
const adminTokenEnv = "MESHD_ADMIN_TOKEN"

// maxTokenFileBytes bounds what --admin-token-file reads.
const maxTokenFileBytes = 4 << 10

// adminTokenSource says where the admin token came from.
type adminTokenSource int

const (
	tokenNone   adminTokenSource = iota
	tokenFlag                    // --admin-token: visible in the process list
	tokenFile                    // --admin-token-file
	tokenConfig                  // admin_token in the configuration file
	tokenEnv                     // $MESHD_ADMIN_TOKEN
)

// resolveAdminToken returns the admin token after the flags (and the
// configuration file) were parsed into fs and fromConfig (the token the
// flag or the file set, "" if none). The first that is set wins:
// --admin-token, --admin-token-file, admin_token in the file,
// $MESHD_ADMIN_TOKEN. --admin-token and --admin-token-file together are an
// error. warn lists what the operator should hear about.
func resolveAdminToken(fs *flag.FlagSet, fromConfig, file string, getenv func(string) string) (token string, src adminTokenSource, warn []string, err error) {
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case set["admin-token"] && set["admin-token-file"]:
		return "", tokenNone, nil, errors.New("--admin-token and --admin-token-file: give one")
	case set["admin-token"]:
		if fromConfig != "" {
			warn = append(warn, "--admin-token on the command line is visible to every user of this host in the process list; pass the token in $"+adminTokenEnv+" or --admin-token-file instead")
		}
		return fromConfig, tokenFlag, warn, nil
	case set["admin-token-file"]:
		token, warn, err := readTokenFile(file)
		return token, tokenFile, warn, err
	case fromConfig != "":
		return fromConfig, tokenConfig, nil, nil
	case getenv(adminTokenEnv) != "":
		return strings.TrimSpace(getenv(adminTokenEnv)), tokenEnv, nil, nil
	}
	return "", tokenNone, nil, nil
}

// readTokenFile reads a token file: its content without surrounding white
// space (a trailing newline), at most maxTokenFileBytes, on one line.
func readTokenFile(path string) (string, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("--admin-token-file: %w", err)
	}
	defer f.Close()
	var warn []string
	if fi, err := f.Stat(); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		warn = append(warn, fmt.Sprintf("--admin-token-file %s is readable by other users (mode %v); chmod 600 it", path, fi.Mode().Perm()))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return "", nil, fmt.Errorf("--admin-token-file: %w", err)
	}
	if len(b) > maxTokenFileBytes {
		return "", nil, fmt.Errorf("--admin-token-file %s: longer than %d bytes", path, maxTokenFileBytes)
	}
	token := strings.TrimSpace(string(b))
	switch {
	case token == "":
		return "", nil, fmt.Errorf("--admin-token-file %s: empty", path)
	case strings.ContainsAny(token, "\r\n"):
		return "", nil, fmt.Errorf("--admin-token-file %s: the token must be one line", path)
	}
	return token, warn, nil
}

// splitHosts splits the comma-separated --admin-allowed-hosts value.
func splitHosts(v string) []string {
	var hosts []string
	for h := range strings.SplitSeq(v, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}
