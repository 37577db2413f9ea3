package deb

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

func TestEscapeModulePath(t *testing.T) {
	for in, want := range map[string]string{
		"github.com/BurntSushi/toml":        "github.com/!burnt!sushi/toml",
		"github.com/Masterminds/semver/v3":  "github.com/!masterminds/semver/v3",
		"golang.org/x/sys":                  "golang.org/x/sys",
		"v1.2.3-RC.1":                       "v1.2.3-!r!c.1",
		"github.com/AlekSi/pointer@v1.2.0":  "github.com/!alek!si/pointer@v1.2.0",
		"gopkg.in/natefinch/lumberjack.v2":  "gopkg.in/natefinch/lumberjack.v2",
		"github.com/Microsoft/go-winio/ABC": "github.com/!microsoft/go-winio/!a!b!c",
	} {
		if got := escapeModulePath(in); got != want {
			t.Errorf("escapeModulePath(%q) = %q, want %q", in, got, want)
		}
	}
}

// licenseText is the stand-alone text of id, which classify must know.
func licenseText(t *testing.T, id string) string {
	t.Helper()
	data, err := static.ReadFile("files/licenses/" + id)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"MIT", "The MIT License (MIT)\n\nCopyright (c) 2013 TOML authors\n\n" + licenseText(t, "MIT"), []string{"MIT"}},
		{"ISC", "ISC License\n\n" + licenseText(t, "ISC"), []string{"ISC"}},
		{"BSD-3", "Copyright (c) 2009 The Go Authors.\n\n" + strings.ReplaceAll(licenseText(t, "BSD-3-Clause"), "the copyright holder", "Google Inc."), []string{"BSD-3-Clause"}},
		{"BSD-3, the names clause alone", "Redistribution and use in source and binary\n forms ... The names of its contributors may not be used to endorse or promote products", []string{"BSD-3-Clause"}},
		{"BSD-2", licenseText(t, "BSD-2-Clause"), []string{"BSD-2-Clause"}},
		{"BSD-4", "Redistribution and use in source and binary forms ... All advertising materials mentioning features", nil},
		{"Apache full", "                              Apache License\n                        Version 2.0, January 2004\n", []string{"Apache-2.0"}},
		{"Apache notice", licenseText(t, "Apache-2.0"), []string{"Apache-2.0"}},
		{"MPL", "Mozilla Public License Version 2.0\n==================================\n", []string{"MPL-2.0"}},
		{"MPL exhibit", licenseText(t, "MPL-2.0"), []string{"MPL-2.0"}},
		{"MIT and Apache", "#### MIT License ####\n" + licenseText(t, "MIT") + "\n### Apache License ###\nLicensed under the Apache License, Version 2.0", []string{"Apache-2.0", "MIT"}},
		{"unknown", "DO WHAT THE FUCK YOU WANT TO PUBLIC LICENSE", nil},
	} {
		if got := classify(tc.text); !slices.Equal(got, tc.want) {
			t.Errorf("%s: classify = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCopyrightLines(t *testing.T) {
	text := `The MIT License (MIT)

Copyright (c) 2013 TOML authors
   Copyright 2009 The Go Authors. All rights reserved.
Copyright © 2020 Someone <someone@example.com>
Copyright (C) 2014 by Oleku Konko
Copyright The Kubernetes Authors.
COPYRIGHT (c) 2001 Shouting Ltd
Copyright (c) 2013 TOML authors
      Copyright [yyyy] [name of copyright owner]
   Copyright {yyyy} {name of copyright owner}
Copyright (c) <year> <copyright holders>
copyright notice and this permission notice shall be included
THIS SOFTWARE IS PROVIDED BY THE
COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
Copyright notice: none
`
	want := []string{
		"2013 TOML authors",
		"2009 The Go Authors. All rights reserved.",
		"2020 Someone <someone@example.com>",
		"2014 by Oleku Konko",
		"The Kubernetes Authors.",
		"2001 Shouting Ltd",
	}
	if got := copyrightLines(text); !slices.Equal(got, want) {
		t.Errorf("copyrightLines =\n%q\nwant\n%q", got, want)
	}
}

// writeModule writes files (relative name → text) as module path@version
// in the module cache at cache.
func writeModule(t *testing.T, cache, path, version string, files map[string]string) {
	t.Helper()
	dir := moduleDir(cache, &debug.Module{Path: path, Version: version})
	for name, text := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o444); err != nil {
			t.Fatal(err)
		}
	}
}

