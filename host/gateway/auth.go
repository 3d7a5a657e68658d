package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/meshd/meshd/abi"
)

// reservedConsumer reports whether c is in the namespace of the consumers
// that services calling services carry (abi.ConsumerPrefix,
// "service:order"): a service reads the caller from it
// (guest.Request.CallingService), so no credential of the gateway may name
// one, or a client could pass for a service.
func reservedConsumer(c string) bool { return strings.HasPrefix(c, abi.ConsumerPrefix) }

// authenticator checks a request's credentials and names its consumer.
type authenticator interface {
	authenticate(r *http.Request) (consumer string, err error)
	// challenge is the WWW-Authenticate value answering err.
	challenge(err error) string
}

// Authentication errors; their text goes into the 401 problem's detail.
var (
	errNoCredentials = errors.New("credentials are missing: send Authorization: Bearer <token>")
	errNoKey         = errors.New("credentials are missing: send Authorization: Bearer <key> or X-API-Key: <key>")
	errBadKey        = errors.New("the API key is not valid")
)

// credential returns the bearer token or X-API-Key of r.
func credential(r *http.Request, apiKey bool) string {
	if v := r.Header.Get("Authorization"); v != "" {
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return strings.TrimSpace(v[7:])
		}
		return ""
	}
	if apiKey {
		return r.Header.Get("X-API-Key")
	}
	return ""
}

// apiKeyAuth maps the SHA-256 of each key to its consumer, so the lookup
// does not compare the secret itself byte by byte.
type apiKeyAuth struct {
	realm string
	keys  map[[32]byte]string
}

func newAPIKeyAuth(realm string, keys map[string]string) *apiKeyAuth {
	a := &apiKeyAuth{realm: realm, keys: make(map[[32]byte]string, len(keys))}
	for k, c := range keys {
		a.keys[sha256.Sum256([]byte(k))] = c
	}
	return a
}

func (a *apiKeyAuth) authenticate(r *http.Request) (string, error) {
	key := credential(r, true)
	if key == "" {
		return "", errNoKey
	}
	c, ok := a.keys[sha256.Sum256([]byte(key))]
	if !ok {
		return "", errBadKey
	}
	return c, nil
}

func (a *apiKeyAuth) challenge(err error) string {
	if err == errNoKey {
		return `Bearer realm="` + a.realm + `"`
	}
	return `Bearer realm="` + a.realm + `", error="invalid_token"`
}

// jwtAuth checks JWTs: signature, algorithm, exp (required), nbf, iat,
// and iss and aud when configured.
type jwtAuth struct {
	realm   string
	parser  *jwt.Parser
	keyfunc jwt.Keyfunc
	claim   string
	cancel  context.CancelFunc // stops a JWKS URL's refresh; nil otherwise
}

func newJWTAuth(realm string, a AuthConfig) (*jwtAuth, error) {
	algs := a.Algorithms
	if len(algs) == 0 {
		if a.Secret != "" {
			algs = []string{"HS256"}
		} else {
			algs = []string{"RS256", "ES256"}
		}
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithExpirationRequired(), jwt.WithIssuedAt()}
	if a.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.Issuer))
	}
	if a.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.Audience))
	}
	if a.Leeway > 0 {
		opts = append(opts, jwt.WithLeeway(a.Leeway))
	}
	j := &jwtAuth{realm: realm, parser: jwt.NewParser(opts...), claim: a.ConsumerClaim}
	if j.claim == "" {
		j.claim = "sub"
	}
	switch {
	case a.Secret != "":
		secret := []byte(a.Secret)
		j.keyfunc = func(*jwt.Token) (any, error) { return secret, nil }
	case a.JWKSFile != "":
		raw, err := os.ReadFile(a.JWKSFile)
		if err != nil {
			return nil, err
		}
		k, err := keyfunc.NewJWKSetJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("JWKS file %s: %w", a.JWKSFile, err)
		}
		j.keyfunc = k.Keyfunc
	default:
		refresh, minRefresh := a.JWKSRefresh, a.JWKSMinRefresh
		if refresh <= 0 {
			refresh = time.Hour
		}
		if minRefresh <= 0 {
			minRefresh = time.Minute
		}
		ctx, cancel := context.WithCancel(context.Background())
		k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{a.JWKSURL}, keyfunc.Override{
			RefreshInterval:   refresh,
			RefreshUnknownKID: rate.NewLimiter(rate.Every(minRefresh), 1),
			HTTPTimeout:       10 * time.Second,
		})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("JWKS URL %s: %w", a.JWKSURL, err)
		}
		j.keyfunc, j.cancel = k.Keyfunc, cancel
	}
	return j, nil
}

func (j *jwtAuth) authenticate(r *http.Request) (string, error) {
	tok := credential(r, false)
	if tok == "" {
		return "", errNoCredentials
	}
	claims := jwt.MapClaims{}
	if _, err := j.parser.ParseWithClaims(tok, claims, j.keyfunc); err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			return "", errors.New("the token has expired")
		case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
			return "", errors.New("the token signature is not valid")
		case errors.Is(err, jwt.ErrTokenInvalidIssuer):
			return "", errors.New("the token issuer is not accepted")
		case errors.Is(err, jwt.ErrTokenInvalidAudience):
			return "", errors.New("the token audience is not accepted")
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			return "", errors.New("the token lacks a required claim (exp)")
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return "", errors.New("the token is not valid yet")
		default:
			return "", errors.New("the token is not valid")
		}
	}
	c, _ := claims[j.claim].(string)
	if c == "" {
		return "", fmt.Errorf("the token has no %q claim naming the consumer", j.claim)
	}
	if reservedConsumer(c) {
		return "", fmt.Errorf("the token's %q claim names a consumer in the namespace reserved for services (%s...)", j.claim, abi.ConsumerPrefix)
	}
	return c, nil
}

func (j *jwtAuth) challenge(err error) string {
	if err == errNoCredentials {
		return `Bearer realm="` + j.realm + `"`
	}
	return `Bearer realm="` + j.realm + `", error="invalid_token"`
}
