// Package config reads meshd's configuration file (TOML), given to
// `meshd run --config FILE`.
//
// The file holds the daemon's settings (the same names as the flags of
// meshd run, with underscores), the HTTP server's timeouts and TLS under
// [server], and the gateway's policies: [auth.NAME] authenticators,
// [[policy]] and [[mount]] tables (see gateway.Policies). Unknown keys are
// errors. Load reports every problem at once, each with its key path and,
// where it can be found, its line.
//
// It also reads the service files beside the modules of the plugin
// directory (<service>.toml: grants, limits, the service's own config and
// its [events] settings; see Service, ParseService and LoadService), with
// the same problem reports.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/natsd"
)

// File is the decoded configuration file. Pointer fields are nil when the
// file does not set them, so the caller's defaults (and flags) stand.
type File struct {
	Plugins        *string        `toml:"plugins"`
	Data           *string        `toml:"data"`
	HTTP           *string        `toml:"http"`
	Node           *string        `toml:"node"`
	NATSURL        *string        `toml:"nats_url"`
	NATSListen     *string        `toml:"nats_listen"`
	Sync           *string        `toml:"sync"`
	CallTimeout    *time.Duration `toml:"call_timeout"`
	RequestTimeout *time.Duration `toml:"request_timeout"`
	DrainTimeout   *time.Duration `toml:"drain_timeout"`
	MaxBodyBytes   *int64         `toml:"max_body_bytes"`
	MemoryPages    *uint32        `toml:"memory_pages"`
	IdleRelease    *time.Duration `toml:"idle_release"`
	PoolMin        *int           `toml:"pool_min"`
	PoolMax        *int           `toml:"pool_max"`
	KVCacheBytes   *int64         `toml:"kv_cache_bytes"`
	LogFormat      *string        `toml:"log_format"`
	LogLevel       *string        `toml:"log_level"`
	// NATS credentials, grants and TLS (natsd.Auth; the flags of the same
	// names). The password and the nkey are read from files.
	NATSUser           *string  `toml:"nats_user"`
	NATSPasswordFile   *string  `toml:"nats_password_file"`
	NATSNKeyFile       *string  `toml:"nats_nkey_file"`
	NATSCredsFile      *string  `toml:"nats_creds_file"`
	NATSTLSCert        *string  `toml:"nats_tls_cert"`
	NATSTLSKey         *string  `toml:"nats_tls_key"`
	NATSTLSCA          *string  `toml:"nats_tls_ca"`
	NATSAllowPublish   []string `toml:"nats_allow_publish"`
	NATSAllowSubscribe []string `toml:"nats_allow_subscribe"`
	NATSPlaintext      *bool    `toml:"nats_plaintext"`
	// Admin listener (metrics, health): address ("off" disables it), the
	// bearer token it requires, and whether a non-loopback address may go
	// without a token.
	Admin       *string `toml:"admin"`
	AdminToken  *string `toml:"admin_token"`
	AdminPublic *bool   `toml:"admin_public"`

	// NATS holds the embedded server's cluster settings ([nats]).
	NATS NATS `toml:"nats"`

	// Server holds the HTTP server's timeouts, header cap and TLS.
	Server gateway.ServerConfig `toml:"server"`

	// Gateway policies, at the top level of the file.
	Mount  []gateway.Mount               `toml:"mount"`
	Auth   map[string]gateway.AuthConfig `toml:"auth"`
	Policy []gateway.Policy              `toml:"policy"`
}

// NATS is the [nats] table: the embedded NATS server as a node of a
// cluster (the flags of the same names: cluster_listen is
// --cluster-listen). The password is read from a file.
type NATS struct {
	ClusterName         *string        `toml:"cluster_name"`
	ClusterListen       *string        `toml:"cluster_listen"`
	ClusterRoutes       []string       `toml:"cluster_routes"`
	ClusterUser         *string        `toml:"cluster_user"`
	ClusterPasswordFile *string        `toml:"cluster_password_file"`
	ClusterWait         *time.Duration `toml:"cluster_wait"`
	// Replicas is the copies of the streams and buckets (0: automatic).
	Replicas *int `toml:"replicas"`
}

