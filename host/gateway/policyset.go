package gateway

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// policySet is Policies compiled: authenticators built, rate limiters
// allocated, policies indexed by what they attach to.
type policySet struct {
	mounts    []Mount
	byRoute   map[string]*compiledPolicy // by route pattern as declared
	byService map[string]*compiledPolicy
	prefixes  []prefixPolicy // longest prefix first
	// limiters by "selector rate burst", so a new set keeps the buckets of
	// an unchanged limit.
	limiters map[string]*limiterStore
	auths    []authenticator
}

type prefixPolicy struct {
	prefix string
	p      *compiledPolicy
}

// lookup returns the policy of a route: by pattern, else longest prefix
// of path, else by service; nil when none applies.
func (ps *policySet) lookup(service, pattern, path string) *compiledPolicy {
	if p := ps.byRoute[pattern]; p != nil {
		return p
	}
	for _, pp := range ps.prefixes {
		if strings.HasPrefix(path, pp.prefix) {
			return pp.p
		}
	}
	return ps.byService[service]
}

// close stops what the set's authenticators run (JWKS refreshes).
func (ps *policySet) close() {
	for _, a := range ps.auths {
		if j, ok := a.(*jwtAuth); ok && j.cancel != nil {
			j.cancel()
		}
	}
}

// realm is the WWW-Authenticate realm of every challenge.
const realm = "meshd"

// compile builds a policySet from p, reusing the rate limiters of old
// whose policy and limit did not change.
func compilePolicies(p *Policies, old *policySet) (*policySet, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	ps := &policySet{
		mounts:    slices.Clone(p.Mounts),
		byRoute:   map[string]*compiledPolicy{},
		byService: map[string]*compiledPolicy{},
		limiters:  map[string]*limiterStore{},
	}
	auths := map[string]authenticator{}
	var errs []error
	names := slices.Sorted(maps.Keys(p.Auth))
	for _, name := range names {
		a := p.Auth[name]
		switch a.Type {
		case AuthAPIKey:
			auths[name] = newAPIKeyAuth(realm, a.Keys)
		case AuthJWT:
			j, err := newJWTAuth(realm, a)
			if err != nil {
				errs = append(errs, &FieldError{Path: "auth." + name, Msg: err.Error()})
				continue
			}
			auths[name] = j
		}
		ps.auths = append(ps.auths, auths[name])
	}
	if len(errs) > 0 {
		ps.close()
		return nil, errors.Join(errs...)
	}
	for i := range p.Policy {
		pol := &p.Policy[i]
		cp := &compiledPolicy{
			name:      pol.selector(),
			consumers: slices.Clone(pol.Consumers),
			timeout:   pol.RequestTimeout,
			maxBody:   pol.MaxBodyBytes,
		}
		if pol.Auth != "" && pol.Auth != AuthNone {
			cp.auth = auths[pol.Auth]
		}
		if pol.Rate > 0 {
			key := fmt.Sprintf("%s %g %d", cp.name, pol.Rate, pol.Burst)
			if old != nil && old.limiters[key] != nil {
				cp.limiter = old.limiters[key]
			} else {
				cp.limiter = newLimiterStore(cp.name, pol.Rate, pol.Burst)
			}
			ps.limiters[key] = cp.limiter
		}
		switch {
		case pol.Route != "":
			ps.byRoute[pol.Route] = cp
		case pol.Prefix != "":
			ps.prefixes = append(ps.prefixes, prefixPolicy{prefix: pol.Prefix, p: cp})
		default:
			ps.byService[pol.Service] = cp
		}
	}
	slices.SortFunc(ps.prefixes, func(a, b prefixPolicy) int { return len(b.prefix) - len(a.prefix) })
	return ps, nil
}

// SetPolicies compiles p and swaps in a router built from the current
// routes and p, all or nothing: on error (every problem, each a
// *FieldError or a route conflict) the current router and policies keep
// serving. Rate-limit buckets of policies whose selector, rate and burst
// are unchanged carry over.
func (g *Gateway) SetPolicies(p Policies) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	ps, err := compilePolicies(&p, g.policies)
	if err != nil {
		return err
	}
	rt, err := g.build(g.router.Load().routes, ps)
	if err != nil {
		ps.close()
		return err
	}
	old := g.policies
	g.policies = ps
	g.router.Store(rt)
	old.close()
	return nil
}

// Close stops the background work of the policies (JWKS refreshes).
// The gateway keeps serving with the keys it has.
func (g *Gateway) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.policies.close()
	return nil
}

// newRouteHandler returns the handler of route r; path is the path the
// client sends (the mount prefix included), matched against prefix
// policies.
func (g *Gateway) newRouteHandler(r Route, path string, ps *policySet) *routeHandler {
	h := &routeHandler{
		g:       g,
		service: r.Service,
		pattern: r.Pattern(),
		route:   []byte(r.Pattern()),
		params:  paramNames(r.Path),
		timeout: g.cfg.RequestTimeout,
		maxBody: g.cfg.MaxBodyBytes,
	}
	for _, p := range h.params {
		h.paramKeys = append(h.paramKeys, []byte(p))
	}
	if p := ps.lookup(r.Service, r.Pattern(), path); p != nil {
		h.policy = p
		if p.timeout > 0 {
			h.timeout = p.timeout
		}
		if p.maxBody > 0 {
			h.maxBody = p.maxBody
		}
		if p.auth == nil && len(p.consumers) == 0 && p.limiter == nil {
			h.policy = nil // nothing to check per request
		}
	}
	return h
}

// mount registers the mounts of ps on rt: each prefix gets a router of its
// service's public routes.
func (g *Gateway) mount(rt *router, routes []Route, ps *policySet) error {
	var errs []error
	for _, m := range ps.mounts {
		key := mountKey(m.Prefix)
		sub := &router{mux: http.NewServeMux()}
		for _, r := range routes {
			if r.Service != m.Service || r.Internal {
				continue
			}
			sub.routes = append(sub.routes, r)
			ext := r.Path
			if m.StripPrefix {
				ext = key + r.Path
			}
			if err := register(sub.mux, r.Pattern(), g.newRouteHandler(r, ext, ps)); err != nil {
				errs = append(errs, fmt.Errorf("gateway: mount %s: %w", m.Prefix, err))
			}
		}
		if err := register(sub.mux, "/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.noRoute(sub, w, r)
		})); err != nil {
			errs = append(errs, err)
		}
		mh := &mountHandler{prefix: key, strip: m.StripPrefix, sub: sub.mux}
		if err := register(rt.mux, key+"/", mh); err != nil {
			errs = append(errs, fmt.Errorf("gateway: mount %s of service %q: %v", m.Prefix, m.Service, err))
			continue
		}
		if err := register(rt.mux, key, mh); err != nil {
			errs = append(errs, fmt.Errorf("gateway: mount %s of service %q: %v", m.Prefix, m.Service, err))
		}
	}
	return errors.Join(errs...)
}

// mountHandler serves a mounted prefix with its service's routes.
type mountHandler struct {
	prefix string // without the trailing slash
	strip  bool
	sub    *http.ServeMux
}

func (m *mountHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m.strip {
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = strings.TrimPrefix(r.URL.Path, m.prefix)
		if u.Path == "" {
			u.Path = "/"
		}
		u.RawPath = ""
		r2.URL = &u
		r = r2
	}
	m.sub.ServeHTTP(w, r)
}
