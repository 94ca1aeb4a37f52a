// Package control is how a running wssproxy is told what to do from
// outside, as nginx is: its pid_file, the signals it handles, and -s,
// which sends them. SIGHUP reloads the configuration and certificates,
// SIGUSR1 reopens log_file (logrotate's "create" style), SIGUSR2 hands
// the process over to a new binary (internal/handover); SIGINT and
// SIGTERM, which stop it, are main's.
//
// Signals are Unix's: on Windows, Notify's channels never deliver and
// Send says it is not supported (control_windows.go). The process serves
// there all the same; certificate files are still re-read when they
// change (tlsconf's Watch), and a configuration change needs a restart.
package control

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Signals are the signals a serving process handles, each on a channel of
// its own (one signal buffered). A nil channel (a signal the platform
// does not have) never delivers.
type Signals struct {
	Reload  <-chan os.Signal // SIGHUP: re-read the configuration and certificates
	Reopen  <-chan os.Signal // SIGUSR1: reopen log_file
	Upgrade <-chan os.Signal // SIGUSR2: hand over to the binary at this process's path

	stop func()
}

// Notify starts delivering the signals. Call it before anything is logged:
// the default action of SIGHUP and SIGUSR1 is to end the process, and
// logrotate or an operator may send one as soon as the log shows it runs.
// One sent early waits in its channel.
func Notify() *Signals { return notify() }

// Stop stops delivering; the signals' default actions apply again.
func (s *Signals) Stop() { s.stop() }

// Send sends -s's action ("reload", "stop" or "upgrade") to the process
// whose ID pidFile holds.
func Send(action, pidFile string) error {
	if err := supported(action); err != nil {
		return err
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("-s %s: %w (is wssproxy running with this configuration?)", action, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("-s %s: %s does not hold a process ID", action, pidFile)
	}
	if err := kill(pid, action); err != nil {
		return fmt.Errorf("-s %s: process %d from %s: %w (stale pid_file?)", action, pid, pidFile, err)
	}
	return nil
}

// WritePidFile writes this process's ID to path; "" writes nothing.
func WritePidFile(path string) error {
	if path == "" {
		return nil
	}
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// RemovePidFile removes path, if there is one.
func RemovePidFile(path string) {
	if path != "" {
		os.Remove(path)
	}
}
