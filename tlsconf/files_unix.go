//go:build unix

package tlsconf

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkWritable says whether this process may write the directory dir,
// by access(2): without creating anything.
func checkWritable(dir string) error {
	if unix.Access(dir, unix.W_OK) != nil {
		return fmt.Errorf("%s is not writable by this user (uid %d); certificates are cached there", dir, os.Getuid())
	}
	return nil
}

// processUser is who this process is, for errors: "uid 65532 (gid 65532)".
func processUser() string {
	return fmt.Sprintf("uid %d (gid %d)", os.Geteuid(), os.Getegid())
}

// processGroup is this process's group ID, for a chgrp in a hint.
func processGroup() string { return fmt.Sprint(os.Getegid()) }

// inode is fi's inode number: a certificate file replaced by a rename
// (certbot's symlinks, Kubernetes' secret volumes) has a new one even
// when its size and modification time look the same.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
