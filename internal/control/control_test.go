//go:build unix

package control

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestSendDelivers guards -s reload and -s upgrade: the signal sent to the
// process in pid_file arrives on that process's Reload or Upgrade channel.
// Not parallel: signals are the process's.
func TestSendDelivers(t *testing.T) {
	sigs := Notify()
	defer sigs.Stop()
	pidFile := filepath.Join(t.TempDir(), "wssproxy.pid")
	if err := WritePidFile(pidFile); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		action string
		ch     <-chan os.Signal
	}{
		{"reload is SIGHUP", "reload", sigs.Reload},
		{"upgrade is SIGUSR2", "upgrade", sigs.Upgrade},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Send(tc.action, pidFile); err != nil {
				t.Fatal(err)
			}
			ctx := testutil.Context(t, 10*time.Second)
			select {
			case <-tc.ch:
			case <-ctx.Done():
				t.Fatalf("-s %s: no signal on its channel", tc.action)
			}
		})
	}
}

// TestSendErrors guards -s's messages when pid_file does not lead to a
// process: each names the action and the file.
func TestSendErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pid")
	os.WriteFile(garbage, []byte("not a pid\n"), 0o600)
	for _, tc := range []struct {
		name, pidFile, want string
	}{
		{"no pid_file", filepath.Join(dir, "missing.pid"), "-s reload: open " + dir},
		{"not a process ID", garbage, "-s reload: " + garbage + " does not hold a process ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Send("reload", tc.pidFile)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Send = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestRemovePidFile guards the pid_file's end: written with this
// process's ID and a newline, removed at exit; "" does nothing.
func TestRemovePidFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wssproxy.pid")
	if err := WritePidFile(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("pid_file holds %q, want this process's ID %d", b, os.Getpid())
	}
	RemovePidFile(path)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("pid_file still there: %v", err)
	}
	if err := WritePidFile(""); err != nil {
		t.Error(err)
	}
	RemovePidFile("")
}