// checkDEP5 checks the DEP-5 structure of a copyright file: every Files
// paragraph has Copyright and License, every short name a Files paragraph
// uses without giving its text has exactly one stand-alone License
// paragraph, and every stand-alone one is used. It returns the Files
// paragraphs' patterns → License field.
func checkDEP5(t *testing.T, text string) map[string]string {
	t.Helper()
	paras := strings.Split(strings.TrimRight(text, "\n"), "\n\n")
	if !strings.HasPrefix(paras[0], "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n") {
		t.Errorf("header paragraph: %q", paras[0])
	}
	files := map[string]string{}
	needed := map[string]bool{}
	standalone := map[string]int{}
	for _, p := range paras[1:] {
		fields := map[string]string{}
		var last string
		for _, l := range strings.Split(p, "\n") {
			if strings.HasPrefix(l, " ") {
				if last == "" {
					t.Fatalf("continuation line first in paragraph:\n%s", p)
				}
				fields[last+"+"] += l + "\n"
				continue
			}
			name, value, ok := strings.Cut(l, ":")
			if !ok || strings.Contains(name, " ") {
				t.Fatalf("not a field: %q in\n%s", l, p)
			}
			if _, dup := fields[name]; dup {
				t.Fatalf("field %s twice in\n%s", name, p)
			}
			fields[name], last = strings.TrimSpace(value), name
		}
		lic := fields["License"]
		if lic == "" {
			t.Errorf("paragraph without a License short name:\n%s", p)
		}
		if pattern, ok := fields["Files"]; ok {
			if fields["Copyright"] == "" {
				t.Errorf("Files paragraph without Copyright:\n%s", p)
			}
			if _, dup := files[pattern]; dup {
				t.Errorf("Files: %s twice", pattern)
			}
			files[pattern] = lic
			if fields["License+"] == "" {
				for _, id := range strings.Split(lic, " and ") {
					needed[id] = true
				}
			}
			continue
		}
		if fields["License+"] == "" {
			t.Errorf("stand-alone License paragraph without text:\n%s", p)
		}
		standalone[lic]++
	}
	for id := range needed {
		if standalone[id] != 1 {
			t.Errorf("license %s: %d stand-alone paragraphs, want 1", id, standalone[id])
		}
	}
	for id := range standalone {
		if !needed[id] {
			t.Errorf("stand-alone License: %s is not used", id)
		}
	}
	return files
}

