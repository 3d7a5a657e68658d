package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
	"github.com/meshd/meshd/plugins/internal/svcenv"
)

// The read model (CQRS query side), projected only from the order
// service's own events, under the key prefix "rm:" (order.toml [events]
// read_model_prefix), so `meshd events replay --service order` can drop and
// rebuild it:
//
//	rm:order:<id>     the order as served by GET /orders/{id}
//	rm:user:<uid>     how many index pages the user has, in decimal
//	rm:user:<uid>:<k> index page k: "<created_at>\t<id>" lines, sorted
//	                  ascending (created_at is fixed-width RFC 3339)
//
// with <id> and <uid> escaped (see viewKey).
//
// The pages split the user's sorted index into consecutive ranges, page 0
// the oldest. A new order lands in the page whose range covers it, nearly
// always the last; when it is the newest and the last page holds
// indexPageBytes, it starts a new page. So adding an order reads and
// writes one page, whatever the number of orders the user has, and no value
// outgrows NATS's payload limit. An index written before pages (one
// document under rm:user:<uid>) is read as page 0 and moved there at the
// next order.
//
// Every projection is an idempotent merge (ORDER_PAID may be projected
// before ORDER_CREATED: they are different consumers). The documents do not
// depend on arrival order, except where index pages end: orders created
// out of order across a page boundary can fill pages differently. A replay
// delivers in stream order, so it ends with identical documents.

const (
	defaultLimit = 20
	maxLimit     = 1000
)

// indexPageBytes is the size at which an index page is full (a var so
// tests can make pages small): about 240 orders.
var indexPageBytes = 16 << 10

// The keys escape the ids in them (guest.Key): a user id holding ':' (say
// "alice:0") can never name another user's page, nor any key but its own.
// An id made only of ASCII letters, digits, '.', '_' and '-' (every order id,
// a UUID, and most user ids) is kept as it is, so the keys of such ids are
// those written before ids were escaped; the read model of any other user
// is rebuilt by replaying it (meshd events replay).
func viewKey(id string) string            { return guest.Key("rm", "order", id) }
func userKey(userID string) string        { return guest.Key("rm", "user", userID) }
func pageKey(userID string, k int) string { return guest.Key("rm", "user", userID, strconv.Itoa(k)) }

// isComplete reports whether a read-model document has the order's
// creation data (it may hold only a status when ORDER_PAID or
// ORDER_CANCELLED was projected first).
func isComplete(doc []byte) bool {
	o, err := parseOrder(doc)
	return err == nil && o.UserID != ""
}

// loadView reads the view of order id, stored under key (viewKey(id),
// which the caller passes on to storeView).
func loadView(e env, key, id string) (order, error) {
	stored, err := e.KVGet(key)
	if errors.Is(err, guest.ErrNotFound) {
		return order{ID: id}, nil
	}
	if err != nil {
		return order{}, errors.New("reading view of " + id + ": " + err.Error())
	}
	o, err := parseOrder(stored)
	if err != nil {
		return order{}, errors.New("view of " + id + " is corrupt: " + err.Error())
	}
	return o, nil
}

func storeView(e env, key string, o *order) error {
	if o.Status == "" {
		o.Status = statusCreated
	}
	if err := e.KVSet(key, orderJSON(o)); err != nil {
		return errors.New("storing view of " + o.ID + ": " + err.Error())
	}
	return nil
}

// projectCreated merges ORDER_CREATED into the view and the user's index.
func projectCreated(e env, data []byte) error {
	c, err := parseOrder(data)
	if err != nil || c.ID == "" || len(c.ID) > maxIDLen || c.UserID == "" {
		return errors.New(eventOrderCreated + ": invalid data")
	}
	key := viewKey(c.ID)
	v, err := loadView(e, key, c.ID)
	if err != nil {
		return err
	}
	// Creation fields come from the event; status fields stay as projected.
	v.UserID, v.Items, v.Total, v.CreatedAt = c.UserID, c.Items, c.Total, c.CreatedAt
	if err := storeView(e, key, &v); err != nil {
		return err
	}
	return indexAdd(e, c.UserID, c.CreatedAt+"\t"+c.ID)
}

// isFinal reports whether a status is terminal: a merge keeps it.
func isFinal(s string) bool { return s == statusPaid || s == statusCancelled }

func projectPaid(e env, data []byte) error {
	return projectFinal(e, data, eventOrderPaid, "payment_id", "paid_at", func(v *order, field1, field2 string) {
		v.Status, v.PaymentID, v.PaidAt = statusPaid, field1, field2
	})
}

