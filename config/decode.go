package config

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// The decoder walks the parsed document key by key against the Config
// struct instead of handing it to toml's decoder in one go: toml stops at
// the first type mismatch and matches keys case-insensitively, while this
// reports every unknown key and every mismatch, matching keys exactly.

// decode parses data and decodes it into c, recording problems, which keys
// are defined and on which line. It reports false if the file could not be
// parsed at all.
func (l *loader) decode(data []byte, c *Config) bool {
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			l.probs = append(l.probs, syntaxProblem(pe, data))
		} else {
			l.probs = append(l.probs, Problem{Msg: err.Error()})
		}
		return false
	}
	d := decoder{l: l, md: &md}
	d.table(top, reflect.ValueOf(c).Elem(), nil)
	return true
}

type decoder struct {
	l  *loader
	md *toml.MetaData
}

// table decodes the keys of one TOML table into the struct v and returns
// the first line any of them is on.
func (d *decoder) table(prims map[string]toml.Primitive, v reflect.Value, path []string) int {
	fields := tomlFields(v.Type())
	first := 0
	for _, k := range slices.Sorted(maps.Keys(prims)) {
		p := prims[k]
		key := append(slices.Clip(path), k)
		name := keyName(key)
		line := d.line(p)
		d.l.lines[name] = line
		d.l.defined[name] = true
		i, ok := fields[k]
		if !ok {
			if line == 0 {
				line = d.firstLine(p)
				d.l.lines[name] = line
			}
			d.unknown(name, path)
		} else if inner := d.value(p, v.Field(i), key); line == 0 {
			line = inner
			d.l.lines[name] = line
		}
		if first == 0 || (line > 0 && line < first) {
			first = line
		}
	}
	return first
}

// value decodes one key into v and returns the first line of the keys
// inside it when it is a table.
func (d *decoder) value(p toml.Primitive, v reflect.Value, key []string) int {
	name := keyName(key)
	var raw any
	if err := d.md.PrimitiveDecode(p, &raw); err != nil {
		d.l.add(name, "%v", err)
		return 0
	}
	t := v.Type()
	switch {
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		s, ok := raw.(string)
		if !ok {
			d.typeErr(name, t, raw)
			return 0
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.l.add(name, "%s", textError(v.Addr().Interface(), s, err))
		}
	case t.Kind() == reflect.Struct:
		if _, ok := raw.(map[string]any); !ok {
			d.typeErr(name, t, raw)
			return 0
		}
		var sub map[string]toml.Primitive
		if err := d.md.PrimitiveDecode(p, &sub); err != nil {
			d.l.add(name, "%v", err)
			return 0
		}
		return d.table(sub, v, key)
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String:
		if _, ok := raw.(map[string]any); !ok {
			d.typeErr(name, t, raw)
			return 0
		}
		var sub map[string]toml.Primitive
		if err := d.md.PrimitiveDecode(p, &sub); err != nil {
			d.l.add(name, "%v", err)
			return 0
		}
		m := reflect.MakeMapWithSize(t, len(sub))
		first := 0
		for _, k := range slices.Sorted(maps.Keys(sub)) {
			ename := keyName(append(slices.Clip(key), k))
			line := d.line(sub[k])
			d.l.lines[ename], d.l.defined[ename] = line, true
			if first == 0 || line < first {
				first = line
			}
			var ev any
			if err := d.md.PrimitiveDecode(sub[k], &ev); err != nil {
				d.l.add(ename, "%v", err)
				continue
			}
			s, ok := ev.(string)
			if !ok {
				d.typeErr(ename, t.Elem(), ev)
				continue
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), reflect.ValueOf(s).Convert(t.Elem()))
		}
		v.Set(m)
		return first
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		arr, ok := raw.([]any)
		if !ok {
			d.typeErr(name, t, raw)
			return 0
		}
		s := reflect.MakeSlice(t, len(arr), len(arr))
		for i, e := range arr {
			es, ok := e.(string)
			if !ok {
				d.l.add(name, "expected an array of strings, but element %d is %s; quote it", i+1, tomlTypeName(e))
				return 0
			}
			s.Index(i).SetString(es)
		}
		v.Set(s)
	case t.Kind() == reflect.String:
		s, ok := raw.(string)
		if !ok {
			d.typeErr(name, t, raw)
			return 0
		}
		v.SetString(s)
	case t.Kind() == reflect.Int:
		n, ok := raw.(int64)
		if !ok {
			d.typeErr(name, t, raw)
			return 0
		}
		if n < math.MinInt || n > math.MaxInt {
			d.l.add(name, "%d is out of range", n)
			return 0
		}
		v.SetInt(n)
	case t.Kind() == reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.typeErr(name, t, raw)
			return 0
		}
		v.SetBool(b)
	default:
		panic(fmt.Sprintf("config: field %s has type %s, which the decoder does not handle", name, t))
	}
	return 0
}

