package config

import (
	"cmp"
	"fmt"
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
// column.
func syntaxProblem(pe toml.ParseError, data []byte) Problem {
	pos := pe.Position
	msg := fmt.Sprintf("syntax error at column %d: %s", pos.Col, pe.Message)
	lines := strings.Split(string(data), "\n")
	if pos.Line >= 1 && pos.Line <= len(lines) {
		src := strings.TrimRight(lines[pos.Line-1], "\r")
		if k, ok := secretAssignment(src); ok {
			// Never echo a secret, even a malformed one: neither the
			// line nor the parser's message, which may quote it.
			return Problem{Line: pos.Line, Msg: fmt.Sprintf("syntax error at column %d of the line setting %s (not shown: it holds a secret); "+
				`write it as %s = "<the secret>"`, pos.Col, k, k)}
		}
		// Copy the tabs of the source line so the caret lines up however
		// wide the terminal draws a tab.
		var caret strings.Builder
		for i, r := range src {
			if i >= pos.Col-1 {
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
	return Problem{Line: pos.Line, Msg: msg}
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
