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
	// MaxHeaderBytes caps the request line and headers.
	MaxHeaderBytes int `toml:"max_header_bytes"`
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

// NewServer returns an http.Server for h with timeouts fit for a public
// listener; its error log goes to slog's default logger at warn level.
func NewServer(addr string, h http.Handler) *http.Server {
	return NewServerWith(addr, h, ServerConfig{})
}

// NewServerWith is NewServer with c's timeouts and header cap (zero
// fields take the defaults). TLS is the caller's: serve with
// ServeTLS(l, c.CertFile, c.KeyFile) when c.TLS().
func NewServerWith(addr string, h http.Handler, c ServerConfig) *http.Server {
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
		Handler:           h,
		ReadHeaderTimeout: or(c.ReadHeaderTimeout, ServerReadHeaderTimeout),
		ReadTimeout:       or(c.ReadTimeout, ServerReadTimeout),
		WriteTimeout:      or(c.WriteTimeout, ServerWriteTimeout),
		IdleTimeout:       or(c.IdleTimeout, ServerIdleTimeout),
		MaxHeaderBytes:    maxHeader,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
}
