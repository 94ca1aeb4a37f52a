package importconf

import (
	"fmt"
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
	noted    []string // the formats noteOnce has noted it with
}

// text is the directive as a message quotes it: name and arguments as
// written, cut short when long. It reads no more of them than it shows:
// messages quote a directive of a million arguments in constant time.
func (n *node) text() string {
	const runes = 72
	const bytes = 4*runes + 4 // a cut leaves more than runes runes
	b := []byte(n.name[:min(len(n.name), bytes)])
	for _, w := range n.raw {
		if len(b) >= bytes {
			break
		}
		b = append(append(b, ' '), w[:min(len(w), bytes)]...)
	}
	if r := []rune(string(b)); len(r) > runes {
		return string(r[:runes-1]) + "…"
	}
	return string(b)
}

func (n *node) arg(i int) string {
	if i < len(n.args) {
		return n.args[i]
	}
	return ""
}

// SyntaxError is input that cannot be read as the configuration
// language, or that the import refuses where it is written (beyond one of
// its bounds, a certificate file that holds no certificate): File and
// Line say where, Msg what.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// nginx's syntax: words, quoted strings, ';' ending a directive, '{' and
// '}' around a block, '#' to the end of the line outside quotes.

type token struct {
	text   string // unquoted
	raw    string // as written
	line   int
	punct  byte   // ';', '{', '}' or 0 for a word
	indent string // the blanks that begin the token's line
	alone  bool   // a '}' with nothing else on its line but blanks
}

// lexer reads nginx tokens one at a time, so that the parser stops at an
// error or a bound without the rest of the file tokenized. Every step is
// linear in the input: no byte is scanned more than twice.
type lexer struct {
	file      string
	s         string
	i         int
	line      int
	lineStart int    // where the current line begins
	tokOnLine bool   // a token has been read on the current line
	indentAt  int    // the line whose indent is cached, 0 for none
	indent    string // its leading blanks
	close     int    // the next '}' at or after the last "${" (len(s): none), -1 before one
}

func newLexer(file string, data []byte) *lexer {
	return &lexer{file: file, s: string(data), line: 1, close: -1}
}

func (l *lexer) newline(at int) {
	l.line++
	l.lineStart, l.tokOnLine = at+1, false
}

// lineIndent returns the leading blanks of the current line, computed once
// per line.
func (l *lexer) lineIndent() string {
	if l.indentAt != l.line {
		j := l.lineStart
		for j < len(l.s) && (l.s[j] == ' ' || l.s[j] == '\t') {
			j++
		}
		l.indentAt, l.indent = l.line, l.s[l.lineStart:j]
	}
	return l.indent
}

// next returns the next token; ok is false at the end of the input.
func (l *lexer) next() (tok token, ok bool, err error) {
	s := l.s
	for l.i < len(s) {
		switch c := s[l.i]; {
		case c == '\n':
			l.newline(l.i)
			l.i++
		case c == ' ' || c == '\t' || c == '\r':
			l.i++
		case c == '#':
			if j := strings.IndexByte(s[l.i:], '\n'); j >= 0 {
				l.i += j
			} else {
				l.i = len(s)
			}
		default:
			tok = token{line: l.line, indent: l.lineIndent()}
			alone := !l.tokOnLine
			if tok.punct, err = l.word(&tok); err != nil {
				return token{}, false, err
			}
			if tok.punct == '}' && alone { // and the rest of its line is blank?
				j := l.i
				for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r') {
					j++
				}
				tok.alone = j == len(s) || s[j] == '\n'
			}
			l.tokOnLine = true
			return tok, true, nil
		}
	}
	return token{}, false, nil
}

