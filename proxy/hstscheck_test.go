package proxy

import (
	"strings"
	"testing"
)

// TestCheckHSTS guards which Strict-Transport-Security values the hsts key
// accepts: RFC 6797's max-age, includeSubDomains and preload in any case
// and spacing; nothing misspelt, repeated, valueless where a value is
// needed, or able to break the header line.
func TestCheckHSTS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, value, err string // err: "" when accepted
	}{
		{"max-age only", "max-age=31536000", ""},
		{"with subdomains", "max-age=31536000; includeSubDomains", ""},
		{"preload", "max-age=63072000; includeSubDomains; preload", ""},
		{"case and spacing", "  MAX-AGE = 600 ;includesubdomains;  ", ""},
		{"quoted max-age", `max-age="600"`, ""},
		{"zero: browsers forget the host", "max-age=0", ""},
		{"empty", "", "missing max-age"},
		{"no max-age", "includeSubDomains", "missing max-age"},
		{"Go duration", "max-age=8760h", "number of seconds"},
		{"negative", "max-age=-1", "number of seconds"},
		{"plus sign", "max-age=+1", "number of seconds"},
		{"no value", "max-age", "number of seconds"},
		{"typo", "max-age=600; includeSubDomain", "unknown directive"},
		{"header name included", "Strict-Transport-Security: max-age=600", "unknown directive"},
		{"twice", "max-age=600; max-age=700", "appears twice"},
		{"value on a flag", "max-age=600; preload=yes", "takes no value"},
		{"preload without subdomains", "max-age=31536000; preload", "preload needs"},
		{"preload too short", "max-age=600; includeSubDomains; preload", "preload needs"},
		{"line break", "max-age=600\r\n; includeSubDomains", "line break"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkHSTS(tc.value)
			if tc.err == "" && err != nil {
				t.Errorf("%q refused: %v", tc.value, err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("%q: got %v, want an error with %q", tc.value, err, tc.err)
			}
		})
	}
}