// TestCopyrightFromModuleCache runs the generator on a made-up module cache:
// escaped paths, replace directives, subdirectories with licenses of their
// own, NOTICE files, a license it cannot classify, and a module missing.
func TestCopyrightFromModuleCache(t *testing.T) {
	cache := t.TempDir()
	writeModule(t, cache, "github.com/Foo/bar", "v1.0.0", map[string]string{
		"LICENSE":                           "Copyright (c) 2020 Foo Ltd\n\n" + licenseText(t, "MIT"),
		"NOTICE":                            "Bar\nCopyright 2021 Foo Ltd\n",
		"third_party/forked/golang/LICENSE": "Copyright 2009 The Go Authors.\n\n" + licenseText(t, "BSD-3-Clause"),
		"testdata/LICENSE":                  "not a license of the module",
		"license.go":                        "package bar",
	})
	writeModule(t, cache, "example.com/fork", "v1.1.0", map[string]string{"LICENSE.md": licenseText(t, "ISC")})
	writeModule(t, cache, "example.com/odd", "v0.1.0", map[string]string{"COPYING": "Do what you like.\n\tReally."})
	writeModule(t, cache, "example.com/none", "v0.0.1", map[string]string{"go.mod": "module example.com/none\n"})
	writeModule(t, cache, "example.com/mpl", "v2.0.0+incompatible", map[string]string{"LICENSE": "Mozilla Public License Version 2.0\n"})
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Deps: []*debug.Module{
			{Path: "github.com/Foo/bar", Version: "v1.0.0"},
			{Path: "example.com/orig", Version: "v1.0.0", Replace: &debug.Module{Path: "example.com/fork", Version: "v1.1.0"}},
			{Path: "example.com/odd", Version: "v0.1.0"},
			{Path: "example.com/none", Version: "v0.0.1"},
			{Path: "example.com/mpl", Version: "v2.0.0+incompatible"},
		},
	}
	mods, err := linkedModules(bi, cache)
	if err != nil {
		t.Fatal(err)
	}
	head, err := static.ReadFile("files/ecom-agent/copyright")
	if err != nil {
		t.Fatal(err)
	}
	out, err := copyrightFile(head, bi.GoVersion, mods)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := copyrightFile(head, bi.GoVersion, mods)
	if !bytes.Equal(out, again) {
		t.Error("two runs differ")
	}
	text := string(out)
	files := checkDEP5(t, text)
	want := map[string]string{
		"*":                           "Apache-2.0",
		"github.com/Foo/bar@v1.0.0/*": "MIT",
		"github.com/Foo/bar@v1.0.0/third_party/forked/golang/*": "BSD-3-Clause",
		"example.com/orig@v1.0.0/*":                             "ISC",
		"example.com/odd@v0.1.0/*":                              "other",
		"example.com/none@v0.0.1/*":                             "other",
		"example.com/mpl@v2.0.0+incompatible/*":                 "MPL-2.0",
		"go/src/*":                                              "BSD-3-Clause",
	}
	for pattern, lic := range want {
		if files[pattern] != lic {
			t.Errorf("Files: %s has License %q, want %q", pattern, files[pattern], lic)
		}
	}
	if len(files) != len(want) {
		t.Errorf("Files paragraphs %q, want those of %q", files, want)
	}
	for _, s := range []string{
		"Copyright: 2020 Foo Ltd\n 2021 Foo Ltd\n",
		"Comment: NOTICE:\n .\n Bar\n Copyright 2021 Foo Ltd\n",
		"Comment: Replaced by example.com/fork v1.1.0, whose license files are the ones read.\n",
		"Copyright: the authors of example.com/orig\n",
		"License: other\n COPYING:\n .\n Do what you like.\n     Really.\n",
		"has no LICENSE, LICENCE or COPYING file",
		"Comment: The Go standard library of go1.26.8",
		"\nLicense: MIT\n Permission is hereby granted",
		"\nLicense: MPL-2.0\n",
		"/usr/share/common-licenses/MPL-2.0",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("copyright lacks %q:\n%s", s, text)
		}
	}
	if strings.Contains(text, "not a license of the module") || strings.Contains(text, "/usr/share/common-licenses/BSD\"") {
		t.Errorf("copyright has testdata or points to common-licenses/BSD:\n%s", text)
	}

	bi.Deps = append(bi.Deps, &debug.Module{Path: "example.com/Gone", Version: "v1.0.0"})
	_, err = linkedModules(bi, cache)
	if err == nil || !strings.Contains(err.Error(), "example.com/Gone v1.0.0") || !strings.Contains(err.Error(), "!gone@v1.0.0") {
		t.Errorf("a module missing from the cache: got %v, want an error naming it", err)
	}
}

// checkLinkedModules checks copyright lists every module the binary at bin
// links, each with a license classified, and is well-formed DEP-5.
func checkLinkedModules(t *testing.T, bin string, copyright []byte) {
	t.Helper()
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(bi.Deps) == 0 {
		t.Fatalf("%s links no module", bin)
	}
	files := checkDEP5(t, string(copyright))
	for _, d := range bi.Deps {
		lic, ok := files[d.Path+"@"+d.Version+"/*"]
		if !ok {
			t.Errorf("copyright lacks module %s %s", d.Path, d.Version)
		}
		if lic == "" || strings.Contains(lic, otherLicense) {
			t.Errorf("module %s %s: license %q", d.Path, d.Version, lic)
		}
	}
	if !strings.Contains(string(copyright), "The Go standard library of "+bi.GoVersion) {
		t.Error("copyright does not name the standard library's Go version")
	}
}

// TestCopyrightOfRealBinary generates the copyright of a real Go program
// (mkdeb, which links nfpm and its dependencies) from the module cache it
// was built from.
func TestCopyrightOfRealBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mkdeb")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "../cmd/mkdeb")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	copyright, err := agentCopyright(context.Background(), bin, "")
	if err != nil {
		t.Fatal(err)
	}
	checkLinkedModules(t, bin, copyright)
	for _, want := range []string{
		"Files: github.com/goreleaser/nfpm/v2@v2.45.2/*\nCopyright: ",
		"\nLicense: MIT\n Permission is hereby granted",
		"\nLicense: Apache-2.0\n",
	} {
		if !strings.Contains(string(copyright), want) {
			t.Errorf("copyright lacks %q", want)
		}
	}
	if i := strings.Index(string(copyright), "Files: github.com/goreleaser/nfpm/v2@v2.45.2/*"); i >= 0 {
		para, _, _ := strings.Cut(string(copyright[i:]), "\n\n")
		if !strings.Contains(para+"\n", "\nLicense: MIT\n") {
			t.Errorf("nfpm is MIT:\n%s", para)
		}
	}
}
