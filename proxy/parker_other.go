//go:build !linux

package proxy

// Parking needs epoll (parker_linux.go); elsewhere pumps wait in the
// runtime's poller.

func parkingWorks() bool        { return false }
func watch(*side) bool          { return false }
func unwatch(*side)             {}
func forEachParked(func(*side)) {}
