package units

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// The tests read commands back with parseCommand, a model of how systemd
// reads an Exec*= value: the config parser joins continuation lines
// (skipping comment lines inside them), config_parse_exec splits words with
// extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE), unit_full_printf
// expands %specifiers, and at exec time replace_env_argv expands $VARs.
// The model accepts only "%%" and "$$", so any unescaped specifier or
// variable fails the test.

// joinContinuations joins a value's physical lines like systemd's config
// parser: a line ending in an unescaped backslash continues on the next one,
// the backslash becoming a space.
func joinContinuations(v string) string {
	lines := strings.Split(v, "\n")
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			if t := strings.TrimLeft(l, " \t"); t != "" && (t[0] == '#' || t[0] == ';') {
				continue
			}
		}
		escaped := false
		for j := 0; j < len(l); j++ {
			if escaped {
				escaped = false
			} else if l[j] == '\\' {
				escaped = true
			}
		}
		if escaped && i < len(lines)-1 {
			b.WriteString(l[:len(l)-1])
			b.WriteByte(' ')
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// parseCommand reads an Exec*= value back into argv.
func parseCommand(v string) ([]string, error) {
	s := joinContinuations(v)
	const ws = " \t\n\r"
	var argv []string
	i := 0
	for {
		for i < len(s) && strings.IndexByte(ws, s[i]) >= 0 {
			i++
		}
		if i == len(s) {
			break
		}
		if s[i] == ';' && (i+1 == len(s) || strings.IndexByte(ws, s[i+1]) >= 0) {
			return nil, fmt.Errorf("bare ';' at %d separates commands", i)
		}
		var w strings.Builder
		var quote byte
		for i < len(s) {
			c := s[i]
			if quote == 0 && strings.IndexByte(ws, c) >= 0 {
				break
			}
			switch {
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
				i++
			case quote != 0 && c == quote:
				quote = 0
				i++
			case c == '\\':
				r, n, err := cunescapeOne(s[i+1:])
				if err != nil {
					return nil, err
				}
				w.WriteString(r)
				i += 1 + n
			default:
				w.WriteByte(c)
				i++
			}
		}
		if quote != 0 {
			return nil, fmt.Errorf("unterminated quote in %q", s)
		}
		word, err := unescapeDoubled(w.String(), '%')
		if err == nil {
			word, err = unescapeDoubled(word, '$')
		}
		if err != nil {
			return nil, err
		}
		argv = append(argv, word)
	}
	return argv, nil
}

func cunescapeOne(s string) (string, int, error) {
	if s == "" {
		return "", 0, fmt.Errorf("backslash at the end")
	}
	switch s[0] {
	case 'n':
		return "\n", 1, nil
	case 't':
		return "\t", 1, nil
	case 'r':
		return "\r", 1, nil
	case '\\', '"', '\'':
		return s[:1], 1, nil
	case 'x', 'u':
		n := 2
		if s[0] == 'u' {
			n = 4
		}
		if len(s) < 1+n {
			return "", 0, fmt.Errorf("short \\%c escape", s[0])
		}
		c, err := strconv.ParseUint(s[1:1+n], 16, 32)
		if err != nil || c == 0 {
			return "", 0, fmt.Errorf("bad \\%c escape %q", s[0], s[:1+n])
		}
		return string(rune(c)), 1 + n, nil
	}
	return "", 0, fmt.Errorf("unknown escape \\%c", s[0])
}

// unescapeDoubled turns cc into c and fails on a lone c.
func unescapeDoubled(s string, c byte) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != c {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == c {
			b.WriteByte(c)
			i++
			continue
		}
		return "", fmt.Errorf("%q: unescaped %c would be expanded", s, c)
	}
	return b.String(), nil
}

