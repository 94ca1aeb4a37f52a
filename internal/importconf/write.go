package importconf

// What `import -o` writes, and how: certificates only, in new files of
// mode 0600 that no symlink or existing file at their names can redirect.

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// certificates returns the CERTIFICATE blocks of data, read from path, as
// PEM, and nothing else of it: no key, no text around the blocks. A file
// without one is an error.
func certificates(path string, data []byte) ([]byte, error) {
	var out []byte
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			out = append(out, pem.EncodeToMemory(b)...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: holds no PEM CERTIFICATE block: nothing is copied from it", path)
	}
	return out, nil
}

// refuseExisting fails if any of paths exists, as anything: a file, a
// folder or a symlink, dangling or not.
func refuseExisting(paths []string) error {
	var errs []error
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			errs = append(errs, fmt.Errorf("%s exists: -f replaces it", p))
		}
	}
	return errors.Join(errs...)
}

// writeFile writes data to path as a new file of mode 0600, through a
// temporary file in path's folder that is then linked to path: the link
// fails if anything is there, so a file or a symlink planted at path is
// never written through, and a reader never sees half a file. With force
// the temporary file is renamed over path instead, which replaces a
// symlink rather than following it.
func writeFile(path string, data []byte, force bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp") // O_EXCL, mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a link, the temporary name; after a rename, nothing
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if err1 := f.Close(); err == nil {
		err = err1
	}
	if err != nil {
		return err
	}
	if force {
		return os.Rename(tmp, path)
	}
	err = os.Link(tmp, path)
	switch {
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s exists: -f replaces it", path)
	case err != nil: // a file system without hard links: check, then rename
		if _, lerr := os.Lstat(path); lerr == nil {
			return fmt.Errorf("%s exists: -f replaces it", path)
		}
		return os.Rename(tmp, path)
	}
	return nil
}
