package importconf

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// node is one directive as written: name, arguments, the block it opens
// (for nginx "server { … }", for Apache "<VirtualHost …> … </VirtualHost>")
// and where it stands.
type node struct {
	name     string
	args     []string // unquoted
	raw      []string // as written, quotes kept: for messages
	block    []*node
	hasBlock bool
	file     string
	line     int
}

// text is the directive as a message quotes it: name and arguments as
// written, cut short when long.
func (n *node) text() string {
	s := strings.Join(append([]string{n.name}, n.raw...), " ")
	if r := []rune(s); len(r) > 72 {
		s = string(r[:71]) + "…"
	}
	return s
}

func (n *node) arg(i int) string {
	if i < len(n.args) {
		return n.args[i]
	}
	return ""
}

// SyntaxError is input that cannot be read as the configuration language:
// File and Line say where, Msg what.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// maxFile bounds one configuration file: anything larger is not one.
const maxFile = 8 << 20

func readFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxFile {
		return nil, fmt.Errorf("%s: %d bytes is too large for a configuration file", path, fi.Size())
	}
	return os.ReadFile(path)
}

// nginx's syntax: words, quoted strings, ';' ending a directive, '{' and
// '}' around a block, '#' to the end of the line outside quotes.

type token struct {
	text  string // unquoted
	raw   string // as written
	line  int
	punct byte // ';', '{', '}' or 0 for a word
}

func lexNginx(file string, data []byte) ([]token, error) {
	var toks []token
	line := 1
	s := string(data)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, token{text: string(c), raw: string(c), line: line, punct: c})
			i++
		case c == '"' || c == '\'':
			start, startLine := i, line
			var b strings.Builder
			i++
			for {
				if i >= len(s) {
					return nil, &SyntaxError{file, startLine, fmt.Sprintf("unterminated %c string: the quote opened here is never closed", c)}
				}
				ch := s[i]
				if ch == c {
					i++
					break
				}
				if ch == '\n' {
					line++
				}
				if ch == '\\' && i+1 < len(s) {
					switch s[i+1] {
					case '"', '\'', '\\':
						b.WriteByte(s[i+1])
						i += 2
						continue
					case 'n':
						b.WriteByte('\n')
						i += 2
						continue
					case 't':
						b.WriteByte('\t')
						i += 2
						continue
					}
				}
				b.WriteByte(ch)
				i++
			}
			toks = append(toks, token{text: b.String(), raw: s[start:i], line: startLine})
		default:
			start := i
			for i < len(s) {
				ch := s[i]
				if ch == '$' && i+1 < len(s) && s[i+1] == '{' { // ${var}: its braces are the word's
					if end := strings.IndexByte(s[i:], '}'); end > 0 {
						i += end + 1
						continue
					}
				}
				if ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == ';' || ch == '{' || ch == '}' {
					break
				}
				if ch == '\\' && i+1 < len(s) && s[i+1] != '\n' {
					i++
				}
				i++
			}
			w := s[start:i]
			toks = append(toks, token{text: w, raw: w, line: line})
		}
	}
	return toks, nil
}

// parseNginx reads one file into its directives (includes not yet followed).
func parseNginx(file string, data []byte) ([]*node, error) {
	toks, err := lexNginx(file, data)
	if err != nil {
		return nil, err
	}
	type open struct {
		n     *node
		nodes []*node
	}
	lines := strings.Split(string(data), "\n")
	indent := func(line int) string {
		l := lines[line-1]
		return l[:len(l)-len(strings.TrimLeft(l, " \t"))]
	}
	var misfit string // a "}" that lines up with another block than the one it closes
	var stack []open
	var nodes []*node
	var words []token
	pending := func() string {
		var ws []string
		for _, w := range words {
			ws = append(ws, w.raw)
		}
		return strings.Join(ws, " ")
	}
	mk := func() *node {
		n := &node{name: words[0].text, file: file, line: words[0].line}
		for _, w := range words[1:] {
			n.args, n.raw = append(n.args, w.text), append(n.raw, w.raw)
		}
		words = nil
		return n
	}
	for _, t := range toks {
		switch t.punct {
		case 0:
			words = append(words, t)
		case ';':
			if len(words) == 0 {
				return nil, &SyntaxError{file, t.line, `unexpected ";": no directive before it`}
			}
			nodes = append(nodes, mk())
		case '{':
			if len(words) == 0 {
				return nil, &SyntaxError{file, t.line, `unexpected "{": a block needs a directive name before it`}
			}
			n := mk()
			n.hasBlock = true
			stack = append(stack, open{n, nodes})
			nodes = nil
		case '}':
			if len(words) > 0 {
				return nil, &SyntaxError{file, words[0].line, fmt.Sprintf(`missing ";" after %q (before the "}" on line %d)`, pending(), t.line)}
			}
			if len(stack) == 0 {
				return nil, &SyntaxError{file, t.line, `unbalanced braces: this "}" closes no block`}
			}
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if misfit == "" && strings.TrimSpace(lines[t.line-1]) == "}" && indent(t.line) != indent(top.n.line) {
				for _, o := range stack {
					if indent(o.n.line) == indent(t.line) {
						misfit = fmt.Sprintf(`; the "}" on line %d closes "%s {" (line %d) but lines up with "%s {" (line %d): is a "}" missing before it?`,
							t.line, top.n.text(), top.n.line, o.n.text(), o.n.line)
					}
				}
			}
			top.n.block = nodes
			nodes = append(top.nodes, top.n)
		}
	}
	last := strings.Count(strings.TrimSuffix(string(data), "\n"), "\n") + 1
	if len(words) > 0 {
		return nil, &SyntaxError{file, words[0].line, fmt.Sprintf(`missing ";" after %q (the file ends at line %d)`, pending(), last)}
	}
	if len(stack) > 0 {
		n := stack[len(stack)-1].n
		return nil, &SyntaxError{file, n.line, fmt.Sprintf(`unbalanced braces: "%s {" is never closed (the file ends at line %d)%s`, n.text(), last, misfit)}
	}
	return nodes, nil
}

