//go:build unix

package importconf

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestImportRefusesFIFO guards that an include of a named pipe is refused
// by name, without opening it: opening a FIFO to read waits for a writer,
// and none comes.
func TestImportRefusesFIFO(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.conf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	conf := write(t, dir, "nginx.conf", "events {}\ninclude fifo.conf;\n")
	_, err := importOrHang(t, conf, Options{})
	for _, w := range []string{"nginx.conf:2: include fifo.conf", "not a regular file"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("got %v\nwant an error with %q", err, w)
		}
	}
}
