package config

import (
	"fmt"
	"slices"
	"strings"
)

// checkSchemes reports each backend written without a scheme, with the
// URL it was meant to be. Go's URL parser has only its own words for
// these ("first path segment in URL cannot contain colon" for
// 127.0.0.1:8282; localhost:8282 parses as the scheme "localhost"),
// which say nothing of the fix. The key is marked failed, so the proxy's
// error about the same value is left out.
func (l *Loaded) checkSchemes() {
	for i, r := range l.Routes {
		key := indexKey("route", i)
		if r.Backend != "" {
			l.noScheme(key+".backend", r.Backend)
		}
		for _, b := range r.Backends {
			u, _, _ := strings.Cut(strings.TrimSpace(b), " ") // "ws://… weight=2"
			l.noScheme(key+".backends", u)
		}
	}
}

func (l *Loaded) noScheme(key, v string) {
	if strings.Contains(v, "://") || l.failed[key] {
		return
	}
	msg := fmt.Sprintf("%q has no scheme: write %q (wss:// if the backend itself speaks TLS)", v, "ws://"+v)
	switch scheme, rest, _ := strings.Cut(v, ":"); {
	case strings.HasPrefix(v, "/"):
		msg = fmt.Sprintf("%q is a path: a unix socket backend is %q", v, "ws+unix://"+v)
	case slices.Contains([]string{"ws", "wss", "http", "https"}, strings.ToLower(scheme)): // ws:host:port
		msg = fmt.Sprintf("%q lacks the // after its scheme: write %q", v, strings.ToLower(scheme)+"://"+strings.TrimLeft(rest, "/"))
	}
	l.errs = append(l.errs, &FieldError{Key: key, Msg: msg})
	l.failed[key] = true
}
