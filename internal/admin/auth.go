package admin

import "net/http"

// guard asks for a user of admin basic_auth on every endpoint but
// /healthz, which says no more than "ok" and which wssproxy health and
// liveness probes read without credentials.
func (o Options) guard(next http.Handler) http.Handler {
	if o.BasicAuth == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if f := o.BasicAuth(); f != nil && req.URL.Path != "/healthz" {
			if _, ok := f.Check(req); !ok {
				w.Header().Set("WWW-Authenticate", `Basic realm="wssproxy admin", charset="UTF-8"`)
				http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(w, req)
	})
}
