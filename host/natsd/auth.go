package natsd

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Auth is who may use meshd's NATS and what they may do there.
//
// With Config.Listen it is what the embedded server's client port demands.
// Every client on the port authenticates, as User with Password or with
// the user nkey NKey (both may be given: two ways in, the same grants), and
// may publish and subscribe only to the subjects of AllowPublish and
// AllowSubscribe: none when they are empty. The services' streams and
// key-value buckets are reached only through those grants. meshd's own
// in-process connection authenticates with a key generated at each start
// and accepted on in-process connections only; it is never written down.
//
// With Config.URL it is what meshd presents to that server: User and
// Password, or NKey (a seed), or CredsFile, and the TLS files.
//
// Without either, the fields must be empty: nothing listens.
type Auth struct {
	// User and Password: with Listen, the user name and password a client
	// presents; with URL, meshd's.
	User     string
	Password string
	// NKey is a user nkey. With Listen, its public key (U…) or its seed
	// (SU…; only the public key is kept); with URL, the seed meshd signs
	// the server's challenge with.
	NKey string
	// CredsFile is a NATS credentials file (user JWT and seed) meshd
	// presents to URL. Not with Listen.
	CredsFile string

	// TLSCert and TLSKey: with Listen, the server's certificate (clients
	// must then use TLS); with URL, a client certificate.
	TLSCert string
	TLSKey  string
	// TLSCA: with Listen, clients must present a certificate signed by this
	// CA (besides their credentials); with URL, the CA that verifies the
	// server.
	TLSCA string

	// AllowPublish and AllowSubscribe are the subjects (wildcards allowed)
	// clients on the Listen port may publish and subscribe to. Empty grants
	// nothing. ">" in both grants everything: another meshd node needs that.
	AllowPublish   []string
	AllowSubscribe []string

	// Plaintext allows a Listen address other than loopback without TLS.
	Plaintext bool
}

// Bounds of Auth's subject lists.
const (
	maxGrants       = 256
	maxSubjectBytes = 256
	// maxUserBytes bounds User.
	maxUserBytes = 256
	// maxPasswordBytes bounds Password.
	maxPasswordBytes = 1024
)

// bcryptLike is what nats-server takes for a bcrypt hash in a password.
var bcryptLike = regexp.MustCompile(`^\$2[abxy]\$\d{2}\$`)

