// Package importconf translates an nginx or Apache httpd configuration into
// wssproxy's TOML: `wssproxy import FILE`. It reads the server blocks (or
// virtual hosts), their locations and proxy_pass (ProxyPass) lines,
// upstreams, certificates and the forwarding settings, and writes the
// routes and keys that do the same. Whatever it changes or drops becomes a
// Note with the file and line it came from, so nothing is lost silently.
//
// Both languages are read by small tokenizers here rather than a
// library: every message needs a line number, includes need globs, and
// broken input needs an error that says where (docs/dependencies.md).
//
// Input is hostile until read: only regular files, within bounds on
// bytes, files, directives, nesting and routes (include.go), in time
// linear in its size; `-o` writes certificates only, to new files of mode
// 0600 (write.go).
package importconf
