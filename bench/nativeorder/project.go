package nativeorder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
)

// indexPageBytes is the order plugin's: the size of a full index page.
const indexPageBytes = 16 << 10

// Projector is the order plugin's read-model projection of ORDER_CREATED,
// done natively on the same store layout (plugins/order/readmodel.go): the
// order's view merged and stored, and its entry inserted into the user's
// paged index. With -project, `make loadtest` runs it as a consumer of
// the native service's own ORDER_CREATED, as meshd runs the plugin's.
type Projector struct {
	Store *kv.Store
	// Lock, when set, is held around the projection of an order with its
	// user's id (the Saga's lock per user).
	Lock func(user string) (unlock func())
}

func (p Projector) Handle(ctx context.Context, ev bus.Event) error {
	var o order
	if err := json.Unmarshal(ev.Data, &o); err != nil || o.ID == "" || o.UserID == "" {
		return errors.New("ORDER_CREATED: invalid data")
	}
	if p.Lock != nil {
		defer p.Lock(o.UserID)()
	}
	viewKey := "rm:order:" + o.ID
	v := o
	if stored, err := p.Store.Get(ctx, viewKey); err == nil {
		// A final status projected first stays, with its fields; the
		// creation fields come from the event. (Decoded into a fresh
		// order: into the copy of o it would reuse o.Items' array.)
		v = order{}
		if err := json.Unmarshal(stored, &v); err != nil {
			return err
		}
		v.UserID, v.Items, v.Total, v.CreatedAt = o.UserID, o.Items, o.Total, o.CreatedAt
		if v.Status == "" {
			v.Status = o.Status
		}
	} else if !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	view, _ := json.Marshal(&v)
	if err := p.Store.Put(ctx, viewKey, view); err != nil {
		return err
	}
	return p.indexAdd(ctx, o.UserID, o.CreatedAt+"\t"+o.ID)
}

func (p Projector) indexAdd(ctx context.Context, user, entry string) error {
	head := "rm:user:" + user
	n := 0
	if stored, err := p.Store.Get(ctx, head); err == nil {
		if n, err = strconv.Atoi(string(stored)); err != nil {
			return err
		}
	} else if !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	page := func(k int) ([]string, error) {
		stored, err := p.Store.Get(ctx, head+":"+strconv.Itoa(k))
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return nil, err
		}
		if len(stored) == 0 {
			return nil, nil
		}
		return strings.Split(string(stored), "\n"), nil
	}
	if n > 0 { // the order plugin's fast path: the newest entry goes last
		last, err := p.Store.Get(ctx, head+":"+strconv.Itoa(n-1))
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		if tail := last[bytes.LastIndexByte(last, '\n')+1:]; len(last) > 0 && entry >= string(tail) {
			switch {
			case entry == string(tail):
				return nil
			case len(last) >= indexPageBytes:
				if err := p.Store.Put(ctx, head+":"+strconv.Itoa(n), []byte(entry)); err != nil {
					return err
				}
				return p.Store.Put(ctx, head, []byte(strconv.Itoa(n+1)))
			}
			return p.Store.Put(ctx, head+":"+strconv.Itoa(n-1), append(append(last, '\n'), entry...))
		}
	}
	k := max(n-1, 0)
	lines, err := page(k)
	for err == nil && k > 0 && (len(lines) == 0 || entry < lines[0]) {
		k--
		lines, err = page(k)
	}
	if err != nil {
		return err
	}
	i, found := slices.BinarySearch(lines, entry)
	if found {
		return nil
	}
	if n == 0 || k == n-1 && i == len(lines) && len(strings.Join(lines, "\n")) >= indexPageBytes {
		if n > 0 {
			k, lines, i = n, nil, 0
		}
		if err := p.Store.Put(ctx, head+":"+strconv.Itoa(k), []byte(entry)); err != nil {
			return err
		}
		return p.Store.Put(ctx, head, []byte(strconv.Itoa(k+1)))
	}
	lines = slices.Insert(lines, i, entry)
	return p.Store.Put(ctx, head+":"+strconv.Itoa(k), []byte(strings.Join(lines, "\n")))
}