// typeErr records that key holds raw where a value of Go type t belongs,
// with a hint when the fix is obvious.
func (d *decoder) typeErr(key string, t reflect.Type, raw any) {
	want := goTypeName(t)
	msg := fmt.Sprintf("expected %s, got %s", want, tomlTypeName(raw))
	switch r := raw.(type) {
	case string:
		if _, err := strconv.ParseInt(r, 10, 64); err == nil && t.Kind() == reflect.Int {
			msg += fmt.Sprintf("; write it without quotes: %s = %s", lastPart(key), r)
		} else if t.Kind() == reflect.Slice {
			msg += fmt.Sprintf("; write it as an array: %s = [\"...\"]", lastPart(key))
		}
	case int64, float64, bool:
		if want == "a string" {
			msg += "; put it in double quotes"
		}
	}
	d.l.add(key, "%s", msg)
}

// unknown records an unknown key, suggesting the known key it most likely
// meant.
func (d *decoder) unknown(name string, path []string) {
	msg := "unknown key; check the spelling or remove it"
	if s := suggest(name); s != "" {
		msg = fmt.Sprintf("unknown key; did you mean %q?", s)
		switch {
		case len(path) > 0 && !strings.Contains(s, "."):
			msg += " (top-level keys must come before the first [table] header)"
		case len(path) == 0 && strings.Contains(s, "."):
			msg += fmt.Sprintf(" (it belongs under [%s])", s[:strings.LastIndex(s, ".")])
		}
	}
	d.l.add(name, "%s", msg)
}

// lineProbe fails to decode on purpose: toml's error for it carries the
// position of the key being decoded, which MetaData does not otherwise
// expose.
type lineProbe struct{}

var errProbe = errors.New("line probe")

func (*lineProbe) UnmarshalTOML(any) error { return errProbe }

// line returns the line p's key is on, or 0 for a table that is only
// implied by dotted keys or sub-table headers.
func (d *decoder) line(p toml.Primitive) int {
	var pe toml.ParseError
	if errors.As(d.md.PrimitiveDecode(p, &lineProbe{}), &pe) {
		return pe.Position.Line
	}
	return 0
}

// firstLine returns the first line of the keys inside the table p.
func (d *decoder) firstLine(p toml.Primitive) int {
	var sub map[string]toml.Primitive
	if d.md.PrimitiveDecode(p, &sub) != nil {
		return 0
	}
	first := 0
	for _, sp := range sub {
		l := d.line(sp)
		if l == 0 {
			l = d.firstLine(sp)
		}
		if l > 0 && (first == 0 || l < first) {
			first = l
		}
	}
	return first
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// tomlFields maps the toml tag of each field of struct type t to its index.
func tomlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); tag != "" && tag != "-" {
			m[tag] = i
		}
	}
	return m
}

// goTypeName describes what a TOML value must be to decode into type t.
func goTypeName(t reflect.Type) string {
	switch {
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		return "a string"
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Map:
		return "a table"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "an array of strings"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.Bool:
		return "a boolean (true or false)"
	}
	return t.String()
}

// tomlTypeName describes a value as toml decodes it into an interface.
func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date/time"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	}
	return fmt.Sprintf("%T", v)
}

// textError rewrites the error of a TextUnmarshaler into what to write.
func textError(dst any, s string, err error) string {
	switch dst.(type) {
	case *netip.Addr:
		return fmt.Sprintf("%q is not an IP address; write it like \"192.0.2.10\" or \"2001:db8::10\"", s)
	case *netip.Prefix:
		return fmt.Sprintf("%q is not a CIDR prefix; write it like \"10.96.0.0/12\"", s)
	}
	return err.Error()
}

// keyName returns the dotted form of a key path, quoting parts as TOML
// requires.
func keyName(path []string) string { return toml.Key(path).String() }

// lastPart returns the last part of a dotted key.
func lastPart(key string) string { return key[strings.LastIndex(key, ".")+1:] }