// Policies returns the gateway policies of the file.
func (f *File) Policies() gateway.Policies {
	return gateway.Policies{Mounts: f.Mount, Auth: f.Auth, Policy: f.Policy}
}

// Error is every problem of a configuration file.
type Error struct {
	File     string
	Problems []Problem
}

// Problem is one problem, at a key path ("policy[0].rate") and line (0
// when unknown).
type Problem struct {
	Key  string
	Line int
	Msg  string
}

func (p Problem) String() string {
	switch {
	case p.Line > 0 && p.Key != "":
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Key, p.Msg)
	case p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
	case p.Key != "":
		return p.Key + ": " + p.Msg
	}
	return p.Msg
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problem(s):", e.File, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads and checks the file at path. Relative file names inside it
// (jwks_file, cert_file, key_file) are taken relative to the working
// directory, as flags are.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load on data read from the file named name.
func Parse(name string, data []byte) (*File, error) {
	var f File
	e, lines, _, ok := decode(name, data, &f)
	if !ok {
		return nil, e
	}
	var errs []error
	errs = append(errs, f.check()...)
	p := f.Policies()
	if err := p.Validate(); err != nil {
		errs = append(errs, unjoin(err)...)
	}
	if err := f.Server.Validate(); err != nil {
		errs = append(errs, unjoin(err)...)
	}
	for _, err := range errs {
		var fe *gateway.FieldError
		if errors.As(err, &fe) {
			key := fe.Path
			e.Problems = append(e.Problems, Problem{Key: key, Line: lines.line(key), Msg: fe.Msg})
			continue
		}
		e.Problems = append(e.Problems, Problem{Msg: err.Error()})
	}
	if len(e.Problems) > 0 {
		sortProblems(e.Problems)
		return nil, e
	}
	return &f, nil
}

// decode decodes data, read from the file named name, into v. It returns
// the *Error to which the caller adds its problems, already holding one
// for each unknown key; ok is false when the decoder refused the file
// (e then holds that problem alone).
func decode(name string, data []byte, v any) (e *Error, lines lineIndex, md toml.MetaData, ok bool) {
	e = &Error{File: name}
	lines = locate(string(data))
	md, err := toml.Decode(string(data), v)
	if err != nil {
		e.Problems = append(e.Problems, decodeProblem(err))
		return e, lines, md, false
	}
	for _, k := range md.Undecoded() {
		path := keyPath(k, lines)
		e.Problems = append(e.Problems, Problem{Key: path, Line: lines.line(path), Msg: "unknown key"})
	}
	return e, lines, md, true
}

// decodeProblem is the problem of a file the TOML decoder refused.
func decodeProblem(err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return Problem{Key: pe.LastKey, Line: pe.Position.Line, Msg: pe.Message}
	}
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		// Type mismatches come as plain errors: "toml: line 5 (last
		// key "policy.rate"): incompatible types: ...".
		n, _ := strconv.Atoi(m[1])
		return Problem{Key: m[3], Line: n, Msg: m[4]}
	}
	return Problem{Msg: err.Error()}
}

// sortProblems orders problems by line, those without one last.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0
		}
		return a.Line < b.Line
	})
}

