package units

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// continuation separates the arguments of a command: a backslash ends the
// physical line, and systemd joins the next one to it (replacing the
// backslash with a space), so each argument gets a line of its own.
const continuation = " \\\n\t"

// FormatCommand returns argv as the value of an Exec*= setting, one
// argument per continuation line, quoted so that systemd hands exactly argv
// to execve: no word splitting, no $VARIABLE expansion, no %specifiers.
// argv[0] must be an absolute path. Use it for ExecStart= in drop-ins.
func FormatCommand(argv []string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("empty command")
	}
	if !filepath.IsAbs(argv[0]) || filepath.Clean(argv[0]) != argv[0] {
		// A relative name would also let a leading "-", "@", "+", ":" or
		// "!" be read as an Exec prefix, which quoting cannot prevent.
		return "", fmt.Errorf("command %q: not a clean absolute path", argv[0])
	}
	if strings.Contains(argv[0], "$") {
		// systemd executes the path as written: "$$" would stay doubled.
		return "", fmt.Errorf("command %q: a path with \"$\" cannot be written", argv[0])
	}
	var b strings.Builder
	for i, arg := range argv {
		q, err := quoteExecArg(arg)
		if err != nil {
			return "", fmt.Errorf("command %s: argument %d: %w", argv[0], i, err)
		}
		if i > 0 {
			b.WriteString(continuation)
		}
		b.WriteString(q)
	}
	return b.String(), nil
}

// quoteExecArg quotes one argument of a command line for systemd's parser
// (systemd.service(5), "Command lines"). Arguments are split at whitespace
// and unquoted with C escapes, %specifiers are expanded afterwards (so "%"
// becomes "%%" even inside quotes), and $VAR, ${VAR} are expanded at exec
// time ("$" becomes "$$"). Arguments that need it are double-quoted; a
// lone ";" would separate commands and a leading "#" or ";" on a
// continuation line would make it a comment, so those are quoted too.
func quoteExecArg(s string) (string, error) {
	if err := checkText(s); err != nil {
		return "", err
	}
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsFunc(s, needsQuotes) && s[0] != '#' && s[0] != ';' {
		return s, nil
	}
	return quoteC(s), nil
}

// quoteValue double-quotes s for settings that are split into words and
// C-unescaped but not $-expanded, such as Environment=, and escapes "%".
func quoteValue(s string) (string, error) {
	if err := checkText(s); err != nil {
		return "", err
	}
	return quoteC(strings.ReplaceAll(s, "%", "%%")), nil
}

// plainValue escapes "%" in a setting that takes its value as it is (a
// description, a path, a URL). Such values cannot hold line breaks or
// start or end with whitespace, which systemd strips.
func plainValue(s string) (string, error) {
	if err := checkText(s); err != nil {
		return "", err
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "", fmt.Errorf("%q: control characters are not allowed here", s)
	}
	if strings.TrimSpace(s) != s {
		return "", fmt.Errorf("%q: leading or trailing whitespace is not allowed here", s)
	}
	if strings.HasSuffix(s, `\`) {
		return "", fmt.Errorf("%q: a trailing backslash would continue the line", s)
	}
	return strings.ReplaceAll(s, "%", "%%"), nil
}

// checkText refuses what no unit file can carry: systemd ignores lines that
// are not valid UTF-8 and cannot pass a NUL byte.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q: not valid UTF-8", s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%q: contains a NUL byte", s)
	}
	return nil
}

func needsQuotes(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || r == '"' || r == '\'' || r == '\\'
}

// quoteC wraps s in double quotes with C escapes for systemd's unquoting.
func quoteC(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// formatSpan renders a duration as a systemd time span: whole seconds as
// "10s", smaller spans in ms or us, Infinity as "infinity".
func formatSpan(d time.Duration) (string, error) {
	switch {
	case d == Infinity:
		return "infinity", nil
	case d < 0:
		return "", fmt.Errorf("negative duration %s", d)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second), nil
	case d%time.Millisecond == 0:
		return fmt.Sprintf("%dms", d/time.Millisecond), nil
	default:
		return fmt.Sprintf("%dus", d/time.Microsecond), nil
	}
}
