package main

import (
	"encoding/json"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/config"
)

// A mistyped subcommand inside a group fails with a suggestion instead of
// printing the group's help and exiting 0.
func TestUnknownSubcommandIsAUsageError(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"certs", "check-expiry"}, `unknown command "check-expiry" for "ecom-agent certs"; did you mean check-expiration?`},
		{[]string{"certs", "renw"}, "did you mean renew?"},
		{[]string{"token", "lst"}, `unknown command "lst" for "ecom-agent token"; did you mean list?`},
		{[]string{"help", "nope"}, `unknown command "nope" for "ecom-agent"`},
		{[]string{"help", "certs", "check-expiry"}, "did you mean check-expiration?"},
		{[]string{"completion", "tcsh"}, `unknown command "tcsh" for "ecom-agent completion"; its commands are bash, fish, powershell or zsh`},
		{[]string{"config", "valdate"}, "did you mean validate?"},
		{[]string{"stauts"}, "status"},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d and %q", tc.args, code, out, errOut, exitUsage, tc.want)
		}
	}
	if _, _, errOut := runCLI(t, "certs", "check-expiry"); !strings.Contains(errOut, "Run 'ecom-agent certs --help' for usage.") {
		t.Errorf("the hint does not name the group: %q", errOut)
	}
	// A group alone, and help for a real command, still print help.
	for _, args := range [][]string{{"certs"}, {"help", "status"}, {"help", "certs", "renew"}, {"completion", "--help"}} {
		if code, out, errOut := runCLI(t, args...); code != exitOK || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

func TestLogLevelIsChecked(t *testing.T) {
	code, _, errOut := runCLI(t, "--log-level=verbose", "version")
	if code != exitUsage || !strings.Contains(errOut, `invalid argument "verbose" for "--log-level" flag: want debug, info, warn or error`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	for _, lvl := range []string{"debug", "INFO", "warn", "error"} {
		if code, _, errOut := runCLI(t, "--log-level", lvl, "version"); code != exitOK {
			t.Errorf("--log-level %s: exit %d, %s", lvl, code, errOut)
		}
	}
	if code, _, _ := runCLI(t, "--log-level", "info+2", "version"); code != exitUsage {
		t.Errorf("--log-level info+2: exit %d, want %d", code, exitUsage)
	}
}

// Every -o takes the same words: table, json, yaml; render's and token
// create's old "text" is still accepted.
func TestOutputFormatsAreOneVocabulary(t *testing.T) {
	for _, cmd := range [][]string{{"status"}, {"verify"}, {"members"}, {"certs", "check-expiration"}, {"render"}, {"token", "create"}, {"version"}} {
		code, out, errOut := runCLI(t, append(cmd, "-o", "xml")...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, "want table, json or yaml") {
			t.Errorf("%v -o xml: exit %d, stdout %q, stderr %q", cmd, code, out, errOut)
		}
	}
	cfg := writeConfig(t, testConfigTOML)
	for _, format := range []string{"table", "text"} {
		if code, out, errOut := runCLI(t, "render", "--config", cfg, "--root", t.TempDir(), "-o", format); code != exitOK || !strings.Contains(out, " created, ") {
			t.Errorf("render -o %s: exit %d, %s", format, code, errOut)
		}
	}
	// render -o json names each file where the table shows it.
	root := t.TempDir()
	code, out, errOut := runCLI(t, "render", "--config", cfg, "--root", root, "-o", "json")
	var files []struct{ File, Path, Action string }
	if err := json.Unmarshal([]byte(out), &files); code != exitOK || err != nil || len(files) == 0 {
		t.Fatalf("render -o json: exit %d, %v, %s", code, err, errOut)
	}
	if f := files[0]; f.File != root+f.Path || f.Action != "created" {
		t.Errorf("render -o json: %+v under %s", f, root)
	}
}

func TestVersionJSON(t *testing.T) {
	code, out, errOut := runCLI(t, "version", "-o", "json")
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); code != exitOK || err != nil {
		t.Fatalf("exit %d, %v, %s", code, err, errOut)
	}
	for key, want := range map[string]string{"go": runtime.Version(), "kubernetes": config.DefaultKubernetesVersion} {
		if v[key] != want {
			t.Errorf("%s = %v, want %s", key, v[key], want)
		}
	}
	if etcd, _ := v["etcd"].(string); !regexp.MustCompile(`^3\.\d+\.\d+`).MatchString(etcd) {
		t.Errorf("etcd = %v", v["etcd"])
	}
	if _, ok := v["commit"]; !ok || v["version"] == "" {
		t.Errorf("version or commit missing: %s", out)
	}
	// --version and version print the same.
	_, text, _ := runCLI(t, "version")
	if _, flag, _ := runCLI(t, "--version"); flag != text || !strings.Contains(text, "etcd        3.") {
		t.Errorf("version:\n%s--version:\n%s", text, flag)
	}
}

// Each exit code means one thing: an invalid config is not status's
// down, and docs/operations.md lists the same codes as the help.
func TestExitCodesAreDistinctAndDocumented(t *testing.T) {
	if exitConfig == statusDown || exitConfig != 78 {
		t.Errorf("exitConfig = %d, statusDown = %d", exitConfig, statusDown)
	}
	docs, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(docs), "\n## Exit codes\n")
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile(`(?m)^\| (\d+) \|`)
	var documented, helped []string
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1])
	}
	for _, m := range regexp.MustCompile(`(?m)^  (\d+) `).FindAllStringSubmatch(exitCodesHelp, -1) {
		helped = append(helped, m[1])
	}
	if strings.Join(documented, " ") != strings.Join(helped, " ") || len(helped) < 9 {
		t.Errorf("docs/operations.md lists exit codes %v, the help %v", documented, helped)
	}
	for _, code := range []int{exitOK, exitFailure, statusDown, exitPreflight, exitTimeout, exitRefused, exitUnsafe, exitUsage, exitConfig} {
		if !strings.Contains(" "+strings.Join(helped, " ")+" ", " "+strconv.Itoa(code)+" ") {
			t.Errorf("exit code %d is not in the help's table", code)
		}
	}
	if _, out, _ := runCLI(t, "--help"); !strings.Contains(out, "78  invalid configuration") {
		t.Errorf("--help does not list the exit codes:\n%s", out)
	}
}

