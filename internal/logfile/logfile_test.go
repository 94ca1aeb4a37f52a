package logfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReopen guards logrotate's "create" style: after the file is moved
// away, writes still go to the moved file until Reopen, then to a new file
// at the path.
func TestReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path, moved := filepath.Join(dir, "wssproxy.log"), filepath.Join(dir, "wssproxy.log.1")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write([]byte("one\n"))
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	l.Write([]byte("two\n"))
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Write([]byte("three\n"))
	for _, tc := range []struct{ name, path, want string }{
		{"moved file", moved, "one\ntwo\n"},
		{"new file", path, "three\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(tc.path)
			if err != nil || string(b) != tc.want {
				t.Errorf("%s: %q, %v; want %q", tc.path, b, err, tc.want)
			}
		})
	}
}
