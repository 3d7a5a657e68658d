package gateway

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/meshd/meshd/abi"
)

// Policies is the operator's gateway configuration: mounts, named
// authenticators and the policies that attach them, with rate limits and
// limits, to services, routes and path prefixes. The zero value is no
// policy at all: every route open, no rate limit, the Config limits.
type Policies struct {
	// Mounts route a path prefix to a service.
	Mounts []Mount `toml:"mount"`
	// Auth holds the named authenticators policies refer to.
	Auth map[string]AuthConfig `toml:"auth"`
	// Policy holds the policies. A request gets the most specific one that
	// applies to its route: a route policy, else the policy of the longest
	// matching prefix, else its service's policy, else none.
	Policy []Policy `toml:"policy"`
}

// Mount routes every request under Prefix to Service, whatever the method.
// The service's own routes match the path, with Prefix removed when
// StripPrefix is set: with prefix "/api/orders" stripped, "POST
// /api/orders/orders" reaches the service's "POST /orders" route.
type Mount struct {
	Prefix      string `toml:"prefix"`
	Service     string `toml:"service"`
	StripPrefix bool   `toml:"strip_prefix"`
}

// Authenticator types.
const (
	AuthAPIKey = "api_key"
	AuthJWT    = "jwt"
	// AuthNone, as a policy's Auth, leaves the policy's routes open.
	AuthNone = "none"
)

// AuthConfig is one named authenticator.
type AuthConfig struct {
	// Type is "api_key" or "jwt".
	Type string `toml:"type"`

	// Keys maps an API key to its consumer (api_key). Clients send the key
	// as "Authorization: Bearer <key>" or "X-API-Key: <key>".
	Keys map[string]string `toml:"keys"`

	// Secret is the HS256 shared secret (jwt); or use JWKSFile or JWKSURL
	// for RS256 and ES256. Exactly one of the three.
	Secret   string `toml:"secret"`
	JWKSFile string `toml:"jwks_file"`
	JWKSURL  string `toml:"jwks_url"`
	// JWKSRefresh is how often a JWKS URL is fetched again. Default 1h. A
	// token signed with a key id the set lacks triggers a refresh at most
	// once per JWKSMinRefresh (default 1m).
	JWKSRefresh    time.Duration `toml:"jwks_refresh"`
	JWKSMinRefresh time.Duration `toml:"jwks_min_refresh"`
	// Algorithms the tokens may use. Default HS256 with Secret, else RS256
	// and ES256.
	Algorithms []string `toml:"algorithms"`
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer   string `toml:"issuer"`
	Audience string `toml:"audience"`
	// ConsumerClaim names the claim holding the consumer. Default "sub".
	ConsumerClaim string `toml:"consumer_claim"`
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 0.
	Leeway time.Duration `toml:"leeway"`
}

// Policy attaches authentication, consumer allow-lists, a rate limit and
// limits to exactly one of a service, a route pattern ("POST /orders", as
// the service declares it) or a path prefix ("/api/").
type Policy struct {
	Service string `toml:"service"`
	Route   string `toml:"route"`
	Prefix  string `toml:"prefix"`

	// Auth names an authenticator of Policies.Auth; "" or "none" for none.
	Auth string `toml:"auth"`
	// Consumers, when set, are the only consumers allowed (403 otherwise).
	Consumers []string `toml:"consumers"`

	// Rate (tokens per second) and Burst (bucket size) set a token bucket
	// per consumer, or per client address for anonymous requests. Rate 0
	// means no limit. The bucket is shared by every route the policy
	// covers.
	Rate  float64 `toml:"rate"`
	Burst int     `toml:"burst"`

	// RequestTimeout and MaxBodyBytes, when set, replace the gateway's.
	RequestTimeout time.Duration `toml:"request_timeout"`
	MaxBodyBytes   int64         `toml:"max_body_bytes"`
}

// selector describes what the policy attaches to.
func (p *Policy) selector() string {
	switch {
	case p.Route != "":
		return "route " + p.Route
	case p.Prefix != "":
		return "prefix " + p.Prefix
	default:
		return "service " + p.Service
	}
}

