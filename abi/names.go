package abi

// ServiceNamePattern is the rule for service names, as a regular
// expression for messages: the module file's name without ".wasm"; it
// names the service's KV bucket, its durable consumers and the source of
// its events.
const ServiceNamePattern = `^[a-z0-9][a-z0-9_-]{0,62}$`

// ValidServiceName reports whether name matches ServiceNamePattern. (A
// loop rather than a regexp: the guest SDK links this package.)
func ValidServiceName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
