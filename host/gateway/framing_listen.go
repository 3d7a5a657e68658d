package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Serve serves srv, a server from [NewServer], on l until srv is closed,
// over TLS with c's certificate and key when c.TLS(). It returns what
// srv.Serve returns, or the error of loading the certificate.
//
// HTTP/1 connections are read through a framing tracker, so the gateway
// can refuse a request whose framing is ambiguous (Content-Length with
// Transfer-Encoding, or Transfer-Encoding on HTTP/1.0) with 400 and close
// its connection. Over TLS, Serve does the handshakes itself (in a
// goroutine each, within the server's shortest timeout, as net/http does)
// so that it sees the decrypted bytes; a connection that negotiated HTTP/2
// goes to net/http's HTTP/2 server as it is, and HTTP/1 requests keep
// Request.TLS. A server served otherwise (srv.Serve, srv.ServeTLS) still
// closes the connection after a chunked request, but cannot tell the
// ambiguous ones.
func Serve(srv *http.Server, l net.Listener, c ServerConfig) error {
	maxHeader := srv.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = http.DefaultMaxHeaderBytes
	}
	limit := int64(maxHeader) + 4096 // net/http's read limit for a header block
	if !c.TLS() {
		return srv.Serve(&framedListener{Listener: l, limit: limit})
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	cfg := srv.TLSConfig.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.Certificates = []tls.Certificate{cert}
	return srv.Serve(newTLSListener(srv, l, cfg, limit))
}

// framedListener tracks the framing of its connections.
type framedListener struct {
	net.Listener
	limit int64
}

func (l *framedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newFramedConn(c, l.limit), nil
}

// framedConn is a server connection whose reads feed a framing tracker.
type framedConn struct {
	net.Conn
	rec connFraming
	t   framingTracker
}

func newFramedConn(c net.Conn, limit int64) *framedConn {
	fc := &framedConn{Conn: c}
	fc.t = framingTracker{rec: &fc.rec, limit: limit}
	fc.t.nextRequest()
	return fc
}

func (c *framedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.t.stopped() {
		c.t.Feed(p[:n])
	}
	return n, err
}

func (c *framedConn) framing() *connFraming { return &c.rec }

// CloseWrite half-closes the connection when the underlying one can, as
// net/http does before closing after an error.
func (c *framedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// framedTLSConn is a framedConn over a *tls.Conn after its handshake. Its
// ConnectionState is what net/http sets Request.TLS from.
type framedTLSConn struct {
	*framedConn
	tc *tls.Conn
}

func (c framedTLSConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// tlsListener hands out connections whose TLS handshake is done: a
// *tls.Conn as it is when it negotiated HTTP/2, else a framedTLSConn.
type tlsListener struct {
	inner net.Listener
	srv   *http.Server
	cfg   *tls.Config
	limit int64

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	ready  chan net.Conn
	start  sync.Once
	failed chan struct{} // closed when the inner listener failed
	err    error         // why, set before failed is closed
	errs   chan error    // temporary accept errors, for Serve's backoff
	wg     sync.WaitGroup
}

func newTLSListener(srv *http.Server, l net.Listener, cfg *tls.Config, limit int64) *tlsListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &tlsListener{inner: l, srv: srv, cfg: cfg, limit: limit, ctx: ctx, cancel: cancel,
		ready: make(chan net.Conn), failed: make(chan struct{}), errs: make(chan error)}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	l.start.Do(func() {
		// srv.Serve, which calls Accept, has set up HTTP/2 by now (it
		// does when srv.TLSConfig is nil or lists "h2").
		if l.srv.TLSNextProto["h2"] != nil {
			l.cfg.NextProtos = []string{"h2", "http/1.1"}
		} else {
			l.cfg.NextProtos = []string{"http/1.1"}
		}
		l.wg.Add(1)
		go l.acceptLoop()
	})
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.failed:
		return nil, l.err
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// acceptLoop accepts connections and starts their handshakes until the
// inner listener fails or l is closed.
func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if l.ctx.Err() != nil {
				return
			}
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				// Serve backs off too; pass the error on and wait as it does.
				select {
				case l.errs <- err:
				case <-l.ctx.Done():
					return
				}
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
				case <-l.ctx.Done():
					return
				}
				continue
			}
			l.err = err
			close(l.failed)
			return
		}
		backoff = 0
		l.wg.Add(1)
		go l.handshake(c)
	}
}

// handshake does c's TLS handshake within the server's handshake timeout
// and hands c to Accept.
func (l *tlsListener) handshake(c net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(c, l.cfg)
	to := handshakeTimeout(l.srv)
	if to > 0 {
		dl := time.Now().Add(to)
		_ = c.SetDeadline(dl)
	}
	if err := tc.HandshakeContext(l.ctx); err != nil {
		// As net/http: a client speaking plain HTTP gets a plain 400.
		reason := err.Error()
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && recordLooksLikeHTTP(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			reason = "client sent an HTTP request to an HTTPS server"
		}
		_ = c.Close()
		if l.ctx.Err() == nil {
			logf(l.srv, "http: TLS handshake error from %s: %s", c.RemoteAddr(), strconv.Quote(bounded(reason, 256)))
		}
		return
	}
	if to > 0 {
		_ = c.SetDeadline(time.Time{})
	}
	var out net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		out = framedTLSConn{framedConn: newFramedConn(tc, l.limit), tc: tc}
	}
	select {
	case l.ready <- out:
	case <-l.ctx.Done():
		_ = tc.Close()
	}
}

// Close stops accepting, aborts the handshakes under way and waits for
// them.
func (l *tlsListener) Close() error {
	l.cancel()
	err := l.inner.Close()
	l.wg.Wait()
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }

// handshakeTimeout is net/http's: the shortest positive of the server's
// read header, read and write timeouts, or none.
func handshakeTimeout(srv *http.Server) time.Duration {
	var to time.Duration
	for _, d := range []time.Duration{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout} {
		if d > 0 && (to == 0 || d < to) {
			to = d
		}
	}
	return to
}

// recordLooksLikeHTTP is net/http's test of a TLS record header that is
// the start of a plain HTTP request.
func recordLooksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// logf logs to srv's error log, as net/http does.
func logf(srv *http.Server, format string, args ...any) {
	if srv.ErrorLog != nil {
		srv.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// Interface guards.
var (
	_ net.Listener = (*framedListener)(nil)
	_ net.Listener = (*tlsListener)(nil)
	_ net.Conn     = (*framedConn)(nil)
	_ net.Conn     = framedTLSConn{}
)