// FieldError is one problem in Policies, at a path such as "policy[1].auth"
// or "auth.partners.secret" (array indexes from 0).
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// Validate reports every problem in p at once, each a *FieldError.
// It does not read JWKS files or URLs; SetPolicies does.
func (p *Policies) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	prefixes := map[string]int{}
	for i, m := range p.Mounts {
		path := fmt.Sprintf("mount[%d]", i)
		if !strings.HasPrefix(m.Prefix, "/") || strings.ContainsAny(m.Prefix, "{} \t\r\n") {
			bad(path+".prefix", "%q must start with \"/\" and hold no wildcards or white space", m.Prefix)
		} else if j, ok := prefixes[mountKey(m.Prefix)]; ok {
			bad(path+".prefix", "%q is already mounted by mount[%d]", m.Prefix, j)
		} else {
			prefixes[mountKey(m.Prefix)] = i
		}
		if m.Service == "" {
			bad(path+".service", "must be set")
		}
	}
	names := slices.Sorted(maps.Keys(p.Auth))
	for _, name := range names {
		a := p.Auth[name]
		path := "auth." + name
		if name == AuthNone {
			bad(path, "%q is reserved: it means no authentication", AuthNone)
		}
		switch a.Type {
		case AuthAPIKey:
			if len(a.Keys) == 0 {
				bad(path+".keys", "an api_key authenticator needs at least one key")
			}
			for k, c := range a.Keys {
				if k == "" || strings.ContainsAny(k, " \t\r\n") {
					bad(path+".keys", "a key is empty or holds white space")
				}
				if c == "" {
					bad(path+".keys", "a key has an empty consumer name")
				}
				if reservedConsumer(c) {
					bad(path+".keys", "consumer %q: names starting with %q are reserved for services", c, abi.ConsumerPrefix)
				}
			}
			if a.Secret != "" || a.JWKSFile != "" || a.JWKSURL != "" || a.Issuer != "" || a.Audience != "" {
				bad(path, "secret, jwks_file, jwks_url, issuer and audience belong to jwt authenticators")
			}
		case AuthJWT:
			if nonEmpty(a.Secret, a.JWKSFile, a.JWKSURL) != 1 {
				bad(path, "a jwt authenticator needs exactly one of secret, jwks_file or jwks_url")
			}
			if a.JWKSURL != "" && !strings.HasPrefix(a.JWKSURL, "https://") && !strings.HasPrefix(a.JWKSURL, "http://") {
				bad(path+".jwks_url", "%q is not an http(s) URL", a.JWKSURL)
			}
			for _, alg := range a.Algorithms {
				if !slices.Contains(supportedAlgorithms, alg) {
					bad(path+".algorithms", "%q is not one of %s", alg, strings.Join(supportedAlgorithms, ", "))
				}
			}
			if len(a.Keys) > 0 {
				bad(path+".keys", "keys belong to api_key authenticators")
			}
			if a.JWKSRefresh < 0 || a.JWKSMinRefresh < 0 || a.Leeway < 0 {
				bad(path, "jwks_refresh, jwks_min_refresh and leeway must not be negative")
			}
		case "":
			bad(path+".type", "must be set: %q or %q", AuthAPIKey, AuthJWT)
		default:
			bad(path+".type", "%q is not %q or %q", a.Type, AuthAPIKey, AuthJWT)
		}
	}
	seen := map[string]int{}
	for i := range p.Policy {
		pol := &p.Policy[i]
		path := fmt.Sprintf("policy[%d]", i)
		if nonEmpty(pol.Service, pol.Route, pol.Prefix) != 1 {
			bad(path, "needs exactly one of service, route or prefix")
		} else {
			if pol.Route != "" {
				method, rpath, ok := strings.Cut(pol.Route, " ")
				if !ok || !slices.Contains(allowedMethods, method) || !strings.HasPrefix(rpath, "/") {
					bad(path+".route", "%q is not \"METHOD /path\" with a method among %s", pol.Route, strings.Join(allowedMethods, ", "))
				}
			}
			if pol.Prefix != "" && !strings.HasPrefix(pol.Prefix, "/") {
				bad(path+".prefix", "%q must start with \"/\"", pol.Prefix)
			}
			if j, ok := seen[pol.selector()]; ok {
				bad(path, "%s already has policy[%d]", pol.selector(), j)
			} else {
				seen[pol.selector()] = i
			}
		}
		if pol.Auth != "" && pol.Auth != AuthNone {
			if _, ok := p.Auth[pol.Auth]; !ok {
				bad(path+".auth", "no authenticator %q (define [auth.%s])", pol.Auth, pol.Auth)
			}
		}
		for _, c := range pol.Consumers {
			if c == "" {
				bad(path+".consumers", "empty consumer name")
			}
			if reservedConsumer(c) {
				bad(path+".consumers", "consumer %q: names starting with %q are reserved for services", c, abi.ConsumerPrefix)
			}
		}
		if pol.Rate < 0 {
			bad(path+".rate", "must not be negative")
		}
		if pol.Rate > 0 && pol.Burst < 1 {
			bad(path+".burst", "must be at least 1 when rate is set")
		}
		if pol.Rate == 0 && pol.Burst != 0 {
			bad(path+".rate", "must be set when burst is")
		}
		if pol.RequestTimeout < 0 {
			bad(path+".request_timeout", "must not be negative")
		}
		if pol.MaxBodyBytes < 0 {
			bad(path+".max_body_bytes", "must not be negative")
		}
	}
	return errors.Join(errs...)
}

var supportedAlgorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"}

// mountKey normalises a mount prefix: "/api/orders/" and "/api/orders"
// mount the same tree.
func mountKey(prefix string) string {
	if prefix != "/" {
		prefix = strings.TrimSuffix(prefix, "/")
	}
	return prefix
}

// compiledPolicy is a Policy ready to serve, shared read-only by every
// request of the routes it covers.
type compiledPolicy struct {
	name      string // the selector, for logs and the RateLimit headers
	auth      authenticator
	consumers []string
	limiter   *limiterStore
	timeout   time.Duration
	maxBody   int64
}

// admit runs the policy's authentication, allow-list and rate limit. It
// returns the consumer, or writes the refusal and returns ok false.
func (p *compiledPolicy) admit(w http.ResponseWriter, r *http.Request, h *routeHandler) (consumer string, ok bool) {
	if p.auth != nil {
		var err error
		consumer, err = p.auth.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", p.auth.challenge(err))
			h.refuse(w, r, http.StatusUnauthorized, "unauthorized", err.Error(), err)
			return "", false
		}
		noteConsumer(w, consumer)
	}
	if len(p.consumers) > 0 && !slices.Contains(p.consumers, consumer) {
		who := "anonymous requests are"
		if consumer != "" {
			who = fmt.Sprintf("consumer %q is", consumer)
		}
		h.refuse(w, r, http.StatusForbidden, "forbidden",
			fmt.Sprintf("%s not allowed on %s", who, h.pattern), errors.New("consumer not allowed"))
		return "", false
	}
	if p.limiter != nil {
		key := bucketKey{id: consumer}
		if consumer == "" {
			key = bucketKey{anonymous: true, id: clientIP(r)}
		}
		if !p.limiter.allow(w, key) {
			h.refuse(w, r, http.StatusTooManyRequests, "too many requests",
				fmt.Sprintf("the rate limit of %s is %g requests per second, burst %d", p.name, p.limiter.rate, p.limiter.burst),
				errors.New("rate limited"))
			return "", false
		}
	}
	return consumer, true
}

// clientIP is the address of the connection's peer, without the port.
// X-Forwarded-For is not trusted.
func clientIP(r *http.Request) string {
	addr := r.RemoteAddr
	if i := strings.LastIndexByte(addr, ':'); i >= 0 && !strings.HasSuffix(addr, "]") {
		addr = addr[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
}

// nonEmpty counts the non-empty strings of ss.
func nonEmpty(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}
