package config

import (
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// lineIndex maps key paths ("server.idle_timeout", "policy[1].rate",
// "auth.keys.keys") to the line that sets them, from a light scan of the
// file: table headers, array-of-table headers and "key =" lines. Keys set
// through inline tables or dotted keys fall back to their table's line.
type lineIndex map[string]int

func locate(src string) lineIndex {
	idx := lineIndex{}
	arrays := map[string]int{} // array-of-tables name → count seen
	table := ""
	for i, raw := range strings.Split(src, "\n") {
		n := i + 1
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#':
			continue
		case strings.HasPrefix(line, "[["):
			end := strings.Index(line, "]]")
			if end < 0 {
				continue
			}
			name := normKey(line[2:end])
			table = name + "[" + strconv.Itoa(arrays[name]) + "]"
			arrays[name]++
			setFirst(idx, table, n)
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				continue
			}
			table = normKey(line[1:end])
			// A sub-table of the last array element: [policy.limits]
			for name, count := range arrays {
				if strings.HasPrefix(table, name+".") {
					table = name + "[" + strconv.Itoa(count-1) + "]" + table[len(name):]
				}
			}
			setFirst(idx, table, n)
		default:
			eq := strings.IndexByte(line, '=')
			if eq <= 0 {
				continue
			}
			key := normKey(line[:eq])
			if table != "" {
				key = table + "." + key
			}
			setFirst(idx, key, n)
		}
	}
	return idx
}

func setFirst(idx lineIndex, key string, n int) {
	if _, ok := idx[key]; !ok {
		idx[key] = n
	}
}

// normKey turns a TOML key as written ("a . \"b\"") into "a.b".
func normKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) >= 2 && (p[0] == '"' || p[0] == '\'') && p[len(p)-1] == p[0] {
			p = p[1 : len(p)-1]
		}
		parts[i] = p
	}
	return strings.Join(parts, ".")
}

// line returns the line of key, or of its nearest enclosing table found,
// or 0.
func (idx lineIndex) line(key string) int {
	for key != "" {
		if n, ok := idx[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// keyPath turns an undecoded toml.Key into a path with array indexes
// where the scan of the file can tell them: BurntSushi's keys drop the
// index of array-of-tables elements, so the first element holding the
// key is named.
func keyPath(k toml.Key, idx lineIndex) string {
	path := ""
	for i, part := range k {
		next := part
		if path != "" {
			next = path + "." + part
		}
		// Is next an array of tables? Find the element that has the rest.
		if _, ok := idx[next+"[0]"]; ok && i < len(k)-1 {
			rest := strings.Join(k[i+1:], ".")
			chosen := next + "[0]"
			for j := 0; ; j++ {
				el := next + "[" + strconv.Itoa(j) + "]"
				if _, ok := idx[el]; !ok {
					break
				}
				if _, ok := idx[el+"."+rest]; ok {
					chosen = el
					break
				}
			}
			path = chosen
			continue
		}
		path = next
	}
	return path
}
