package importconf

// Reading the configuration: includes, and the bounds that keep hostile
// or mistaken input (/dev/zero, a FIFO, an include fan-out, a file of
// braces) from hanging the import or exhausting memory.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// The bounds of one import, far above real configurations (a large
// distribution's nginx or httpd tree is a few hundred files, well under a
// megabyte, nested a few blocks deep) and low enough that the import's
// time and memory stay proportional to what it reads. Each error that
// reports one names it and the file and line it was met at.
const (
	maxFileBytes    = 8 << 20   // one file
	maxTotalBytes   = 32 << 20  // all files read by one import
	maxFiles        = 10_000    // files read; an included file counts each time it is read
	maxIncludeDepth = 16        // include inside include
	maxBlockDepth   = 100       // blocks (nginx) or sections (httpd) inside one another, in one file
	maxDirectives   = 1_000_000 // directives in all files
	maxRoutes       = 100_000   // routes made
	maxSettings     = 2_000_000 // inherited settings read by the routes (each location reads every proxy_set_header around it)
)

// mib writes a byte count of the bounds above.
func mib(n int) string { return fmt.Sprintf("%d MiB", n>>20) }

// errTooLarge is a file longer than readRegular was allowed to read.
var errTooLarge = errors.New("importconf: file too large")

// readRegular reads the regular file at path, at most max bytes of it.
// Anything else is refused before it is opened: a FIFO's open waits for a
// writer, /dev/zero never ends, and both stat with size 0. The open is
// non-blocking and checked again, for a file swapped in between, and the
// limit is enforced while reading: a size from stat bounds nothing
// (/proc's files stat as 0 bytes too).
func readRegular(path string, max int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, errTooLarge
	}
	return data, nil
}

func notRegular(path string, m fs.FileMode) error {
	kind := "a " + m.Type().String()
	switch {
	case m.IsDir():
		kind = "a folder"
	case m&fs.ModeNamedPipe != 0:
		kind = "a named pipe"
	case m&fs.ModeDevice != 0:
		kind = "a device"
	case m&fs.ModeSocket != 0:
		kind = "a socket"
	}
	return fmt.Errorf("%s: not a regular file (%s)", path, kind)
}

// expander follows includes: nginx's "include", httpd's "Include" and
// "IncludeOptional", with globs. A relative pattern is looked up beside
// the file being imported (nginx and httpd resolve against their
// configuration folder, which that usually is), then beside the file that
// includes it, then in the imported file's parent folder (for a file in
// sites-enabled/ or conf.d/). It reads every file, the imported one too,
// and counts them against the bounds.
type expander struct {
	top        string                                                     // the imported file
	parse      func(file string, data []byte, limit int) ([]*node, error) // limit: directives it may make
	isInc      func(name string) bool
	note       func(n *node, format string, args ...any)
	stack      []string
	files      int   // read so far
	bytes      int64 // read so far
	directives int   // parsed so far
}

// read reads one file within the bounds on one file and on the import.
func (e *expander) read(path string) ([]byte, error) {
	if e.files++; e.files > maxFiles {
		return nil, fmt.Errorf("%s: more than %d files read (an included file counts each time it is included): the import's limit", path, maxFiles)
	}
	limit := min(maxFileBytes, maxTotalBytes-e.bytes)
	data, err := readRegular(path, limit)
	switch {
	case errors.Is(err, errTooLarge) && limit < maxFileBytes:
		return nil, fmt.Errorf("%s: more than %s read in all: the import's limit for all files together", path, mib(maxTotalBytes))
	case errors.Is(err, errTooLarge):
		return nil, fmt.Errorf("%s: larger than %s: the import's limit for one file", path, mib(maxFileBytes))
	case err != nil:
		return nil, err
	}
	e.bytes += int64(len(data))
	return data, nil
}

// file reads, parses and expands the file at path.
func (e *expander) file(path string) ([]*node, error) {
	abs, _ := filepath.Abs(path)
	if slices.Contains(e.stack, abs) {
		return nil, fmt.Errorf("%s: included from itself (%s)", path, strings.Join(e.stack, " → "))
	}
	if len(e.stack) > maxIncludeDepth {
		return nil, fmt.Errorf("%s: includes nested more than %d deep: the import's limit", path, maxIncludeDepth)
	}
	data, err := e.read(path)
	if err != nil {
		return nil, err
	}
	return e.parsed(path, abs, data)
}

// parsed parses data, read from path, and expands its includes.
func (e *expander) parsed(path, abs string, data []byte) ([]*node, error) {
	nodes, err := e.parse(path, data, maxDirectives-e.directives)
	if err != nil {
		return nil, err
	}
	e.directives += count(nodes)
	e.stack = append(e.stack, abs)
	defer func() { e.stack = e.stack[:len(e.stack)-1] }()
	return e.nodes(nodes)
}

// count is the number of directives in nodes, blocks' too.
func count(nodes []*node) int {
	n := len(nodes)
	for _, d := range nodes {
		n += count(d.block)
	}
	return n
}

func (e *expander) nodes(in []*node) ([]*node, error) {
	var out []*node
	for _, n := range in {
		if !e.isInc(n.name) {
			if n.hasBlock {
				b, err := e.nodes(n.block)
				if err != nil {
					return nil, err
				}
				n.block = b
			}
			out = append(out, n)
			continue
		}
		pattern := n.arg(0)
		var matches []string
		dirs := []string{""}
		if !filepath.IsAbs(pattern) {
			dirs = []string{filepath.Dir(e.top), filepath.Dir(n.file), filepath.Dir(filepath.Dir(e.top))}
		}
		for _, d := range dirs {
			m, err := filepath.Glob(filepath.Join(d, pattern))
			if err != nil {
				return nil, &SyntaxError{n.file, n.line, fmt.Sprintf("%s: bad pattern: %v", n.text(), err)}
			}
			if len(m) > 0 {
				matches = m
				break
			}
		}
		if len(matches) == 0 {
			hint := "what it holds is not imported"
			if strings.Contains(pattern, "options-ssl-") {
				hint = "certbot's TLS settings: wssproxy's own TLS policy stands in for them"
			}
			e.note(n, "%s: no file matches; skipped: %s", n.text(), hint)
			continue
		}
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				continue
			}
			got, err := e.file(m)
			if err != nil {
				if _, ok := err.(*SyntaxError); ok {
					return nil, err
				}
				return nil, &SyntaxError{n.file, n.line, fmt.Sprintf("%s: %v", n.text(), err)}
			}
			out = append(out, got...)
		}
	}
	return out, nil
}
