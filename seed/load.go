package seed

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// Manifest is one object of the set, as written in its file (variables
// substituted).
type Manifest struct {
	File   string
	Line   int // the line of the object's document in the file
	Object *unstructured.Unstructured
}

func (m Manifest) gvk() schema.GroupVersionKind { return m.Object.GroupVersionKind() }

// Set is the effective manifest set.
type Set struct {
	Files     []FileInfo
	Manifests []Manifest
	Problems  []Problem
	// Hash is a digest of the effective set: every file's name and content
	// after substitution, so any change to it changes the hash.
	Hash string
}

// Load reads the effective manifest set: the *.yaml (and *.yml) files at the
// root of embedded, overridden by the files of the logical directory dir of
// root (dir "" is ManifestsDir; a nil root reads no directory):
//
//   - a file NAME.yaml in dir replaces the embedded NAME.yaml;
//   - NAME.yaml.skip or NAME.skip in dir disables NAME.yaml (embedded or not);
//   - other *.yaml files in dir are added.
//
// Files are taken in name order, variables substituted, then parsed. A file
// or document that does not parse, uses an unknown or empty variable, or
// repeats an object is a Problem (with its file and line) and is left out;
// the others still load. A directory that exists but cannot be read makes a
// set without objects: applying the embedded files in place of an
// operator's overrides could undo the operator's intent.
func Load(root *hostfs.Root, dir string, embedded fs.FS, vars Vars) (*Set, []Problem) {
	if dir == "" {
		dir = ManifestsDir
	}
	type source struct {
		name, from string
		read       func() ([]byte, error)
	}
	set := &Set{}
	files := map[string]source{}
	if embedded != nil {
		entries, err := fs.ReadDir(embedded, ".")
		if err != nil {
			set.Problems = append(set.Problems, Problem{File: "embedded", Message: fmt.Sprintf("read embedded manifests: %v", err)})
		}
		for _, e := range entries {
			if e.IsDir() || !isManifestName(e.Name()) {
				continue
			}
			name := e.Name()
			files[name] = source{name: name, from: "embedded", read: func() ([]byte, error) { return fs.ReadFile(embedded, name) }}
		}
	}
	if root != nil {
		entries, err := os.ReadDir(root.Path(dir))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			set.Problems = append(set.Problems, Problem{File: dir, Message: fmt.Sprintf("cannot read the manifests directory, nothing is applied: %v", err)})
			set.Hash = hashSet(nil, set.Problems)
			return set, set.Problems
		default:
			skips := map[string]bool{}
			for _, e := range entries {
				name := e.Name()
				if strings.HasPrefix(name, ".") || e.IsDir() {
					continue
				}
				if base, ok := strings.CutSuffix(name, ".skip"); ok {
					skips[base] = true
					continue
				}
				if isManifestName(name) {
					logical := path.Join(dir, name)
					files[name] = source{name: name, from: logical, read: func() ([]byte, error) { return root.ReadFile(logical) }}
				}
			}
			for name := range files {
				if skips[name] || skips[strings.TrimSuffix(strings.TrimSuffix(name, ".yaml"), ".yml")] {
					delete(files, name)
				}
			}
		}
	}

	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	type content struct {
		name string
		data []byte
	}
	var contents []content
	seen := map[string]Manifest{}
	for _, name := range names {
		src := files[name]
		set.Files = append(set.Files, FileInfo{Name: name, Source: src.from})
		raw, err := src.read()
		if err != nil {
			set.Problems = append(set.Problems, Problem{File: name, Message: fmt.Sprintf("read %s: %v", src.from, err)})
			contents = append(contents, content{name, []byte("unreadable: " + err.Error())})
			continue
		}
		text, probs := substitute(name, raw, vars)
		contents = append(contents, content{name, text})
		if len(probs) > 0 {
			set.Problems = append(set.Problems, probs...)
			continue
		}
		ms, probs := parseFile(name, text)
		set.Problems = append(set.Problems, probs...)
		for _, m := range ms {
			k := setKey(m.gvk().GroupKind(), m.Object.GetNamespace(), m.Object.GetName())
			if first, dup := seen[k]; dup {
				set.Problems = append(set.Problems, Problem{File: m.File, Line: m.Line, Message: fmt.Sprintf("%s %q is already defined at %s:%d", m.Object.GetKind(), m.Object.GetName(), first.File, first.Line)})
				continue
			}
			seen[k] = m
			set.Manifests = append(set.Manifests, m)
		}
	}
	h := sha256.New()
	for _, c := range contents {
		fmt.Fprintf(h, "%s\x00%d\x00", c.name, len(c.data))
		h.Write(c.data)
	}
	set.Hash = hex.EncodeToString(h.Sum(nil))
	return set, set.Problems
}