// quote returns s quoted and escaped for an error message, cut at 128
// bytes.
func quote(s string) string {
	const max = 128
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

// Validate reports every problem of c's listener and credentials, each
// named after the flag that sets it. Start calls it.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	a := &c.Auth
	hasPassword := a.User != "" || a.Password != ""
	if a.User != "" && a.Password == "" {
		bad("nats-password-file", "nats-user %s has no password: give --nats-password-file (or $MESHD_NATS_PASSWORD)", quote(a.User))
	}
	if len(a.User) > maxUserBytes || strings.ContainsFunc(a.User, unicode.IsControl) {
		bad("nats-user", "%s: at most %d bytes, no control characters", quote(a.User), maxUserBytes)
	}
	if len(a.Password) > maxPasswordBytes {
		bad("nats-password-file", "the password is longer than %d bytes", maxPasswordBytes)
	}
	if bcryptLike.MatchString(a.Password) {
		// nats-server would take it for a hash to compare against, and
		// another meshd given the same file would present the hash.
		bad("nats-password-file", "the password looks like a bcrypt hash: give the password itself")
	}
	if a.User == "" && a.Password != "" {
		bad("nats-user", "a password is set but no user: give --nats-user")
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		bad("nats-tls-cert", "give --nats-tls-cert and --nats-tls-key together")
	}
	grants := len(a.AllowPublish) > 0 || len(a.AllowSubscribe) > 0
	switch {
	case c.Listen != "" && c.URL != "":
		bad("nats-listen", "not with --nats-url: meshd starts no NATS server when it connects to one")
	case c.Listen != "":
		host, err := listenHost(c.Listen)
		if err != nil {
			bad("nats-listen", "%v", err)
		}
		if !hasPassword && a.NKey == "" {
			bad("nats-listen", "a NATS client port needs credentials: give --nats-user with --nats-password-file, or --nats-nkey-file (without --nats-listen, meshd's NATS is reachable in-process only)")
		}
		if a.NKey != "" {
			if _, err := publicUserKey(a.NKey); err != nil {
				bad("nats-nkey-file", "%v", err)
			}
		}
		if a.CredsFile != "" {
			bad("nats-creds-file", "only with --nats-url (it holds credentials meshd presents to another server)")
		}
		if a.TLSCA != "" && a.TLSCert == "" {
			bad("nats-tls-ca", "client certificates are checked only over TLS: give --nats-tls-cert and --nats-tls-key")
		}
		if err == nil && a.TLSCert == "" && !a.Plaintext && !isLoopback(host) {
			bad("nats-listen", "%s is not a loopback address: passwords and the services' events would cross the network in clear; give --nats-tls-cert and --nats-tls-key, or --nats-plaintext to accept that (a private network, a tunnel)", quote(c.Listen))
		}
		checkSubjects := func(field string, subjects []string) {
			if len(subjects) > maxGrants {
				bad(field, "%d subjects, more than %d", len(subjects), maxGrants)
				return
			}
			for _, s := range subjects {
				if len(s) > maxSubjectBytes || !server.IsValidSubject(s) {
					bad(field, "%s is not a NATS subject (of at most %d bytes)", quote(s), maxSubjectBytes)
				}
			}
		}
		checkSubjects("nats-allow-publish", a.AllowPublish)
		checkSubjects("nats-allow-subscribe", a.AllowSubscribe)
	case c.URL != "":
		n := 0
		for _, set := range []bool{hasPassword, a.NKey != "", a.CredsFile != ""} {
			if set {
				n++
			}
		}
		if n > 1 {
			bad("nats-url", "give one of --nats-user with --nats-password-file, --nats-nkey-file or --nats-creds-file")
		}
		if a.NKey != "" {
			if _, err := nkeys.FromSeed([]byte(a.NKey)); err != nil || !strings.HasPrefix(a.NKey, "SU") {
				bad("nats-nkey-file", "with --nats-url it must hold a user nkey seed (SU…)")
			}
		}
		if grants {
			bad("nats-allow-publish", "grants are for clients of --nats-listen, not with --nats-url")
		}
		if a.Plaintext {
			bad("nats-plaintext", "only with --nats-listen")
		}
	case c.Cluster != nil:
		// A cluster node without a client port: its TLS files serve the
		// cluster listener (validateCluster).
		if a.TLSCA != "" && a.TLSCert == "" {
			bad("nats-tls-ca", "certificates are checked only over TLS: give --nats-tls-cert and --nats-tls-key")
		}
		var set []string
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"nats-user", a.User != ""}, {"nats-password-file", a.Password != ""},
			{"nats-nkey-file", a.NKey != ""}, {"nats-creds-file", a.CredsFile != ""},
			{"nats-allow-publish", len(a.AllowPublish) > 0}, {"nats-allow-subscribe", len(a.AllowSubscribe) > 0},
		} {
			if f.set {
				set = append(set, "--"+f.name)
			}
		}
		if len(set) > 0 {
			bad("nats-listen", "%s set but no --nats-listen: they are for its clients", strings.Join(set, ", "))
		}
	default:
		var set []string
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"nats-user", a.User != ""}, {"nats-password-file", a.Password != ""},
			{"nats-nkey-file", a.NKey != ""}, {"nats-creds-file", a.CredsFile != ""},
			{"nats-tls-cert", a.TLSCert != ""}, {"nats-tls-key", a.TLSKey != ""}, {"nats-tls-ca", a.TLSCA != ""},
			{"nats-allow-publish", len(a.AllowPublish) > 0}, {"nats-allow-subscribe", len(a.AllowSubscribe) > 0},
			{"nats-plaintext", a.Plaintext},
		} {
			if f.set {
				set = append(set, "--"+f.name)
			}
		}
		if len(set) > 0 {
			bad("nats-listen", "%s set but neither --nats-listen nor --nats-url: meshd's NATS is in-process only", strings.Join(set, ", "))
		}
	}
	if c.Cluster != nil {
		c.validateCluster(bad)
	}
	return errors.Join(errs...)
}