var lineRE = regexp.MustCompile(`^toml: line (\d+)( \(last key "([^"]*)"\))?: (.*)$`)

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// check validates the daemon settings the file sets.
func (f *File) check() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &gateway.FieldError{Path: key, Msg: fmt.Sprintf(format, args...)})
	}
	for key, v := range map[string]*string{"plugins": f.Plugins, "data": f.Data, "http": f.HTTP} {
		if v != nil && *v == "" {
			bad(key, "must not be empty")
		}
	}
	for key, v := range map[string]*string{"nats_user": f.NATSUser, "nats_password_file": f.NATSPasswordFile,
		"nats_nkey_file": f.NATSNKeyFile, "nats_creds_file": f.NATSCredsFile,
		"nats_tls_cert": f.NATSTLSCert, "nats_tls_key": f.NATSTLSKey, "nats_tls_ca": f.NATSTLSCA} {
		if v != nil && *v == "" {
			bad(key, "must not be empty (leave the key out)")
		}
	}
	for key, list := range map[string][]string{"nats_allow_publish": f.NATSAllowPublish, "nats_allow_subscribe": f.NATSAllowSubscribe} {
		for i, s := range list {
			if strings.TrimSpace(s) == "" {
				bad(fmt.Sprintf("%s[%d]", key, i), "must not be empty")
			}
		}
	}
	for key, v := range map[string]*string{"nats.cluster_name": f.NATS.ClusterName, "nats.cluster_listen": f.NATS.ClusterListen,
		"nats.cluster_user": f.NATS.ClusterUser, "nats.cluster_password_file": f.NATS.ClusterPasswordFile} {
		if v != nil && *v == "" {
			bad(key, "must not be empty (leave the key out)")
		}
	}
	for i, r := range f.NATS.ClusterRoutes {
		if strings.TrimSpace(r) == "" {
			bad(fmt.Sprintf("nats.cluster_routes[%d]", i), "must not be empty")
		}
	}
	if v := f.NATS.ClusterWait; v != nil && *v < 0 {
		bad("nats.cluster_wait", "must not be negative")
	}
	if v := f.NATS.Replicas; v != nil && (*v < 0 || *v > natsd.MaxReplicas) {
		bad("nats.replicas", "%d: want 0 (automatic) to %d", *v, natsd.MaxReplicas)
	}
	if f.Sync != nil && *f.Sync != "" && *f.Sync != "lazy" && *f.Sync != "always" {
		bad("sync", "%q is not \"lazy\" (the default) or \"always\"", *f.Sync)
	}
	for key, v := range map[string]*time.Duration{"call_timeout": f.CallTimeout, "request_timeout": f.RequestTimeout, "drain_timeout": f.DrainTimeout} {
		if v != nil && *v <= 0 {
			bad(key, "must be positive")
		}
	}
	if f.MaxBodyBytes != nil && *f.MaxBodyBytes <= 0 {
		bad("max_body_bytes", "must be positive")
	}
	if f.MemoryPages != nil && (*f.MemoryPages == 0 || *f.MemoryPages > 65536) {
		bad("memory_pages", "must be between 1 and 65536")
	}
	if f.IdleRelease != nil && !ValidIdleRelease(*f.IdleRelease) {
		bad("idle_release", "must be 0s (never) or at least %v", MinIdleRelease)
	}
	if f.PoolMin != nil && *f.PoolMin < 0 {
		bad("pool_min", "must not be negative")
	}
	if f.PoolMax != nil && *f.PoolMax <= 0 {
		bad("pool_max", "must be positive")
	}
	if f.KVCacheBytes != nil && *f.KVCacheBytes < 0 {
		bad("kv_cache_bytes", "must not be negative")
	}
	if f.LogFormat != nil && *f.LogFormat != "text" && *f.LogFormat != "json" {
		bad("log_format", "%q is not text or json", *f.LogFormat)
	}
	if f.LogLevel != nil {
		switch *f.LogLevel {
		case "debug", "info", "warn", "error":
		default:
			bad("log_level", "%q is not debug, info, warn or error", *f.LogLevel)
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errs
}

// RestartOnly names the settings other than the gateway policies that
// differ between old and new (their TOML keys).
func RestartOnly(old, new *File) []string {
	if old == nil || new == nil {
		return nil
	}
	var keys []string
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem()
	for i := range ov.NumField() {
		key := ov.Type().Field(i).Tag.Get("toml")
		switch key {
		case "mount", "auth", "policy", "-", "":
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			keys = append(keys, key)
		}
	}
	return keys
}
