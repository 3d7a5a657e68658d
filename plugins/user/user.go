package main

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
	"github.com/meshd/meshd/plugins/internal/svcenv"
)

const (
	maxIDLen     = 128      // bytes of a user id: as the order service's user_id
	maxNameLen   = 256      // bytes of a name
	maxBodyBytes = 16 << 10 // bytes of a POST /users body; a user is far smaller
)

// env is what the service needs from the host.
type env interface {
	KVGet(key string) ([]byte, error) // guest.ErrNotFound when absent
	KVSet(key string, value []byte) error
	Log(level guest.Level, msg string)
	Now() time.Time
	// Get calls GET path?query on another service's route (path escaped,
	// query raw). A non-nil error means the call got no answer (not
	// granted, unavailable, circuit open, timed out...); any status the
	// callee answered is not an error.
	Get(service, path, query string) (status int, body []byte, err error)
}

// responder is the part of *guest.ResponseWriter the handlers use.
type responder interface {
	SetHeader(name, value string)
	JSON(status int, body []byte)
	Problem(status int, title, detail string, errs ...string)
}

var _ responder = (*guest.ResponseWriter)(nil)

// user is a user as stored and served.
type user struct {
	ID        string
	Name      string
	CreatedAt string
	UpdatedAt string
}

// userKey is the key of a user's record: the id is escaped (guest.Key), so
// no id can name another user's key.
func userKey(id string) string { return guest.Key("user", id) }

// parsePut reads a POST /users body. A non-nil error means the body is not
// valid JSON; otherwise problems lists every validation failure, each
// naming its field.
func parsePut(body []byte) (id, name string, problems []string, err error) {
	var r jsonx.Reader
	r.Reset(body)
	if k := r.Kind(); k != jsonx.Object {
		if k == jsonx.Invalid {
			return "", "", nil, r.Err()
		}
		r.Skip()
		if err := r.Finish(); err != nil {
			return "", "", nil, err
		}
		return "", "", []string{"body must be a JSON object"}, nil
	}
	idBad, idValid, nameBad, nameValid := false, true, false, true
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "id":
			id, idValid, idBad = svcenv.StringField(&r)
		case "name":
			name, nameValid, nameBad = svcenv.StringField(&r)
		default:
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil {
		return "", "", nil, err
	}
	if p := svcenv.CheckText("id", id, idBad, idValid, maxIDLen); p != "" {
		problems = append(problems, p)
	} else if id == "." || id == ".." {
		// URLs drop such segments ("/users/.." is "/"): no path could
		// name the user.
		problems = append(problems, `id must not be "." or ".."`)
	}
	if p := svcenv.CheckText("name", name, nameBad, nameValid, maxNameLen); p != "" {
		problems = append(problems, p)
	}
	return id, name, problems, nil
}

// appendUser writes u's fields into an open JSON object.
func appendUser(w *jsonx.Writer, u *user) {
	w.StringField("id", u.ID)
	w.StringField("name", u.Name)
	w.StringField("created_at", u.CreatedAt)
	w.StringField("updated_at", u.UpdatedAt)
}

// encodeUser returns u as a JSON object, as stored and served.
func encodeUser(u *user) []byte {
	w := jsonx.NewWriter(make([]byte, 0, 128+len(u.ID)+len(u.Name)))
	w.ObjectStart()
	appendUser(w, u)
	w.ObjectEnd()
	return w.Bytes()
}

// parseUser reads a stored user.
func parseUser(b []byte) (user, error) {
	var u user
	var r jsonx.Reader
	r.Reset(b)
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "id":
			u.ID = r.String()
		case "name":
			u.Name = r.String()
		case "created_at":
			u.CreatedAt = r.String()
		case "updated_at":
			u.UpdatedAt = r.String()
		default:
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil {
		return user{}, err
	}
	return u, nil
}

// loadUser reads the user with id: found false when there is none.
func loadUser(e env, id string) (u user, found bool, err error) {
	data, err := e.KVGet(userKey(id))
	if errors.Is(err, guest.ErrNotFound) {
		return user{}, false, nil
	}
	if err != nil {
		return user{}, false, errors.New("reading user: " + err.Error())
	}
	if u, err = parseUser(data); err != nil {
		return user{}, false, errors.New("stored user is corrupt: " + err.Error())
	}
	return u, true, nil
}

// putUser serves POST /users: it creates the user (201) or updates its
// name (200), keeping created_at. Two calls that create one user at once
// both answer 201 and the last write is kept. A returned error fails the
// call, so nothing it wrote is kept.
func putUser(e env, w responder, body []byte) error {
	if len(body) > maxBodyBytes {
		w.Problem(413, "payload too large", "the body is larger than "+strconv.Itoa(maxBodyBytes)+" bytes")
		return nil
	}
	id, name, problems, err := parsePut(body)
	if err != nil {
		w.Problem(400, "invalid user", "body is not valid JSON: "+err.Error())
		return nil
	}
	if len(problems) > 0 {
		w.Problem(400, "invalid user", strings.Join(problems, "; "), problems...)
		return nil
	}
	u, found, err := loadUser(e, id)
	if err != nil {
		return err
	}
	now := svcenv.Timestamp(e.Now())
	if !found {
		u = user{ID: id, CreatedAt: now}
	}
	u.Name, u.UpdatedAt = name, now
	data := encodeUser(&u)
	if err := e.KVSet(userKey(id), data); err != nil {
		return errors.New("storing user: " + err.Error())
	}
	status := 200
	if !found {
		status = 201
		w.SetHeader("location", "/users/"+pathEscape(id))
	}
	w.JSON(status, data)
	return nil
}

// notFound answers 404 for the user id.
func notFound(w responder, id string) {
	w.Problem(404, "user not found", "no user with id "+excerpt(id, maxIDLen))
}

// excerpt quotes at most max bytes of s for a message or a log line (Go
// syntax: control bytes and invalid UTF-8 escaped); a longer s is cut at a
// character boundary and marked with "...".
func excerpt(s string, max int) string {
	if len(s) <= max {
		return strconv.Quote(s)
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return strconv.Quote(s[:max]) + "..."
}

// pathEscape escapes s as one path segment: every byte but an unreserved
// one (RFC 3986: letters, digits, '-', '.', '_', '~') becomes %XX, so an id
// holding '/', '?', '%' or a control byte stays one segment and cannot
// split a header.
func pathEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = make([]byte, i, len(s)+16)
			copy(b, s[:i])
		}
		b = append(b, '%', hex[c>>4], hex[c&0x0F])
	}
	if b == nil {
		return s
	}
	return string(b)
}

// checkPathID validates a user id taken from a path. It answers the
// client (400 or 404) and returns false when the id cannot be a user's.
func checkPathID(w responder, id string) bool {
	if !utf8.ValidString(id) {
		w.Problem(400, "invalid user id", "the user id is not valid UTF-8")
		return false
	}
	if id == "" || len(id) > maxIDLen {
		notFound(w, id)
		return false
	}
	return true
}