// listenHost splits a Listen address and checks its port.
func listenHost(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%s is not host:port", quote(listen))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("%s: bad port", quote(listen))
	}
	return host, nil
}

// isLoopback reports whether host names the loopback interface only. An
// empty host listens on every interface.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// publicUserKey returns the public key of a user nkey given as a public key
// or a seed. Its errors never repeat the key.
func publicUserKey(key string) (string, error) {
	if nkeys.IsValidPublicUserKey(key) {
		return key, nil
	}
	kp, err := nkeys.FromSeed([]byte(key))
	if err != nil {
		return "", errors.New("not a user nkey: want a public key (U…) or a seed (SU…)")
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", errors.New("not a user nkey: want a public key (U…) or a seed (SU…)")
	}
	return pub, nil
}

// Connection types the server knows (jwt.ConnectionType*).
const (
	connStandard  = "STANDARD"
	connInProcess = "IN_PROCESS"
)

// serverAuth fills opts with the embedded server's users: meshd's own key
// (returned, for the in-process connection) and, with a listener, the
// operator's clients with their grants. Every connection then
// authenticates; none goes without credentials.
func serverAuth(opts *server.Options, cfg Config) (nkeys.KeyPair, error) {
	self, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("natsd: meshd's own key: %w", err)
	}
	selfPub, err := self.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("natsd: meshd's own key: %w", err)
	}
	// meshd's own connection: every subject, in-process only.
	opts.Nkeys = []*server.NkeyUser{{Nkey: selfPub, AllowedConnectionTypes: map[string]struct{}{connInProcess: {}}}}
	if cfg.Listen == "" {
		return self, nil
	}
	a := cfg.Auth
	grants := func() *server.Permissions {
		return &server.Permissions{Publish: only(a.AllowPublish), Subscribe: only(a.AllowSubscribe)}
	}
	tcpOnly := func() map[string]struct{} { return map[string]struct{}{connStandard: {}} }
	if a.User != "" {
		// The password as given, compared in constant time. A bcrypt hash
		// would protect a configuration file, which there is not (meshd
		// read the password from its own file and holds it anyway), and
		// costs the server about 130 ms of CPU per connection attempt,
		// which anyone who can reach the port could make it spend.
		opts.Users = []*server.User{{Username: a.User, Password: a.Password, Permissions: grants(), AllowedConnectionTypes: tcpOnly()}}
	}
	if a.NKey != "" {
		pub, err := publicUserKey(a.NKey)
		if err != nil {
			return nil, fmt.Errorf("natsd: nats-nkey: %w", err)
		}
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: pub, Permissions: grants(), AllowedConnectionTypes: tcpOnly()})
	}
	if a.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: a.TLSCert, KeyFile: a.TLSKey, CaFile: a.TLSCA, Verify: a.TLSCA != ""})
		if err != nil {
			return nil, fmt.Errorf("natsd: nats-tls: %w", err)
		}
		if tc == nil { // GenTLSConfig returns nil, nil for an empty CA file
			return nil, fmt.Errorf("natsd: nats-tls-ca %s: empty", quote(a.TLSCA))
		}
		opts.TLSConfig = tc
		opts.TLSVerify = a.TLSCA != ""
	}
	return self, nil
}

// only permits subjects and nothing else. An empty list denies everything:
// nats-server reads an empty subscribe Allow list as "allow all".
func only(subjects []string) *server.SubjectPermission {
	if len(subjects) == 0 {
		return &server.SubjectPermission{Deny: []string{">"}}
	}
	return &server.SubjectPermission{Allow: slices.Clone(subjects)}
}

// selfAuth is the in-process connection's option: it signs the server's
// challenge with meshd's own key.
func selfAuth(kp nkeys.KeyPair) (nats.Option, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return nats.Nkey(pub, kp.Sign), nil
}

// clientAuth returns the options meshd connects to an external server
// with.
func clientAuth(a Auth) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.NKey != "":
		kp, err := nkeys.FromSeed([]byte(a.NKey))
		if err != nil {
			return nil, errors.New("natsd: nats-nkey: not a user nkey seed")
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, errors.New("natsd: nats-nkey: not a user nkey seed")
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	if a.TLSCert != "" {
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	return opts, nil
}
