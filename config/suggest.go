package config

import (
	"reflect"
	"strings"
	"sync"

	"github.com/ecom-platform/ecom-agent/internal/editdist"
)

// knownKeys lists every key Config has, tables included, in dotted form.
var knownKeys = sync.OnceValue(func() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			keys = append(keys, prefix+tag)
			if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(textUnmarshaler) {
				walk(f.Type, prefix+tag+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return keys
})

// suggest returns the known key an unknown key most likely meant, or "".
// A key whose last part is a known key's last part was most likely put in
// the wrong table; otherwise the nearest key by edit distance wins if it is
// near enough to be a typo.
func suggest(unknown string) string {
	leaf := normalize(lastPart(unknown))
	var sameLeaf []string
	for _, k := range knownKeys() {
		if normalize(lastPart(k)) == leaf {
			sameLeaf = append(sameLeaf, k)
		}
	}
	if len(sameLeaf) == 1 {
		return sameLeaf[0]
	}
	// An abbreviation of a single key in the same table: "pki.key_algo".
	parent := strings.TrimSuffix(unknown, lastPart(unknown))
	var abbreviated []string
	for _, k := range knownKeys() {
		if len(leaf) >= 3 && strings.HasPrefix(k, parent) && !strings.Contains(k[len(parent):], ".") &&
			strings.HasPrefix(normalize(lastPart(k)), leaf) {
			abbreviated = append(abbreviated, k)
		}
	}
	if len(abbreviated) == 1 {
		return abbreviated[0]
	}
	best, bestDist := "", -1
	for _, k := range knownKeys() {
		if d := editdist.Levenshtein(normalize(unknown), k); bestDist < 0 || d < bestDist {
			best, bestDist = k, d
		}
	}
	if bestDist <= max(2, len(unknown)/5) {
		return best
	}
	return ""
}

// normalize folds the differences most likely to be mistakes rather than
// typos: case and '-' for '_'.
func normalize(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