func TestQuoteExecArg(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"--cert-file=/etc/kubernetes/pki/etcd/server.crt", "--cert-file=/etc/kubernetes/pki/etcd/server.crt"},
		{"a;b", "a;b"},
		{"ünïcödé", "ünïcödé"},
		{"", `""`},
		{"with space", `"with space"`},
		{`quo"te`, `"quo\"te"`},
		{`it's`, `"it's"`},
		{`back\slash`, `"back\\slash"`},
		{`ends\`, `"ends\\"`},
		{"$HOME", "$$HOME"},
		{"${HOME}", "$${HOME}"},
		{"100%", "100%%"},
		{"%n", "%%n"},
		{"$ %", `"$$ %%"`},
		{"#hash", `"#hash"`},
		{";", `";"`},
		{";x", `";x"`},
		{"tab\there", `"tab\there"`},
		{"new\nline", `"new\nline"`},
		{"cr\r", `"cr\r"`},
		{"bell\a", `"bell\x07"`},
		{"del\x7f", `"del\x7f"`},
		{"c1\u0085", `"c1\u0085"`},
	} {
		got, err := quoteExecArg(tc.in)
		if err != nil {
			t.Errorf("quoteExecArg(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("quoteExecArg(%q) = %s, want %s", tc.in, got, tc.want)
		}
		back, err := parseCommand("/bin/x " + got)
		if err != nil || len(back) != 2 || back[1] != tc.in {
			t.Errorf("quoteExecArg(%q) = %s reads back as %q, %v", tc.in, got, back, err)
		}
	}
}

func TestQuoteExecArgRefuses(t *testing.T) {
	for _, in := range []string{"nul\x00", "bad\xffutf8"} {
		if got, err := quoteExecArg(in); err == nil {
			t.Errorf("quoteExecArg(%q) = %s, want an error", in, got)
		}
	}
}

func TestFormatCommand(t *testing.T) {
	got, err := FormatCommand([]string{"/usr/bin/etcd", "--name=a b", "--x=$y"})
	if err != nil {
		t.Fatal(err)
	}
	want := "/usr/bin/etcd \\\n\t\"--name=a b\" \\\n\t--x=$$y"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	for _, argv := range [][]string{nil, {"etcd"}, {"-/bin/true"}, {"@/bin/x", "y"}, {"/bin//sh"}, {"/opt/$x/bin"}} {
		if got, err := FormatCommand(argv); err == nil {
			t.Errorf("FormatCommand(%q) = %s, want an error", argv, got)
		}
	}
}

func TestFormatCommandRoundTrip(t *testing.T) {
	argv := []string{"/opt/my tools/bin", "", " ", "#", ";", "\\", "\\\\", `"`, `'`, "$", "$$", "%", "%%",
		"--a=b\\", "x \\", "\\\nfoo", "# not a comment", "; neither", "--last"}
	v, err := FormatCommand(argv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseCommand(v)
	if err != nil {
		t.Fatalf("parse %s: %v", v, err)
	}
	if diff := cmp.Diff(argv, got); diff != "" {
		t.Errorf("round trip of\n%s\n(-want +got):\n%s", v, diff)
	}
}

func FuzzFormatCommand(f *testing.F) {
	for _, s := range []string{"", "a b", `"'\`, "$x%y", "#", ";", "\t\n", "é\\"} {
		f.Add(s, "--flag="+s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		argv := []string{"/bin/cmd", a, b}
		v, err := FormatCommand(argv)
		if err != nil {
			if utf8.ValidString(a) && utf8.ValidString(b) && !strings.ContainsRune(a+b, 0) {
				t.Fatalf("FormatCommand(%q): %v", argv, err)
			}
			return
		}
		got, err := parseCommand(v)
		if err != nil {
			t.Fatalf("parse %s: %v", v, err)
		}
		if diff := cmp.Diff(argv, got); diff != "" {
			t.Fatalf("round trip of %s (-want +got):\n%s", v, diff)
		}
	})
}

func TestFormatSpan(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{5 * time.Second, "5s"},
		{2 * time.Minute, "120s"},
		{1500 * time.Millisecond, "1500ms"},
		{1500 * time.Microsecond, "1500us"},
		{Infinity, "infinity"},
	} {
		if got, err := formatSpan(tc.in); err != nil || got != tc.want {
			t.Errorf("formatSpan(%v) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := formatSpan(-time.Second); err == nil {
		t.Error("formatSpan accepted a negative duration")
	}
}

func TestPlainValue(t *testing.T) {
	if got, err := plainValue("50% of /var/lib/etcd"); err != nil || got != "50%% of /var/lib/etcd" {
		t.Errorf("plainValue = %q, %v", got, err)
	}
	for _, in := range []string{"two\nlines", " leading", "trailing ", `cont\`, "nul\x00"} {
		if _, err := plainValue(in); err == nil {
			t.Errorf("plainValue(%q) accepted", in)
		}
	}
	if got, err := quoteValue(`K=a "b" 5%`); err != nil || got != `"K=a \"b\" 5%%"` {
		t.Errorf("quoteValue = %s, %v", got, err)
	}
}
