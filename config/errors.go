package config

import (
	"bytes"
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	// Key is the dotted key the problem is about ("apiserver.extra_sans"),
	// or empty for a syntax error.
	Key string
	// Line is the 1-based line of the key in the file, or 0 when the key
	// is not in the file (a missing required key, a bad default).
	Line int
	// Msg says what is wrong and how to fix it.
	Msg string
}

// Error is every problem found in a config file. Load and Parse return it
// for anything wrong with the file's content, so callers can tell config
// errors apart with errors.As.
type Error struct {
	// File is the file name as given to Load or Parse.
	File     string
	Problems []Problem

	cause error // why the file could not be read, if it could not
}

// Unwrap returns why the file could not be read, so that
// errors.Is(err, fs.ErrNotExist) works, or nil.
func (e *Error) Unwrap() error { return e.cause }

// Error returns one problem per line, each as
//
//	config.toml:7: key "apiserver.extra_san": unknown key; did you mean "apiserver.extra_sans"?
//
// without the line number when the key is not in the file and without the
// key for syntax errors. A syntax error's line is followed by the offending
// source line.
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
		if p.Key != "" {
			fmt.Fprintf(&b, "key %q: ", p.Key)
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// add records a problem with key, at the key's line if it is in the file.
// Problems about a key that already has one are dropped: a key that failed
// to decode is zero, and validating the zero value would only add noise.
func (l *loader) add(key, format string, args ...any) {
	if l.bad[key] {
		return
	}
	l.bad[key] = true
	l.probs = append(l.probs, Problem{Key: key, Line: l.lines[key], Msg: fmt.Sprintf(format, args...)})
}

// addAgain is add for a second, independent problem with the same key.
func (l *loader) addAgain(key, format string, args ...any) {
	l.probs = append(l.probs, Problem{Key: key, Line: l.lines[key], Msg: fmt.Sprintf(format, args...)})
}

// err returns the problems found as an *Error sorted by line, keys that are
// not in the file last, or nil if there are none.
func (l *loader) err() error {
	if len(l.probs) == 0 {
		return nil
	}
	slices.SortStableFunc(l.probs, func(a, b Problem) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Line, b.Line)
	})
	return &Error{File: l.file, Problems: l.probs}
}

// syntaxProblem turns a TOML syntax error into a Problem that keeps the
// line and column and shows the offending line with a caret under the
// column. An array or inline table left open on an earlier line is
// reported where it opened: that is where the fix goes, not where the
// parser noticed.
func syntaxProblem(pe toml.ParseError, data []byte) Problem {
	line, col := errorLineCol(pe.Position, data)
	msg := fmt.Sprintf("syntax error at column %d: %s", col, pe.Message)
	if open, ok := unclosedBracket(data, line, col); ok {
		what, closer := "array", "]"
		if open.char == '{' {
			what, closer = "inline table", "}"
		}
		msg = fmt.Sprintf("syntax error at column %d: this %s is never closed (a missing %q?); the parser was still inside it at line %d, column %d: %s",
			open.col, what, closer, line, col, pe.Message)
		line, col = open.line, open.col
	}
	lines := strings.Split(string(data), "\n")
	if line >= 1 && line <= len(lines) {
		src := strings.TrimRight(lines[line-1], "\r")
		if k, ok := secretAssignment(src); ok {
			// Never echo a secret, even a malformed one: neither the
			// line nor the parser's message, which may quote it.
			return Problem{Line: line, Msg: fmt.Sprintf("syntax error at column %d of the line setting %s (not shown: it holds a secret); "+
				`write it as %s = "<the secret>"`, col, k, k)}
		}
		// Copy the tabs of the source line so the caret lines up however
		// wide the terminal draws a tab.
		var caret strings.Builder
		for i, r := range src {
			if i >= col-1 {
				break
			}
			if r == '\t' {
				caret.WriteByte('\t')
			} else {
				caret.WriteByte(' ')
			}
		}
		msg += "\n\t" + src + "\n\t" + caret.String() + "^"
	}
	return Problem{Line: line, Msg: msg}
}

