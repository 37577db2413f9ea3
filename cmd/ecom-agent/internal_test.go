package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenMan checks the man pages the package ships: one per visible
// command, none for hidden ones, dated by SOURCE_DATE_EPOCH and the same
// bytes on a second run.
func TestGenMan(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1796014123") // 2026-11-30
	var runs [2]map[string]string
	for i := range runs {
		dir := t.TempDir()
		if code, _, errOut := runCLI(t, "internal", "gen-man", dir); code != exitOK {
			t.Fatalf("gen-man exited %d: %s", code, errOut)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		runs[i] = map[string]string{}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			runs[i][e.Name()] = string(data)
		}
	}
	for _, want := range []string{"ecom-agent.1", "ecom-agent-join.1", "ecom-agent-status.1", "ecom-agent-token-create.1", "ecom-agent-etcd-snapshot-save.1", "ecom-agent-etcd-recover.1", "ecom-agent-etcd-restore.1", "ecom-agent.toml.5"} {
		if _, ok := runs[0][want]; !ok {
			t.Errorf("no %s", want)
		}
	}
	for name, page := range runs[0] {
		if strings.Contains(name, "internal") {
			t.Errorf("%s: hidden commands get no man page", name)
		}
		if !strings.Contains(page, `.TH "`) || !strings.Contains(page, `"Nov 2026"`) || strings.Contains(page, "Auto generated") {
			t.Errorf("%s: header not dated by SOURCE_DATE_EPOCH, or cobra's auto-generated tag:\n%.300s", name, page)
		}
		if runs[1][name] != page {
			t.Errorf("%s differs between two runs", name)
		}
	}
	// The root page has the exit codes and the files; the config's page
	// is section 5 and carries the example, every key of it.
	root := runs[0]["ecom-agent.1"]
	for _, want := range []string{".SH EXIT STATUS", "78  invalid configuration", ".SH FILES", "/etc/ecom-agent/config.toml", "\\fBecom-agent.toml\\fP(5)"} {
		if !strings.Contains(root, want) {
			t.Errorf("ecom-agent.1 lacks %q", want)
		}
	}
	if i, j := strings.Index(root, ".SH EXIT STATUS"), strings.Index(root, ".SH SEE ALSO"); i < 0 || j < i {
		t.Error("ecom-agent.1: EXIT STATUS not before SEE ALSO")
	}
	toml := runs[0]["ecom-agent.toml.5"]
	if !strings.HasPrefix(toml, `.TH "ECOM-AGENT.TOML" "5"`) || !strings.Contains(toml, "[gossip]") || !strings.Contains(toml, ".SH FILES") {
		t.Errorf("ecom-agent.toml.5:\n%.600s", toml)
	}
	if code, _, _ := runCLI(t, "internal", "gen-man"); code != exitUsage {
		t.Errorf("gen-man without DIR exited %d, want %d", code, exitUsage)
	}
}