func hashSet(files []FileInfo, probs []Problem) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f.Name)
	}
	for _, p := range probs {
		fmt.Fprintf(h, "%s\x00", p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func isManifestName(name string) bool {
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"))
}

func setKey(gk schema.GroupKind, ns, name string) string {
	return gk.Group + "/" + gk.Kind + "/" + ns + "/" + name
}

var varPattern = regexp.MustCompile(`@@([A-Z][A-Z0-9_]*)@@`)

// substitute replaces the @@VAR@@ markers of text. An unknown variable, or
// one without a value, is a problem with its line: applying an empty or
// literal marker would make a broken object.
func substitute(file string, text []byte, vars Vars) ([]byte, []Problem) {
	values := vars.values()
	var probs []Problem
	for i, line := range bytes.Split(text, []byte("\n")) {
		for _, m := range varPattern.FindAllSubmatch(line, -1) {
			v, ok := values[string(m[1])]
			switch {
			case !ok:
				probs = append(probs, Problem{File: file, Line: i + 1, Message: fmt.Sprintf("unknown variable %s", m[0])})
			case v == "":
				probs = append(probs, Problem{File: file, Line: i + 1, Message: fmt.Sprintf("variable %s has no value", m[0])})
			}
		}
	}
	if len(probs) > 0 {
		return text, probs
	}
	out := varPattern.ReplaceAllFunc(text, func(m []byte) []byte {
		return []byte(values[string(m[2:len(m)-2])])
	})
	return out, nil
}

// document is one YAML document of a file and the line it starts on.
type document struct {
	start int // line of the document's first line in the file (1-based)
	line  int // line of its first line with content
	text  []byte
}

// splitDocuments splits a multi-document YAML file on its "---" lines,
// keeping each document's first line in the file so that errors can name
// lines of the file.
func splitDocuments(text []byte) []document {
	var docs []document
	lines := bytes.SplitAfter(text, []byte("\n"))
	cur := document{start: 1}
	var buf bytes.Buffer
	flush := func() {
		cur.text = append([]byte(nil), buf.Bytes()...)
		docs = append(docs, cur)
		buf.Reset()
	}
	for i, l := range lines {
		trimmed := strings.TrimRight(string(l), " \t\r\n")
		if trimmed == "---" || strings.HasPrefix(trimmed, "--- #") {
			flush()
			cur = document{start: i + 2}
			continue
		}
		if cur.line == 0 {
			t := strings.TrimSpace(trimmed)
			if t != "" && !strings.HasPrefix(t, "#") {
				cur.line = i + 1
			}
		}
		buf.Write(l)
	}
	flush()
	var out []document
	for _, d := range docs {
		if d.line > 0 { // not empty or comments only
			out = append(out, d)
		}
	}
	return out
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// parseFile parses the documents of a file into objects. A document that
// does not parse is a problem with the line in the file; the other
// documents still load.
func parseFile(file string, text []byte) ([]Manifest, []Problem) {
	var ms []Manifest
	var probs []Problem
	for _, d := range splitDocuments(text) {
		js, err := yaml.YAMLToJSONStrict(d.text)
		if err != nil {
			line := d.line
			msg := err.Error()
			if m := yamlLine.FindStringSubmatchIndex(msg); m != nil {
				n, _ := strconv.Atoi(msg[m[2]:m[3]])
				line = d.start + n - 1
				// The line is in the problem's position; drop it
				// from the message.
				msg = msg[:m[0]] + msg[m[1]:]
			}
			msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
			msg = strings.Join(strings.Fields(msg), " ")
			msg = strings.ReplaceAll(msg, ": :", ":")
			probs = append(probs, Problem{File: file, Line: line, Message: "invalid YAML: " + msg})
			continue
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		// Errors never quote the document: it may be a Secret.
		var content map[string]any
		if err := json.Unmarshal(js, &content); err != nil {
			probs = append(probs, Problem{File: file, Line: d.line, Message: "not a Kubernetes object: the document is not a mapping"})
			continue
		}
		obj := &unstructured.Unstructured{Object: content}
		if err := checkObject(obj); err != nil && !obj.IsList() {
			probs = append(probs, Problem{File: file, Line: d.line, Message: err.Error()})
			continue
		}
		var objs []*unstructured.Unstructured
		if obj.IsList() {
			list, err := obj.ToList()
			if err != nil {
				probs = append(probs, Problem{File: file, Line: d.line, Message: "invalid list: every item must be a mapping"})
				continue
			}
			for i := range list.Items {
				objs = append(objs, &list.Items[i])
			}
		} else {
			objs = append(objs, obj)
		}
		for _, o := range objs {
			if err := checkObject(o); err != nil {
				probs = append(probs, Problem{File: file, Line: d.line, Message: err.Error()})
				continue
			}
			ms = append(ms, Manifest{File: file, Line: d.line, Object: o})
		}
	}
	return ms, probs
}

func checkObject(o *unstructured.Unstructured) error {
	if o.GetAPIVersion() == "" || o.GetKind() == "" {
		return fmt.Errorf("not a Kubernetes object: apiVersion and kind are required")
	}
	if _, err := schema.ParseGroupVersion(o.GetAPIVersion()); err != nil {
		return fmt.Errorf("%s: invalid apiVersion %q", o.GetKind(), o.GetAPIVersion())
	}
	if o.GetName() == "" {
		if o.GetGenerateName() != "" {
			return fmt.Errorf("%s: metadata.generateName is not supported, set metadata.name", o.GetKind())
		}
		return fmt.Errorf("%s: metadata.name is required", o.GetKind())
	}
	return nil
}
