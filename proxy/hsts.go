package proxy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// checkHSTS checks a Strict-Transport-Security header value (RFC 6797
// §6.1): max-age in seconds, required; includeSubDomains and preload
// optional, without values; each directive once, names in any case. Other
// directives are refused although browsers would ignore them, because a
// misspelt "includeSubDomain" would silently protect less than meant.
// preload needs includeSubDomains and a max-age of at least a year, which
// the browsers' preload list requires.
func checkHSTS(v string) error {
	if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
		return errors.New("contains a line break or control character")
	}
	seen := map[string]bool{}
	maxAge := int64(-1)
	for _, d := range strings.Split(v, ";") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		name, value, hasValue := strings.Cut(d, "=")
		name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
		if seen[name] {
			return fmt.Errorf("directive %q appears twice", name)
		}
		seen[name] = true
		switch name {
		case "max-age":
			value = strings.TrimSuffix(strings.TrimPrefix(value, `"`), `"`)
			n, err := strconv.ParseInt(value, 10, 64)
			if !hasValue || err != nil || n < 0 || strings.ContainsAny(value, "+-") {
				return fmt.Errorf(`max-age must be a number of seconds, like "max-age=31536000", got %q`, d)
			}
			maxAge = n
		case "includesubdomains", "preload":
			if hasValue {
				return fmt.Errorf("%s takes no value, got %q", name, d)
			}
		default:
			return fmt.Errorf("unknown directive %q: the directives are max-age, includeSubDomains and preload", d)
		}
	}
	switch {
	case maxAge < 0:
		return errors.New(`missing max-age: write e.g. "max-age=31536000; includeSubDomains"`)
	case seen["preload"] && (!seen["includesubdomains"] || maxAge < 31536000):
		return errors.New("preload needs includeSubDomains and max-age of at least 31536000 (one year), as the browsers' preload list requires")
	}
	return nil
}
