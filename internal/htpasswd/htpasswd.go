// Package htpasswd reads an htpasswd file of bcrypt entries, as Apache's
// `htpasswd -B` writes them, and checks a request's basic credentials
// against it: wssproxy's route basic_auth and admin basic_auth. Other
// hashes (MD5-crypt "$apr1$", SHA1 "{SHA}", crypt(3), plain text) are
// refused when the file is read: they are fast enough to guess offline.
package htpasswd

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// File is one htpasswd file as read: a reload reads it again.
type File struct {
	users map[string][]byte // user → bcrypt hash

	// A bcrypt comparison costs tens of milliseconds of CPU, which would
	// make every reconnect of a browser that keeps its credentials that
	// costly, and a flood of them a cheap way to load the proxy. Pairs
	// found good are remembered (by a hash of user, password and entry) for
	// the file's life; wrong ones never.
	mu   sync.Mutex
	good map[[sha256.Size]byte]struct{}

	// dummy is compared against for an unknown user, so that the answer
	// takes as long as for a known one: a hash of the first entry's cost.
	dummy func() []byte
}

// maxGood bounds the pairs remembered; past it, they are forgotten.
const maxGood = 4096

// Read reads file, refusing an entry that is not bcrypt with its file,
// line and user.
func Read(file string) (*File, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	h := &File{users: map[string][]byte{}, good: map[[sha256.Size]byte]struct{}{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%s:%d: not a user:hash line", file, n)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil || !strings.HasPrefix(hash, "$2") {
			return nil, fmt.Errorf("%s:%d: user %q: not a bcrypt hash; write the file with htpasswd -B", file, n, user)
		}
		if h.dummy == nil {
			h.dummy = sync.OnceValue(func() []byte {
				d, _ := bcrypt.GenerateFromPassword([]byte("wssproxy"), cost)
				return d
			})
		}
		if _, dup := h.users[user]; dup {
			return nil, fmt.Errorf("%s:%d: user %q is listed twice", file, n, user)
		}
		h.users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(h.users) == 0 {
		return nil, fmt.Errorf("%s: no users", file)
	}
	return h, nil
}

// Check returns r's user if its Authorization header has a password the
// file holds for that user.
func (h *File) Check(r *http.Request) (string, bool) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	hash, known := h.users[user]
	if !known {
		bcrypt.CompareHashAndPassword(h.dummy(), []byte(pass))
		return "", false
	}
	sum := sha256.Sum256([]byte(user + "\x00" + pass + "\x00" + string(hash)))
	h.mu.Lock()
	_, good := h.good[sum]
	h.mu.Unlock()
	if good {
		return user, true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return "", false
	}
	h.mu.Lock()
	if len(h.good) >= maxGood {
		clear(h.good)
	}
	h.good[sum] = struct{}{}
	h.mu.Unlock()
	return user, true
}
