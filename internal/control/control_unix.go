//go:build unix

package control

import (
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

func notify() *Signals {
	hup, usr1, usr2 := make(chan os.Signal, 1), make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(hup, unix.SIGHUP)
	signal.Notify(usr1, unix.SIGUSR1)
	signal.Notify(usr2, unix.SIGUSR2)
	return &Signals{Reload: hup, Reopen: usr1, Upgrade: usr2, stop: func() {
		signal.Stop(hup)
		signal.Stop(usr1)
		signal.Stop(usr2)
	}}
}

func supported(string) error { return nil }

// actions are -s's actions and the signals they send.
var actions = map[string]unix.Signal{"reload": unix.SIGHUP, "stop": unix.SIGTERM, "upgrade": unix.SIGUSR2}

func kill(pid int, action string) error { return unix.Kill(pid, actions[action]) }
