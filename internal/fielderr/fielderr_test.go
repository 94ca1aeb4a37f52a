package fielderr

import (
	"errors"
	"testing"
)

// TestError guards the one-line form of a FieldError: file:line: key: msg,
// leaving out what is not known.
func TestError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		e    FieldError
		want string
	}{
		{"everything", FieldError{"w.toml", 3, "route[2].backend", "bad"}, "w.toml:3: route[2].backend: bad"},
		{"no line", FieldError{"w.toml", 0, "route", "no routes"}, "w.toml: route: no routes"},
		{"a flag", FieldError{"-listen", 0, "listen", "bad"}, "-listen: listen: bad"},
		{"a syntax error", FieldError{"w.toml", 4, "", "expected value"}, "w.toml:4: expected value"},
		{"key only", FieldError{"", 0, "dial_timeout", "negative"}, "dial_timeout: negative"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestUnder guards Under: every FieldError in a join, nested or not, is
// re-keyed under the prefix as a copy; other errors pass as they are.
func TestUnder(t *testing.T) {
	t.Parallel()
	a := &FieldError{Key: "cert", Msg: "missing"}
	other := errors.New("other")
	err := Under("tls.", errors.Join(a, errors.Join(Errorf("acme.hosts", "%d", 1), other)))
	got := Flatten(err)
	if len(got) != 3 || got[0].Error() != "tls.cert: missing" || got[1].Error() != "tls.acme.hosts: 1" || got[2] != other {
		t.Errorf("got %v", got)
	}
	if a.Key != "cert" {
		t.Error("Under changed its argument")
	}
	if Under("tls.", nil) != nil || Flatten(nil) != nil {
		t.Error("nil is not nil")
	}
}