// token's help says how a worker joins with one.
func TestTokenHelpSaysHowWorkersJoin(t *testing.T) {
	_, out, _ := runCLI(t, "token", "--help")
	out = strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"join.token_file", "chmod 600", "it never holds the cluster secret", "create", "list", "delete"} {
		if !strings.Contains(out, want) {
			t.Errorf("token --help lacks %q:\n%s", want, out)
		}
	}
}

// A command whose usage names a positional argument (NAME, DIR, TOKEN)
// takes one: the strict argument checks must not refuse what the help
// promises (`certs renew apiserver` once did).
func TestCommandsTakeTheArgumentsTheirUsageNames(t *testing.T) {
	var walk func(cmd *cobra.Command)
	checked := 0
	walk = func(cmd *cobra.Command) {
		fields := strings.Fields(cmd.Use)
		for i := 1; i < len(fields); i++ {
			f := fields[i]
			if strings.HasPrefix(f, "-") || strings.HasPrefix(fields[i-1], "-") || strings.ToLower(f) == f {
				continue // a flag, a flag's value, or "[command]"/"[etcd flags]"
			}
			checked++
			if err := cmd.ValidateArgs([]string{"apiserver"}); err != nil {
				t.Errorf("%s (usage %q) refuses an argument: %v", cmd.CommandPath(), cmd.Use, err)
			}
			break
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk((&cli{}).rootCommand())
	if checked < 3 {
		t.Errorf("checked %d commands; the walk found too few usages with arguments", checked)
	}
}
