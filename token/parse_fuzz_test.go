package token

import (
	"strings"
	"testing"
)

// FuzzParse: any string either parses to a token that prints back to
// itself (trimmed) or is refused with ErrMalformed, never a panic; and the
// error never repeats the secret part.
func FuzzParse(f *testing.F) {
	f.Add("EA1::sha256:" + strings.Repeat("ab", 32) + "::0123456789ab.0123456789abcdef0123456789abcdef")
	f.Add("EA1::sha256:" + strings.Repeat("ab", 32) + "::0123456789ab.0123456789abcdef0123456789abcdeF")
	f.Add("K10abc::server:secret")
	f.Add("EA1::::.")
	f.Add(" \n")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			if tok != (Token{}) {
				t.Errorf("a refused %q gave %+v", s, tok)
			}
			if _, sec, ok := strings.Cut(s, "."); ok && len(sec) >= 8 && strings.Contains(err.Error(), sec) {
				t.Errorf("the error repeats the secret: %v", err)
			}
			return
		}
		if tok.String() != strings.TrimSpace(s) {
			t.Errorf("%q parsed to %q", s, tok.String())
		}
	})
}