// Apache httpd's syntax: one directive a line ("\" at the end continues
// it), '#' only at the start of a line, sections "<Name args>" closed by
// "</Name>". inline collects "# …" found after arguments: httpd itself
// would take them as arguments and refuse most such lines.
func parseApache(file string, data []byte, inline func(n *node, comment string)) ([]*node, error) {
	type open struct {
		n     *node
		nodes []*node
	}
	var stack []open
	var nodes []*node
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		l := strings.TrimRight(lines[i], "\r")
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			l = l[:len(l)-1] + strings.TrimRight(lines[i], "\r")
		}
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		if strings.HasPrefix(l, "</") {
			name := strings.TrimSpace(strings.TrimSuffix(l[2:], ">"))
			if len(stack) == 0 {
				return nil, &SyntaxError{file, lineNo, fmt.Sprintf("</%s> closes no section", name)}
			}
			top := stack[len(stack)-1]
			if !strings.EqualFold(top.n.name, name) {
				return nil, &SyntaxError{file, lineNo, fmt.Sprintf("</%s> does not close <%s> opened on line %d", name, top.n.name, top.n.line)}
			}
			stack = stack[:len(stack)-1]
			top.n.block = nodes
			nodes = append(top.nodes, top.n)
			continue
		}
		section := false
		if l[0] == '<' {
			if !strings.HasSuffix(l, ">") {
				return nil, &SyntaxError{file, lineNo, fmt.Sprintf("%q: a section line ends with >", l)}
			}
			l, section = strings.TrimSpace(l[1:len(l)-1]), true
		}
		words, raw, comment, err := splitApache(l)
		if err != nil {
			return nil, &SyntaxError{file, lineNo, err.Error()}
		}
		if len(words) == 0 {
			return nil, &SyntaxError{file, lineNo, "empty section name"}
		}
		n := &node{name: words[0], args: words[1:], raw: raw[1:], file: file, line: lineNo, hasBlock: section}
		if comment != "" && inline != nil {
			inline(n, comment)
		}
		if section {
			stack = append(stack, open{n, nodes})
			nodes = nil
			continue
		}
		nodes = append(nodes, n)
	}
	if len(stack) > 0 {
		n := stack[len(stack)-1].n
		return nil, &SyntaxError{file, n.line, fmt.Sprintf("<%s> is never closed (no </%s> before the end of the file)", n.name, n.name)}
	}
	return nodes, nil
}

// splitApache splits a directive line into words, honouring quotes; an
// unquoted word starting with '#' begins a trailing comment.
func splitApache(l string) (words, raw []string, comment string, err error) {
	for i := 0; i < len(l); {
		switch c := l[i]; {
		case c == ' ' || c == '\t':
			i++
		case c == '#':
			return words, raw, strings.TrimSpace(l[i:]), nil
		case c == '"' || c == '\'':
			var b strings.Builder
			start := i
			i++
			for ; i < len(l) && l[i] != c; i++ {
				if l[i] == '\\' && i+1 < len(l) && l[i+1] == c {
					i++
				}
				b.WriteByte(l[i])
			}
			if i >= len(l) {
				return nil, nil, "", fmt.Errorf("unterminated %c string", c)
			}
			i++
			words, raw = append(words, b.String()), append(raw, l[start:i])
		default:
			start := i
			for i < len(l) && l[i] != ' ' && l[i] != '\t' {
				i++
			}
			words, raw = append(words, l[start:i]), append(raw, l[start:i])
		}
	}
	return words, raw, "", nil
}

// dialect tells nginx from Apache httpd: nginx lines end in ';', '{' or
// '}'; httpd's have none of those and start with a CamelCase name or a
// "<Section>".
func dialect(data []byte) string {
	nginx, apache := 0, 0
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.Index(l, " #"); i > 0 {
			l = strings.TrimSpace(l[:i])
		}
		switch {
		case strings.HasSuffix(l, ";") || strings.HasSuffix(l, "{") || strings.HasSuffix(l, "}") && !strings.Contains(l, "%{"):
			nginx++
		case l[0] == '<':
			apache++
		case strings.ToLower(l[:1]) != l[:1]:
			apache++
		}
	}
	switch {
	case nginx > apache:
		return "nginx"
	case apache > nginx:
		return "apache"
	}
	return ""
}

// expander follows includes: nginx's "include", httpd's "Include" and
// "IncludeOptional", with globs. A relative pattern is looked up beside
// the file being imported (nginx and httpd resolve against their
// configuration folder, which that usually is), then beside the file that
// includes it, then in the imported file's parent folder (for a file in
// sites-enabled/ or conf.d/).
type expander struct {
	top   string // the imported file
	parse func(file string, data []byte) ([]*node, error)
	isInc func(name string) bool
	note  func(n *node, format string, args ...any)
	stack []string
}

func (e *expander) file(path string) ([]*node, error) {
	abs, _ := filepath.Abs(path)
	if slices.Contains(e.stack, abs) {
		return nil, fmt.Errorf("%s: included from itself (%s)", path, strings.Join(e.stack, " → "))
	}
	if len(e.stack) > 16 {
		return nil, fmt.Errorf("%s: includes nested more than 16 deep", path)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	nodes, err := e.parse(path, data)
	if err != nil {
		return nil, err
	}
	e.stack = append(e.stack, abs)
	defer func() { e.stack = e.stack[:len(e.stack)-1] }()
	return e.nodes(nodes)
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
