package tlsconf

import "os"

// checkWritable passes every directory on Windows: there is no access(2),
// and whether this process may write a directory is up to its ACL, which
// only a write shows (this check creates nothing). A cache_dir that
// cannot be written shows when the first certificate is stored.
func checkWritable(string) error { return nil }

// processUser is who this process is, for errors; Windows has no uid.
func processUser() string { return "this user" }

// processGroup is a placeholder for a group in a hint: Windows grants
// reading by ACL, not by a group ID.
func processGroup() string { return "GROUP" }

// inode is 0 on Windows, where os.Stat gives no file ID: the certificate
// files' stamp is their size and modification time.
func inode(os.FileInfo) uint64 { return 0 }
