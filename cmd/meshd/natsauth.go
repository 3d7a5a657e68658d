package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/meshd/meshd/daemon"
)

// natsPasswordEnv names the environment variable that carries the NATS
// password when no --nats-password-file is given.
const natsPasswordEnv = "MESHD_NATS_PASSWORD"

// maxSecretFileBytes bounds what --nats-password-file and --nats-nkey-file
// read.
const maxSecretFileBytes = 4 << 10

// natsFlags are the NATS settings of meshd run that name files: they are
// read once the flags and the configuration file are merged.
type natsFlags struct {
	passwordFile string
	nkeyFile     string
}

// defineNATSFlags defines the NATS credential, grant and TLS flags of meshd
// run on fs, writing into cfg.NATSAuth and nf.
func defineNATSFlags(fs *flag.FlagSet, cfg *daemon.Config, nf *natsFlags) {
	a := &cfg.NATSAuth
	fs.StringVar(&a.User, "nats-user", "", "NATS user: with --nats-listen, the user clients must connect as; with --nats-url, the user meshd connects as")
	fs.StringVar(&nf.passwordFile, "nats-password-file", "", "file holding the --nats-user password (one line); default $"+natsPasswordEnv)
	fs.StringVar(&nf.nkeyFile, "nats-nkey-file", "", "file holding a user nkey: with --nats-listen its public key (U…) or seed (SU…), a key clients may sign with; with --nats-url the seed meshd signs with")
	fs.StringVar(&a.CredsFile, "nats-creds-file", "", "NATS credentials file (user JWT and seed) meshd presents to --nats-url")
	fs.StringVar(&a.TLSCert, "nats-tls-cert", "", "with --nats-listen, the server certificate (clients must use TLS); with --nats-url, a client certificate")
	fs.StringVar(&a.TLSKey, "nats-tls-key", "", "the key of --nats-tls-cert")
	fs.StringVar(&a.TLSCA, "nats-tls-ca", "", "with --nats-listen, the CA client certificates must chain to (then required); with --nats-url, the CA that verifies the server")
	fs.Var((*subjectList)(&a.AllowPublish), "nats-allow-publish", "comma-separated subjects (wildcards allowed) clients of --nats-listen may publish to; default none")
	fs.Var((*subjectList)(&a.AllowSubscribe), "nats-allow-subscribe", "comma-separated subjects (wildcards allowed) clients of --nats-listen may subscribe to; default none")
	fs.BoolVar(&a.Plaintext, "nats-plaintext", false, "allow a non-loopback --nats-listen without TLS (passwords and events cross the network in clear)")
}

// subjectList is a comma-separated list flag; the last occurrence wins,
// as for the other flags (so a flag given replaces the file's list).
type subjectList []string

func (l *subjectList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *subjectList) Set(v string) error {
	*l = nil
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// resolveNATSSecrets reads the password and the nkey the flags (or the
// configuration file) name into cfg.NATSAuth. The password comes from
// --nats-password-file, else from $MESHD_NATS_PASSWORD when a user is
// given. warn lists what the operator should hear about.
func resolveNATSSecrets(cfg *daemon.Config, nf natsFlags, getenv func(string) string) (warn []string, err error) {
	a := &cfg.NATSAuth
	switch {
	case nf.passwordFile != "":
		pw, w, err := readSecretFile("--nats-password-file", nf.passwordFile)
		if err != nil {
			return nil, err
		}
		a.Password, warn = pw, append(warn, w...)
	case a.User != "" && getenv(natsPasswordEnv) != "":
		a.Password = strings.TrimSpace(getenv(natsPasswordEnv))
	}
	if nf.nkeyFile != "" {
		key, w, err := readSecretFile("--nats-nkey-file", nf.nkeyFile)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(key, "S") { // a seed; a public key may be read by anyone
			warn = append(warn, w...)
		}
		a.NKey = key
	}
	return warn, nil
}

// readSecretFile reads a one-line secret file: its content without
// surrounding white space, at most maxSecretFileBytes. Its errors name the
// file, never its content.
func readSecretFile(flagName, path string) (string, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", flagName, err)
	}
	defer f.Close()
	var warn []string
	if fi, err := f.Stat(); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		warn = append(warn, fmt.Sprintf("%s %s is readable by other users (mode %v); chmod 600 it", flagName, quotePath(path), fi.Mode().Perm()))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", flagName, err)
	}
	if len(b) > maxSecretFileBytes {
		return "", nil, fmt.Errorf("%s %s: longer than %d bytes", flagName, quotePath(path), maxSecretFileBytes)
	}
	s := strings.TrimSpace(string(b))
	switch {
	case s == "":
		return "", nil, fmt.Errorf("%s %s: empty", flagName, quotePath(path))
	case strings.ContainsAny(s, "\r\n"):
		return "", nil, fmt.Errorf("%s %s: must be one line", flagName, quotePath(path))
	}
	return s, warn, nil
}

// quotePath quotes a file name for a message, cut at 256 bytes.
func quotePath(p string) string {
	const max = 256
	if len(p) > max {
		return strconv.Quote(p[:max]) + "…"
	}
	return strconv.Quote(p)
}
