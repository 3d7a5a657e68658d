package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"
)

// Timeouts and limits of the server NewServer returns.
const (
	ServerReadHeaderTimeout = 5 * time.Second
	ServerReadTimeout       = 30 * time.Second
	ServerWriteTimeout      = 60 * time.Second
	ServerIdleTimeout       = 120 * time.Second
	ServerMaxHeaderBytes    = 1 << 20
	// ServerMaxURIBytes caps the request target (path and query as sent):
	// a longer one is answered 414 before routing.
	ServerMaxURIBytes = 8 << 10
)

// ServerConfig holds the HTTP server's defences against slow or greedy
// clients, and TLS. Zero values take the Server* defaults.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading the request headers (slowloris).
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`
	// ReadTimeout bounds reading the whole request, body included.
	ReadTimeout time.Duration `toml:"read_timeout"`
	// WriteTimeout bounds the time from the end of the headers to the end
	// of the response.
	WriteTimeout time.Duration `toml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// MaxHeaderBytes caps the request line and headers; net/http answers
	// 431 past it, before the gateway sees the request.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// MaxURIBytes caps the request target (path and query as sent): a
	// longer one is answered 414 before routing, so it is never copied
	// into a service request. Only a value below MaxHeaderBytes matters.
	MaxURIBytes int `toml:"max_uri_bytes"`
	// CertFile and KeyFile, both set, serve HTTPS.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// TLS reports whether c serves HTTPS.
func (c ServerConfig) TLS() bool { return c.CertFile != "" }

// Validate reports every problem of c, each a *FieldError under "server".
func (c ServerConfig) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Path: "server." + key, Msg: fmt.Sprintf(format, args...)})
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"read_header_timeout", c.ReadHeaderTimeout}, {"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}, {"idle_timeout", c.IdleTimeout}} {
		if d.v < 0 {
			bad(d.key, "must not be negative")
		}
	}
	if c.MaxHeaderBytes < 0 {
		bad("max_header_bytes", "must not be negative")
	}
	if c.MaxURIBytes < 0 {
		bad("max_uri_bytes", "must not be negative")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		bad("cert_file", "cert_file and key_file go together")
	}
	for key, f := range map[string]string{"cert_file": c.CertFile, "key_file": c.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad(key, "%v", errors.Unwrap(err))
		}
	}
	return errors.Join(errs...)
}

// NewServer returns an http.Server for h with c's timeouts and header caps
// (zero fields take defaults fit for a public listener); its error log goes
// to slog's default logger at warn level. Serve it with [Serve], which
// serves HTTPS when c.TLS() and lets it refuse requests of ambiguous
// framing.
//
// The server runs the checks of [edge] before h; when h is a *Gateway, its
// refusals are logged and observed as the gateway's own.
func NewServer(addr string, h http.Handler, c ServerConfig) *http.Server {
	or := func(v, def time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return def
	}
	maxHeader := c.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = ServerMaxHeaderBytes
	}
	return &http.Server{
		Addr:              addr,
		Handler:           newEdge(h, c),
		ReadHeaderTimeout: or(c.ReadHeaderTimeout, ServerReadHeaderTimeout),
		ReadTimeout:       or(c.ReadTimeout, ServerReadTimeout),
		WriteTimeout:      or(c.WriteTimeout, ServerWriteTimeout),
		IdleTimeout:       or(c.IdleTimeout, ServerIdleTimeout),
		MaxHeaderBytes:    maxHeader,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
		ConnContext:       framingConnContext,
	}
}

// edge checks what net/http lets through but a public listener should
// not, before anything is routed:
//
//   - an HTTP/1 request whose framing is ambiguous: Content-Length with
//     Transfer-Encoding (the request smuggling of RFC 9112 section 11.2),
//     or Transfer-Encoding on HTTP/1.0: 400, and the connection is closed
//     (section 6.3). net/http frames the first by the chunked coding and
//     drops its Content-Length, and ignores the second's Transfer-Encoding,
//     without telling the handler; the framing tracker of a connection
//     served by [Serve] tells it;
//   - any other HTTP/1 request with a Transfer-Encoding: served, then the
//     connection is closed (the tracker stops following the connection
//     there; on a connection it does not follow, this is all that is done);
//   - a request target longer than ServerConfig.MaxURIBytes: 414.
type edge struct {
	next    http.Handler
	maxURI  int
	log     *slog.Logger
	observe func(Observation) // nil: not observed
}

func newEdge(h http.Handler, c ServerConfig) *edge {
	e := &edge{next: h, maxURI: c.MaxURIBytes, log: slog.New(slog.DiscardHandler)}
	if e.maxURI <= 0 {
		e.maxURI = ServerMaxURIBytes
	}
	if g, ok := h.(*Gateway); ok {
		e.log, e.observe = g.log, g.cfg.Observe
	}
	return e
}

func (e *edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		switch framingOf(r) {
		case verdictKnown:
			if len(r.TransferEncoding) > 0 {
				// The tracker saw no Transfer-Encoding: it lost track.
				w.Header().Set("Connection", "close")
			}
		case verdictBoth:
			w.Header().Set("Connection", "close")
			e.refuse(w, r, http.StatusBadRequest, "bad request",
				"the request has both Content-Length and Transfer-Encoding, which make its end ambiguous (RFC 9112 section 6.3)")
			skipBody(w)
			return
		case verdictTE10:
			w.Header().Set("Connection", "close")
			e.refuse(w, r, http.StatusBadRequest, "bad request",
				"the HTTP/1.0 request has a Transfer-Encoding, which HTTP/1.0 does not define (RFC 9112 section 6.1)")
			skipBody(w)
			return
		case verdictChunked, verdictLost:
			w.Header().Set("Connection", "close")
		case verdictUntracked:
			if len(r.TransferEncoding) > 0 {
				w.Header().Set("Connection", "close")
			}
		}
	}
	if n := len(r.RequestURI); n > e.maxURI {
		e.refuse(w, r, http.StatusRequestURITooLong, "URI too long",
			fmt.Sprintf("the request target is %d bytes; the limit is %d", n, e.maxURI))
		return
	}
	e.next.ServeHTTP(w, r)
}

// refuse answers a request before routing with a problem (without
// "instance": the target may be what is wrong with it), logs it at debug
// level and observes it.
func (e *edge) refuse(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	start := time.Now()
	w.Header()[headerRequestID] = []string{requestID(r)}
	ensureTraceParent(r)
	if e.log.Enabled(r.Context(), slog.LevelDebug) {
		e.log.LogAttrs(r.Context(), slog.LevelDebug, "gateway: request refused before routing",
			slog.String("request_id", w.Header().Get(headerRequestID)),
			slog.String("trace_id", traceIDOf(r)),
			slog.String("method", bounded(r.Method, 32)),
			slog.Int("status", status),
			slog.String("detail", detail))
	}
	WriteProblem(w, status, title, detail, nil)
	if e.observe != nil {
		e.observe(Observation{Method: r.Method, Status: status, Duration: time.Since(start)})
	}
}

// skipBody keeps net/http from reading the rest of a refused request's
// body after the handler (it reads up to 256 KiB, to reuse the connection,
// even when the response closes it): a client that stops sending would hold
// the connection until the read timeout. The response is still written.
func skipBody(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// bounded cuts s to at most n bytes, marking a cut with "...".
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Interface guards.
var _ http.Handler = (*edge)(nil)
