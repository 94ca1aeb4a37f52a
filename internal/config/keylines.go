package config

import (
	"fmt"
	"strings"
)

// keyLineIndex maps keys as errors name them ("listen", "tls.cert",
// "route[2].backend") to the line that sets them. The TOML library
// (BurntSushi/toml v1.6.0) does not expose positions of valid keys: its
// MetaData keeps them unexported, and per key without the array index, so
// the second [[route]]'s path has the last one's line. This is a small
// scanner that knows just enough TOML to follow tables, arrays of tables,
// strings and multi-line values; the file has parsed before it runs.
type keyLineIndex map[string]int

// find returns the line of key, or of its nearest enclosing key or table
// when key itself is not in the file (a missing key is reported at its
// table). 0 means unknown.
func (idx keyLineIndex) find(key string) int {
	for key != "" {
		if l, ok := idx[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// alias indexes the keys under table as under as well.
func (idx keyLineIndex) alias(table, as string) {
	for k, l := range idx {
		if rest, ok := strings.CutPrefix(k, table); ok && (rest == "" || rest[0] == '.') {
			if _, set := idx[as+rest]; !set {
				idx[as+rest] = l
			}
		}
	}
}

func keyLines(src string) keyLineIndex {
	idx := make(keyLineIndex)
	arrays := make(map[string]int) // array-of-tables path → elements so far
	table := ""
	var sc lineScanner
	for n, line := range strings.Split(src, "\n") {
		rest, ok := sc.resume(line)
		if !ok {
			continue // still inside a multi-line string or value
		}
		t := strings.TrimSpace(rest)
		switch {
		case t == "" || t[0] == '#':
		case strings.HasPrefix(t, "[["):
			name := indexed(arrays, splitKey(headerBody(t[2:])), true)
			arrays[name]++
			table = fmt.Sprintf("%s[%d]", name, arrays[name])
			setLine(idx, name, n+1) // the array: its first element
			setLine(idx, table, n+1)
		case t[0] == '[':
			table = indexed(arrays, splitKey(headerBody(t[1:])), false)
			setLine(idx, table, n+1)
		default:
			k, v, found := cutKey(t)
			if !found {
				continue
			}
			full := strings.Join(splitKey(k), ".")
			if table != "" {
				full = table + "." + full
			}
			setLine(idx, full, n+1)
			sc.scan(v)
		}
	}
	return idx
}

// setLine records key and its dotted parents at line, keeping the first.
func setLine(idx keyLineIndex, key string, line int) {
	for {
		if _, ok := idx[key]; !ok {
			idx[key] = line
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return
		}
		key = key[:i]
	}
}

// indexed turns a table path into its indexed form: under [[route]],
// [route.x] is route[N].x. The last part stays bare for an [[array]] header,
// which names the array itself.
func indexed(arrays map[string]int, parts []string, lastBare bool) string {
	out := ""
	for i, p := range parts {
		if out != "" {
			out += "."
		}
		out += p
		if n := arrays[out]; n > 0 && !(lastBare && i == len(parts)-1) {
			out = fmt.Sprintf("%s[%d]", out, n)
		}
	}
	return out
}

// headerBody is the text of a table header up to its closing bracket.
func headerBody(s string) string {
	var sc lineScanner
	for i := 0; i < len(s); i++ {
		if sc.quote == 0 && s[i] == ']' {
			return s[:i]
		}
		sc.step(s, &i)
	}
	return s
}

// cutKey splits "key = value" at the first '=' outside quotes.
func cutKey(s string) (key, value string, ok bool) {
	var sc lineScanner
	for i := 0; i < len(s); i++ {
		if sc.quote == 0 && s[i] == '=' {
			return s[:i], s[i+1:], true
		}
		sc.step(s, &i)
	}
	return "", "", false
}

// splitKey splits a dotted key, unquoting its parts.
func splitKey(k string) []string {
	var parts []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == '"' && c == '\\' && i+1 < len(k):
			i++
			cur.WriteByte(k[i])
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c != ' ' && c != '\t':
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

// lineScanner follows quotes, multi-line strings and brackets across lines,
// so that a line inside a multi-line value is never taken for a key.
type lineScanner struct {
	quote  byte   // open single-line quote
	triple string // open multi-line string delimiter
	depth  int    // open [ and { of a value
}

// resume consumes what is left of an open multi-line value on line. It
// returns the rest of the line and true when the line starts a new
// statement.
func (sc *lineScanner) resume(line string) (string, bool) {
	if sc.triple == "" && sc.depth == 0 {
		return line, true
	}
	sc.scan(line)
	return "", false
}

// scan follows a value to the end of line, stopping at a comment.
func (sc *lineScanner) scan(s string) {
	sc.quote = 0 // single-line strings end with the line
	for i := 0; i < len(s); i++ {
		if sc.triple == "" && sc.quote == 0 {
			switch s[i] {
			case '#':
				return
			case '[', '{':
				sc.depth++
			case ']', '}':
				if sc.depth > 0 {
					sc.depth--
				}
			}
		}
		sc.step(s, &i)
	}
}

// step advances through quotes at s[*i].
func (sc *lineScanner) step(s string, i *int) {
	c := s[*i]
	switch {
	case sc.triple != "":
		if strings.HasPrefix(s[*i:], sc.triple) {
			*i += 2
			sc.triple = ""
		} else if c == '\\' && sc.triple == `"""` {
			*i++
		}
	case sc.quote != 0:
		if c == sc.quote {
			sc.quote = 0
		} else if c == '\\' && sc.quote == '"' {
			*i++
		}
	case strings.HasPrefix(s[*i:], `"""`) || strings.HasPrefix(s[*i:], `'''`):
		sc.triple = s[*i : *i+3]
		*i += 2
	case c == '"' || c == '\'':
		sc.quote = c
	}
}
