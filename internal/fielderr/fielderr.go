// Package fielderr holds FieldError, the one error type of wssproxy's
// configuration. Packages proxy and tlsconf report each problem with a
// Config as a FieldError naming its key (and alias the type as their own
// FieldError); the file loader (internal/config) reports decode errors the
// same way and fills in the file and line of every error it is given.
package fielderr

import (
	"errors"
	"fmt"
	"strconv"
)

// FieldError is one problem with one configuration key.
type FieldError struct {
	// File is where the value was written: the configuration file, or the
	// flag or environment variable that set it ("-listen",
	// "WSSPROXY_ROUTE"). Empty where only the Config is known.
	File string
	// Line is File's 1-based line that sets Key (or, for a key that is
	// missing, its table); 0 when unknown.
	Line int
	// Key names the key as it is written in the file, with 1-based
	// indexes for arrays of tables: "route[2].backend". Empty for a
	// syntax error, which has no key.
	Key string
	// Msg says what is wrong, and where it can, what would be right.
	Msg string
}

// Error is "file:line: key: msg", leaving out what is not known.
func (e *FieldError) Error() string {
	var b []byte
	if e.File != "" {
		b = append(b, e.File...)
		if e.Line > 0 {
			b = append(b, ':')
			b = strconv.AppendInt(b, int64(e.Line), 10)
		}
		b = append(b, ": "...)
	}
	if e.Key != "" {
		b = append(b, e.Key...)
		b = append(b, ": "...)
	}
	return string(append(b, e.Msg...))
}

// Errorf returns a *FieldError for key with a formatted message.
func Errorf(key, format string, args ...any) error {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns a *FieldError for key whose message is err's text.
func Wrap(key string, err error) error {
	return &FieldError{Key: key, Msg: err.Error()}
}

// Flatten lists the leaves of errors joined with errors.Join (nested
// joins included), in order. A nil err has none.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, Flatten(e)...)
	}
	return out
}

// Under returns err with the key of every FieldError in it put under
// prefix ("tls."), for a section whose package names keys relative to it.
// Other errors pass unchanged; the FieldErrors in err are not modified.
func Under(prefix string, err error) error {
	var out []error
	for _, e := range Flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			c := *fe
			c.Key = prefix + c.Key
			e = &c
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}