func projectCancelled(e env, data []byte) error {
	return projectFinal(e, data, eventOrderCancelled, "reason", "cancelled_at", func(v *order, field1, field2 string) {
		v.Status, v.Reason, v.CancelledAt = statusCancelled, field1, field2
	})
}

// projectFinal merges an event that ends an order (its order_id and two
// more fields) into the order's view, unless the view already has a
// final status.
func projectFinal(e env, data []byte, typ, field1, field2 string, set func(v *order, field1, field2 string)) error {
	f, err := svcenv.Fields(data, "order_id", field1, field2)
	id := f[0]
	if err != nil || id == "" || len(id) > maxIDLen {
		return errors.New(typ + ": invalid data")
	}
	key := viewKey(id)
	v, err := loadView(e, key, id)
	if err != nil {
		return err
	}
	if !isFinal(v.Status) {
		set(&v, f[1], f[2])
	}
	return storeView(e, key, &v)
}

// userIndex is a user's paged index as read from the store.
type userIndex struct {
	e    env
	user string
	n    int // pages
	// legacy is the index as one document, as written before it had pages:
	// it serves as page 0 and is moved there at the first write.
	legacy []byte
}

// openIndex reads how many index pages the user has.
func openIndex(e env, userID string) (*userIndex, error) {
	x := &userIndex{e: e, user: userID}
	stored, err := e.KVGet(userKey(userID))
	if errors.Is(err, guest.ErrNotFound) {
		return x, nil
	}
	if err != nil {
		return nil, errors.New("reading index of user: " + err.Error())
	}
	if n, err := strconv.Atoi(string(stored)); err == nil && n >= 1 {
		x.n = n
		return x, nil
	}
	if !strings.Contains(string(stored), "\t") {
		return nil, errors.New("index of user is corrupt (rebuild the read model with meshd events replay)")
	}
	x.n, x.legacy = 1, stored
	return x, nil
}

// raw reads page k as stored.
func (x *userIndex) raw(k int) ([]byte, error) {
	if k == 0 && x.legacy != nil {
		return x.legacy, nil
	}
	stored, err := x.e.KVGet(pageKey(x.user, k))
	if err != nil && !errors.Is(err, guest.ErrNotFound) {
		return nil, errors.New("reading index page of user: " + err.Error())
	}
	return stored, nil
}

func (x *userIndex) page(k int) ([]string, error) {
	stored, err := x.raw(k)
	return splitLines(string(stored)), err
}

func (x *userIndex) writeRaw(k int, page []byte) error {
	if x.legacy != nil { // move the one-document index to page 0 first
		legacy := x.legacy
		x.legacy = nil
		if k != 0 {
			if err := x.writeRaw(0, legacy); err != nil {
				return err
			}
		}
		if err := x.e.KVSet(userKey(x.user), []byte("1")); err != nil {
			return errors.New("storing index of user: " + err.Error())
		}
	}
	if err := x.e.KVSet(pageKey(x.user, k), page); err != nil {
		return errors.New("storing index page of user: " + err.Error())
	}
	return nil
}

// pageFor walks back from the last page to the one whose range covers
// entry (its first line is not after entry), or page 0.
func (x *userIndex) pageFor(entry string) (int, []string, error) {
	last, err := x.raw(x.n - 1)
	if err != nil {
		return 0, nil, err
	}
	k, page, err := x.walkBack(entry, x.n-1, last)
	return k, splitLines(string(page)), err
}

// walkBack is pageFor from page k, already read as page.
func (x *userIndex) walkBack(entry string, k int, page []byte) (int, []byte, error) {
	var err error
	for k > 0 && (len(page) == 0 || entry < firstLine(page)) {
		k--
		if page, err = x.raw(k); err != nil {
			return k, nil, err
		}
	}
	return k, page, nil
}

// indexAdd inserts entry into the user's sorted, paged index (once).
func indexAdd(e env, userID, entry string) error {
	x, err := openIndex(e, userID)
	if err != nil {
		return err
	}
	if x.n == 0 {
		return x.newPage(entry)
	}
	last, err := x.raw(x.n - 1)
	if err != nil {
		return err
	}
	// The user's newest order after a full last page starts a new one.
	if tail := last[bytes.LastIndexByte(last, '\n')+1:]; len(last) >= indexPageBytes && entry > string(tail) {
		return x.newPage(entry)
	}
	// Otherwise into the page whose range covers it (nearly always the
	// last: orders created at once reach the stream in any order, but
	// close together), at its place found from the end without splitting
	// the page (in a Go guest every loop iteration over a 16 KiB page
	// costs).
	k, page, err := x.walkBack(entry, x.n-1, last)
	if err != nil {
		return err
	}
	page, found := insertLine(page, entry)
	if found {
		return nil
	}
	return x.writeRaw(k, page)
}

