package seed

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

func cm(name, extra string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: demo\ndata:\n  k: " + extra + "\n"
}

var testVars = Vars{ClusterName: "prod-eu", ClusterDomain: "cluster.local", ClusterDNSIP: "10.96.0.10", StorageDir: "/var/lib/ecom-agent-volumes", ImageRegistry: "ecom-agent.local", PodCIDR: "10.244.0.0/16"}

// newRoot returns a host root in a temporary directory and writes files
// into its manifests directory.
func newRoot(t *testing.T, files map[string]string) *hostfs.Root {
	t.Helper()
	root, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		writeDirFile(t, root, name, content)
	}
	return root
}

func writeDirFile(t *testing.T, root *hostfs.Root, name, content string) {
	t.Helper()
	if _, err := root.WriteFile(filepath.Join(ManifestsDir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func names(set *Set) []string {
	var out []string
	for _, m := range set.Manifests {
		out = append(out, m.File+":"+m.Object.GetName())
	}
	return out
}

func TestLoadOverridesSkipsAndNewFiles(t *testing.T) {
	embedded := fstest.MapFS{
		"10-a.yaml":  {Data: []byte(cm("a", "embedded"))},
		"20-b.yaml":  {Data: []byte(cm("b", "embedded"))},
		"30-c.yaml":  {Data: []byte(cm("c", "embedded"))},
		"40-e.yaml":  {Data: []byte(cm("e", "embedded"))},
		"README.md":  {Data: []byte("not a manifest")},
		"sub/x.yaml": {Data: []byte(cm("x", "in a subdirectory"))},
	}
	root := newRoot(t, map[string]string{
		"20-b.yaml":      cm("b", "override @@CLUSTER_NAME@@"),
		"30-c.yaml.skip": "",
		"40-e.skip":      "",
		"50-d.yml":       cm("d", "new @@CLUSTER_DOMAIN@@/@@CLUSTER_DNS_IP@@"),
		".50-d.yml.swp":  "editor junk",
		"notes.txt":      "ignored",
	})
	set, problems := Load(root, "", embedded, testVars)
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	wantFiles := []FileInfo{
		{Name: "10-a.yaml", Source: "embedded"},
		{Name: "20-b.yaml", Source: ManifestsDir + "/20-b.yaml"},
		{Name: "50-d.yml", Source: ManifestsDir + "/50-d.yml"},
	}
	if diff := cmp.Diff(wantFiles, set.Files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"10-a.yaml:a", "20-b.yaml:b", "50-d.yml:d"}, names(set)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	data := func(i int) string {
		v, _ := set.Manifests[i].Object.Object["data"].(map[string]any)["k"].(string)
		return v
	}
	if got := data(1); got != "override prod-eu" {
		t.Errorf("override not substituted: %q", got)
	}
	if got := data(2); got != "new cluster.local/10.96.0.10" {
		t.Errorf("new file not substituted: %q", got)
	}
	if set.Manifests[0].Line != 1 {
		t.Errorf("line of a.yaml's object: %d", set.Manifests[0].Line)
	}

	// No root, or a missing directory: the embedded set alone.
	for _, r := range []*hostfs.Root{nil, newRoot(t, nil)} {
		set, problems := Load(r, "", embedded, testVars)
		if len(problems) != 0 || len(set.Manifests) != 4 {
			t.Errorf("embedded only: %d objects, problems %v", len(set.Manifests), problems)
		}
	}
}

func TestLoadMalformedFileReportsFileAndLine(t *testing.T) {
	bad := cm("good-1", "v") + // lines 1-7
		"---\n" + // 8
		"# a comment\n" + // 9
		"apiVersion: v1\n" + // 10
		"kind: ConfigMap\n" + // 11
		"metadata:\n" + // 12
		"  name: broken\n" + // 13
		"data:\n" + // 14
		"  k: [unclosed\n" + // 15
		"  j: v\n" + // 16
		"---\n" + // 17
		cm("good-2", "v") // 18-
	root := newRoot(t, map[string]string{
		"60-bad.yaml":    bad,
		"61-nokind.yaml": "---\n\napiVersion: v1\nmetadata:\n  name: x\n",
		"62-dup.yaml":    "\n" + cm("z", "v"),
		"63-tabs.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: tab\n",
		"64-dupkey.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dk\n  name: dk2\n",
		"65-var.yaml":    cm("v", "@@CLUSTER_REGION@@"),
	})
	embedded := fstest.MapFS{"10-ok.yaml": {Data: []byte(cm("ok", "v") + "---\n" + cm("z", "v"))}}
	set, problems := Load(root, "", embedded, Vars{ClusterName: "c"})
	byFile := map[string]Problem{}
	for _, p := range problems {
		byFile[p.File] = p
		t.Logf("problem: %s", p)
	}
	wantLines := map[string]int{
		"60-bad.yaml":    15,
		"61-nokind.yaml": 3,
		"62-dup.yaml":    2,
		"63-tabs.yaml":   4,
		"64-dupkey.yaml": 5,
		"65-var.yaml":    7,
	}
	for file, line := range wantLines {
		p, ok := byFile[file]
		if !ok {
			t.Errorf("no problem for %s", file)
			continue
		}
		if p.Line != line {
			t.Errorf("%s: line %d, want %d (%s)", file, p.Line, line, p)
		}
	}
	if len(problems) != len(wantLines) {
		t.Errorf("%d problems, want %d", len(problems), len(wantLines))
	}
	if !strings.Contains(byFile["62-dup.yaml"].Message, "already defined at 10-ok.yaml:9") {
		t.Errorf("duplicate: %s", byFile["62-dup.yaml"])
	}
	if got := byFile["64-dupkey.yaml"].Message; got != `invalid YAML: yaml: unmarshal errors: key "name" already set in map` {
		t.Errorf("duplicate key message: %q", got)
	}
	if !strings.Contains(byFile["65-var.yaml"].Message, "unknown variable @@CLUSTER_REGION@@") {
		t.Errorf("unknown variable: %s", byFile["65-var.yaml"])
	}
	if diff := cmp.Diff([]string{"10-ok.yaml:ok", "10-ok.yaml:z", "60-bad.yaml:good-1", "60-bad.yaml:good-2"}, names(set)); diff != "" {
		t.Errorf("the rest must load (-want +got):\n%s", diff)
	}
	if set.Manifests[3].Line != 18 {
		t.Errorf("good-2 line %d, want 18", set.Manifests[3].Line)
	}

	// A variable without a value is a problem, not an empty string.
	_, problems = Load(nil, "", fstest.MapFS{"a.yaml": {Data: []byte("\n" + cm("a", "@@CLUSTER_DNS_IP@@"))}}, Vars{})
	if len(problems) != 1 || problems[0].Line != 8 || !strings.Contains(problems[0].Message, "has no value") {
		t.Errorf("empty variable: %v", problems)
	}
}

func TestLoadUnreadableDirAppliesNothing(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads a 000 directory; use a file in its place instead.
		root, _ := hostfs.New(t.TempDir())
		if _, err := root.WriteFile(ManifestsDir, []byte("not a directory"), 0o644); err != nil {
			t.Fatal(err)
		}
		set, problems := Load(root, "", fstest.MapFS{"a.yaml": {Data: []byte(cm("a", "v"))}}, testVars)
		if len(problems) != 1 || len(set.Manifests) != 0 || problems[0].File != ManifestsDir {
			t.Fatalf("want one problem and no objects, got %d objects, %v", len(set.Manifests), problems)
		}
		return
	}
	t.Skip("needs root")
}

func TestLoadHash(t *testing.T) {
	embedded := fstest.MapFS{"10-a.yaml": {Data: []byte(cm("a", "v"))}, "20-b.yaml": {Data: []byte(cm("b", "v"))}}
	root := newRoot(t, nil)
	hash := func() string {
		set, _ := Load(root, "", embedded, testVars)
		return set.Hash
	}
	seen := map[string]string{}
	step := func(what string) {
		t.Helper()
		h := hash()
		if h != hash() {
			t.Fatalf("%s: hash not stable", what)
		}
		if prev, dup := seen[h]; dup {
			t.Errorf("%s: same hash as %s", what, prev)
		}
		seen[h] = what
	}
	step("embedded")
	writeDirFile(t, root, "30-c.yaml", cm("c", "v"))
	step("file added")
	writeDirFile(t, root, "30-c.yaml", cm("c", "v2"))
	step("file edited")
	writeDirFile(t, root, "20-b.yaml.skip", "")
	step("file skipped")
	writeDirFile(t, root, "10-a.yaml", cm("a", "v"))
	if h := hash(); seen[h] != "file skipped" {
		t.Errorf("an override with the embedded content changed the hash")
	}
	// Variables are part of the content.
	root2 := newRoot(t, map[string]string{"x.yaml": cm("x", "@@CLUSTER_NAME@@")})
	s1, _ := Load(root2, "", nil, Vars{ClusterName: "one"})
	s2, _ := Load(root2, "", nil, Vars{ClusterName: "two"})
	if s1.Hash == s2.Hash {
		t.Errorf("hash ignores the variables")
	}
}

// TestEmbeddedManifestsLoad checks that the package's own manifests parse
// and use only known variables.
func TestEmbeddedManifestsLoad(t *testing.T) {
	set, problems := Load(nil, "", Embedded(), testVars)
	for _, p := range problems {
		t.Errorf("embedded manifest problem: %s", p)
	}
	if len(set.Manifests) == 0 {
		t.Fatal("no embedded manifests")
	}
	for _, m := range set.Manifests {
		js, _ := m.Object.MarshalJSON()
		if strings.Contains(string(js), "@@") {
			t.Errorf("%s:%d: %s %s: unsubstituted marker", m.File, m.Line, m.Object.GetKind(), m.Object.GetName())
		}
	}
	t.Logf("%d files, %d objects", len(set.Files), len(set.Manifests))
}

// An add-on switched off in the config leaves its file, and nothing else,
// out of the set.
func TestEmbeddedWithout(t *testing.T) {
	all, problems := Load(nil, "", Embedded(), testVars)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	set, problems := Load(nil, "", EmbeddedWithout(AddOnStorage, AddOnMetrics), testVars)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	files := map[string]int{}
	for _, m := range set.Manifests {
		files[m.File]++
	}
	if files[AddOnFile[AddOnStorage]] != 0 || files[AddOnFile[AddOnMetrics]] != 0 || files[AddOnFile[AddOnDNS]] == 0 {
		t.Errorf("files loaded %v", files)
	}
	var left int
	for _, m := range all.Manifests {
		if m.File != AddOnFile[AddOnStorage] && m.File != AddOnFile[AddOnMetrics] {
			left++
		}
	}
	if len(set.Manifests) != left || set.Hash == all.Hash {
		t.Errorf("%d manifests, want %d; hash changed: %v", len(set.Manifests), left, set.Hash != all.Hash)
	}
	if _, err := fs.ReadFile(EmbeddedWithout(AddOnDNS), AddOnFile[AddOnDNS]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reading a hidden file: %v", err)
	}
}