// errorLineCol returns the 1-based line and byte column of a parse error.
// The parser's own line is one too far when its lexer had already read
// the newline it complains about (`[apiserver` then a newline is reported
// on the next line); the byte offset it reports (Start) is right, so the
// line and column are counted from it. The parser skips a byte-order mark
// before counting offsets.
func errorLineCol(pos toml.Position, data []byte) (line, col int) {
	for _, bom := range []string{"\xef\xbb\xbf", "\xff\xfe", "\xfe\xff"} {
		if bytes.HasPrefix(data, []byte(bom)) {
			data = data[len(bom):]
			break
		}
	}
	start := pos.Start
	if start < 0 || start > len(data) || (start == 0 && pos.Line > 1) {
		return pos.Line, pos.Col
	}
	if start == len(data) && start > 0 {
		start-- // at the end: the last byte's line
	}
	lineStart := bytes.LastIndexByte(data[:start], '\n') + 1
	return bytes.Count(data[:start], []byte("\n")) + 1, start - lineStart + 1
}

// keyLine matches a line that sets a bare key.
var keyLine = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\s*=`)

// bracket is an array's '[' or an inline table's '{' in a TOML file.
type bracket struct {
	char      byte
	line, col int
}

// unclosedBracket returns the innermost array or inline table still open
// at line:col that was opened on an earlier line, when what the parser
// stopped at starts a table header or a key (`[network]`, `port = 1`) or
// is the end of the file: a value whose closing bracket is missing runs
// on until such a line, often lines below the mistake. It skips strings
// and comments; table headers are never values.
func unclosedBracket(data []byte, line, col int) (bracket, bool) {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) || col < 1 || col > len(lines[line-1])+1 {
		return bracket{}, false
	}
	rest := strings.TrimSpace(lines[line-1][col-1:])
	endOfFile := line == len(lines) || (line == len(lines)-1 && lines[len(lines)-1] == "")
	lineStart := strings.TrimSpace(lines[line-1][:col-1]) == ""
	if !(lineStart && (strings.HasPrefix(rest, "[") || keyLine.MatchString(rest))) && !(endOfFile && rest == "") {
		return bracket{}, false
	}
	var stack []bracket
	l, c := 1, 0
	atLineStart := true
	for i := 0; i < len(data); i++ {
		ch := data[i]
		c++
		if l > line || (l == line && c >= col) {
			break
		}
		switch {
		case ch == '\n':
			l, c, atLineStart = l+1, 0, true
			continue
		case ch == ' ' || ch == '\t' || ch == '\r':
			continue
		case ch == '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case ch == '"' || ch == '\'':
			// Skip the string, counting the lines a multi-line one
			// spans.
			quote := string(ch)
			if bytes.HasPrefix(data[i:], []byte(quote+quote+quote)) {
				quote = quote + quote + quote
			}
			j := i + len(quote)
			for j < len(data) && !bytes.HasPrefix(data[j:], []byte(quote)) {
				if data[j] == '\\' && ch == '"' {
					j++
				} else if data[j] == '\n' {
					if len(quote) == 1 {
						break
					}
					l, c = l+1, 0
				}
				j++
				c++
			}
			c += len(quote) - 1
			i = j + len(quote) - 1
		case (ch == '[') && atLineStart && len(stack) == 0:
			// A table header: it ends on its own line.
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case ch == '[' || ch == '{':
			stack = append(stack, bracket{ch, l, c})
		case ch == ']' || ch == '}':
			if n := len(stack); n > 0 {
				stack = stack[:n-1]
			}
		}
		atLineStart = false
	}
	if n := len(stack); n > 0 && stack[n-1].line < line {
		return stack[n-1], true
	}
	return bracket{}, false
}

// secretKeys are the keys whose values are never shown.
var secretKeyNames = []string{"cluster_secret", "control_plane_key"}

// secretAssignment reports whether a source line assigns one of
// secretKeyNames (bare or quoted, in any table), and returns its key.
func secretAssignment(line string) (string, bool) {
	t := strings.TrimSpace(line)
	for _, k := range secretKeyNames {
		for _, form := range []string{k, `"` + k + `"`, "'" + k + "'"} {
			rest, ok := strings.CutPrefix(t, form)
			if ok && (rest == "" || strings.HasPrefix(strings.TrimSpace(rest), "=")) {
				return k, true
			}
		}
	}
	return "", false
}
