package seed

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// RandomPrefix starts a generated-secret placeholder: a Secret value
// "ecom-agent:random:N" (in stringData, or in data once decoded) becomes N
// random alphanumeric characters when the Secret is first seeded, and the
// live value is kept on every later pass.
const RandomPrefix = "ecom-agent:random:"

// maxRandom bounds N in a placeholder.
const maxRandom = 4096

// parsePlaceholder reports whether v is a placeholder and the length it
// asks for; a value with the prefix but no valid length is an error.
func parsePlaceholder(v string) (n int, ok bool, err error) {
	rest, found := strings.CutPrefix(v, RandomPrefix)
	if !found {
		return 0, false, nil
	}
	n, err = strconv.Atoi(rest)
	if err != nil || n < 1 || n > maxRandom || strconv.Itoa(n) != rest {
		return 0, true, fmt.Errorf("invalid placeholder: want %sN with N from 1 to %d", RandomPrefix, maxRandom)
	}
	return n, true, nil
}

const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomString returns n characters drawn uniformly from alphanumeric with
// crypto/rand.
func randomString(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n+16)
	for len(out) < n {
		rand.Read(buf) // never fails (crypto/rand panics if it cannot)
		for _, b := range buf {
			// 248 = 4*62: reject the rest so every character is
			// equally likely.
			if b < 248 && len(out) < n {
				out = append(out, alphanumeric[int(b)%len(alphanumeric)])
			}
		}
	}
	return string(out)
}

// prepareSecret rewrites a Secret for server-side apply: stringData is
// merged into data (stringData is write-only, so applying it would never
// compare equal and every pass would write), and placeholders are replaced
// by the live Secret's value for that key, or by a new random value when
// there is none. It returns the keys that got new values. Values are never
// logged or put in errors.
func prepareSecret(obj *unstructured.Unstructured, live *unstructured.Unstructured) (generated []string, err error) {
	values := map[string]string{} // key -> base64 value
	data, _, err := unstructured.NestedMap(obj.Object, "data")
	if err != nil {
		return nil, fmt.Errorf("secret data: %v", err)
	}
	for k, v := range data {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("secret data key %q: not a string", k)
		}
		values[k] = s
	}
	stringData, _, err := unstructured.NestedMap(obj.Object, "stringData")
	if err != nil {
		return nil, fmt.Errorf("secret stringData: %v", err)
	}
	for k, v := range stringData {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("secret stringData key %q: not a string", k)
		}
		values[k] = base64.StdEncoding.EncodeToString([]byte(s)) // stringData wins, as in the API
	}
	var liveData map[string]any
	if live != nil {
		liveData, _, _ = unstructured.NestedMap(live.Object, "data")
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		plain, err := base64.StdEncoding.DecodeString(values[k])
		if err != nil {
			return nil, fmt.Errorf("secret data key %q: not base64", k)
		}
		n, ok, err := parsePlaceholder(string(plain))
		if err != nil {
			return nil, fmt.Errorf("secret key %q: %v", k, err)
		}
		if !ok {
			continue
		}
		if old, ok := liveData[k].(string); ok && old != "" {
			values[k] = old
			continue
		}
		values[k] = base64.StdEncoding.EncodeToString([]byte(randomString(n)))
		generated = append(generated, k)
	}
	unstructured.RemoveNestedField(obj.Object, "stringData")
	if len(values) > 0 {
		m := make(map[string]any, len(values))
		for k, v := range values {
			m[k] = v
		}
		obj.Object["data"] = m
	}
	return generated, nil
}
