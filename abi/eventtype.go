package abi

import "errors"

// MaxEventTypeLen is the longest event type.
const MaxEventTypeLen = 128

// ValidEventType reports why typ cannot be an event type, or nil. An event
// type is one or more tokens of letters, digits, '_' and '-' separated by
// single dots ("ORDER_CREATED", "order.created"), at most MaxEventTypeLen
// bytes: each token becomes a NATS subject token, so wildcards, spaces and
// empty tokens are excluded. The guest SDK, the host's publish and the
// event bus all apply this one rule.
func ValidEventType(typ string) error {
	switch {
	case typ == "":
		return errors.New("event type is empty")
	case len(typ) > MaxEventTypeLen:
		return errors.New("event type is longer than 128 bytes")
	}
	token := 0 // length of the current token
	for i := 0; i < len(typ); i++ {
		switch c := typ[i]; {
		case c == '.':
			if token == 0 {
				return errors.New("event type has an empty dot-separated token")
			}
			token = 0
			continue
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return errors.New("event type may hold only letters, digits, '_', '-' and dots between tokens")
		}
		token++
	}
	if token == 0 {
		return errors.New("event type has an empty dot-separated token")
	}
	return nil
}