// firstLine returns the first line of a page.
func firstLine(page []byte) string {
	if i := bytes.IndexByte(page, '\n'); i >= 0 {
		return string(page[:i])
	}
	return string(page)
}

// insertLine returns page (sorted lines, '\n'-separated) with entry inserted
// in order, or page and true when it holds entry already. It walks back
// from the last line, where a new entry nearly always belongs, without
// splitting the page.
func insertLine(page []byte, entry string) ([]byte, bool) {
	end := len(page) // end of the line looked at
	for end > 0 {
		start := bytes.LastIndexByte(page[:end], '\n') + 1
		line := page[start:end]
		switch {
		case string(line) == entry:
			return page, true
		case string(line) < entry: // entry goes after this line
			return splice(page, end, "\n"+entry), false
		case start == 0: // entry is the first line
			return splice(page, 0, entry+"\n"), false
		}
		end = start - 1
	}
	return []byte(entry), false // an empty page
}

// splice returns a new page with s inserted at byte offset at.
func splice(page []byte, at int, s string) []byte {
	out := make([]byte, 0, len(page)+len(s))
	return append(append(append(out, page[:at]...), s...), page[at:]...)
}

// newPage adds page n holding entry, then counts it in the head. A page n
// left by an attempt that stopped between the two writes is merged, not
// overwritten.
func (x *userIndex) newPage(entry string) error {
	k := x.n
	page, err := x.raw(k)
	if err != nil {
		return err
	}
	page, _ = insertLine(page, entry)
	if err := x.writeRaw(k, page); err != nil {
		return err
	}
	if err := x.e.KVSet(userKey(x.user), []byte(strconv.Itoa(k+1))); err != nil {
		return errors.New("storing index of user: " + err.Error())
	}
	x.n = k + 1
	return nil
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// listUserOrders serves GET /users/{user_id}/orders?limit=&cursor=: the
// user's orders newest first. The cursor is opaque to clients: the
// base64url of the last index entry returned.
func listUserOrders(e env, w responder, userID, limitQ, cursorQ string) error {
	limit := defaultLimit
	if limitQ != "" {
		n, err := strconv.Atoi(limitQ)
		if err != nil || n < 1 || n > maxLimit {
			w.Problem(400, "invalid query", "limit must be an integer from 1 to "+strconv.Itoa(maxLimit))
			return nil
		}
		limit = n
	}
	var after string
	if cursorQ != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursorQ)
		if err != nil || !strings.Contains(string(b), "\t") {
			w.Problem(400, "invalid query", "cursor is not one this service returned")
			return nil
		}
		after = string(b)
	}
	if !utf8.ValidString(userID) {
		w.Problem(400, "invalid user id", "user_id is not valid UTF-8")
		return nil
	}
	// Find where to start: page k, entries before end (exclusive).
	k, end := -1, 0
	var lines []string
	var x *userIndex
	if userID != "" && len(userID) <= maxIDLen {
		var err error
		if x, err = openIndex(e, userID); err != nil {
			return err
		}
		if x.n > 0 {
			if after == "" {
				k = x.n - 1
				lines, err = x.page(k)
			} else {
				k, lines, err = x.pageFor(after)
			}
			if err != nil {
				return err
			}
			end = len(lines)
			if after != "" {
				end, _ = slices.BinarySearch(lines, after)
			}
		}
	}
	var jw jsonx.Writer
	jw.ObjectStart()
	jw.Key("orders")
	jw.ArrayStart()
	n := 0
	last := ""
	for k >= 0 && n < limit {
		if end == 0 { // this page is done: on to the older one
			if k--; k < 0 {
				break
			}
			var err error
			if lines, err = x.page(k); err != nil {
				return err
			}
			end = len(lines)
			continue
		}
		end--
		_, id, _ := strings.Cut(lines[end], "\t")
		doc, err := e.KVGet(viewKey(id))
		if err != nil {
			return errors.New("reading view of " + id + ": " + err.Error())
		}
		jw.Raw(doc)
		n++
		last = lines[end]
	}
	if k == 0 && end == 0 || k < 0 {
		last = "" // the oldest entry was served: no next page
	}
	jw.ArrayEnd()
	if last != "" {
		jw.StringField("next_cursor", base64.RawURLEncoding.EncodeToString([]byte(last)))
	}
	jw.ObjectEnd()
	w.JSON(200, jw.Bytes())
	return nil
}