// word reads the token at l.i into tok: punctuation, a quoted string or
// a word.
func (l *lexer) word(tok *token) (byte, error) {
	s, start := l.s, l.i
	switch c := s[l.i]; {
	case c == ';' || c == '{' || c == '}':
		l.i++
		tok.text, tok.raw = s[start:l.i], s[start:l.i]
		return c, nil
	case c == '"' || c == '\'':
		var b strings.Builder
		l.i++
		for {
			if l.i >= len(s) {
				return 0, &SyntaxError{l.file, tok.line, fmt.Sprintf("unterminated %c string: the quote opened here is never closed", c)}
			}
			ch := s[l.i]
			if ch == c {
				l.i++
				break
			}
			if ch == '\n' {
				l.newline(l.i)
			}
			if ch == '\\' && l.i+1 < len(s) {
				switch s[l.i+1] {
				case '"', '\'', '\\':
					b.WriteByte(s[l.i+1])
					l.i += 2
					continue
				case 'n':
					b.WriteByte('\n')
					l.i += 2
					continue
				case 't':
					b.WriteByte('\t')
					l.i += 2
					continue
				}
			}
			b.WriteByte(ch)
			l.i++
		}
		tok.text, tok.raw = b.String(), s[start:l.i]
		return 0, nil
	}
	for l.i < len(s) {
		ch := s[l.i]
		if ch == '$' && l.i+1 < len(s) && s[l.i+1] == '{' { // ${var}: its braces are the word's
			if l.close < l.i { // look once for the next '}', not once per "${"
				l.close = len(s)
				if j := strings.IndexByte(s[l.i:], '}'); j >= 0 {
					l.close = l.i + j
				}
			}
			if l.close < len(s) {
				for j := l.i; j < l.close; j++ {
					if s[j] == '\n' {
						l.newline(j)
					}
				}
				l.i = l.close + 1
				continue
			}
		}
		if ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == ';' || ch == '{' || ch == '}' {
			break
		}
		if ch == '\\' && l.i+1 < len(s) && s[l.i+1] != '\n' {
			l.i++
		}
		l.i++
	}
	tok.text, tok.raw = s[start:l.i], s[start:l.i]
	return 0, nil
}

// errDirectives is the message of a file that would make more
// directives than its parser's limit.
var errDirectives = fmt.Sprintf("more than %d directives in all: the import's limit", maxDirectives)

// parseNginx reads one file into its directives (includes not yet
// followed), at most limit of them.
func parseNginx(file string, data []byte, limit int) ([]*node, error) {
	type open struct {
		n      *node
		indent string
		nodes  []*node
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
		limit--
		n := &node{name: words[0].text, file: file, line: words[0].line}
		for _, w := range words[1:] {
			n.args, n.raw = append(n.args, w.text), append(n.raw, w.raw)
		}
		return n
	}
	lx := newLexer(file, data)
	for {
		t, ok, err := lx.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		switch t.punct {
		case 0:
			words = append(words, t)
		case ';':
			if len(words) == 0 {
				return nil, &SyntaxError{file, t.line, `unexpected ";": no directive before it`}
			}
			nodes, words = append(nodes, mk()), words[:0]
			if limit < 0 {
				return nil, &SyntaxError{file, t.line, errDirectives}
			}
		case '{':
			if len(words) == 0 {
				return nil, &SyntaxError{file, t.line, `unexpected "{": a block needs a directive name before it`}
			}
			if len(stack) >= maxBlockDepth {
				return nil, &SyntaxError{file, t.line, fmt.Sprintf("blocks nested more than %d deep: the import's limit", maxBlockDepth)}
			}
			n := mk()
			n.hasBlock = true
			if limit < 0 {
				return nil, &SyntaxError{file, t.line, errDirectives}
			}
			stack = append(stack, open{n, words[0].indent, nodes})
			nodes, words = nil, words[:0]
		case '}':
			if len(words) > 0 {
				return nil, &SyntaxError{file, words[0].line, fmt.Sprintf(`missing ";" after %q (before the "}" on line %d)`, pending(), t.line)}
			}
			if len(stack) == 0 {
				return nil, &SyntaxError{file, t.line, `unbalanced braces: this "}" closes no block`}
			}
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if misfit == "" && t.alone && t.indent != top.indent {
				for _, o := range stack {
					if o.indent == t.indent {
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
// would take them as arguments and refuse most such lines. It makes at
// most limit directives.
func parseApache(file string, data []byte, limit int, inline func(n *node, comment string)) ([]*node, error) {
	type open struct {
		n     *node
		nodes []*node
	}
	var stack []open
	var nodes []*node
	rest, more := string(data), true
	next := func() string { // the next line, as strings.Split gives them
		line, after, found := strings.Cut(rest, "\n")
		rest, more = after, found
		return strings.TrimRight(line, "\r")
	}
	var joined strings.Builder
	for n := 0; more; {
		n++
		lineNo, l := n, next()
		if strings.HasSuffix(l, "\\") && more { // continued: joined in one pass, not line by line
			joined.Reset()
			for strings.HasSuffix(l, "\\") && more {
				joined.WriteString(l[:len(l)-1])
				l = next()
				n++
			}
			joined.WriteString(l)
			l = joined.String()
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
			if len(stack) >= maxBlockDepth {
				return nil, &SyntaxError{file, lineNo, fmt.Sprintf("sections nested more than %d deep: the import's limit", maxBlockDepth)}
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
		if limit--; limit < 0 {
			return nil, &SyntaxError{file, lineNo, errDirectives}
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
	for l := range strings.Lines(string(data)) {
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
