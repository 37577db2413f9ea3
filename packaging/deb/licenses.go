package deb

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"unicode"
)

// otherLicense is the License short name of license files that match none
// of the licenses classify knows; their paragraph carries their text.
const otherLicense = "other"

// linkedModule is one Go module linked into a binary, with what its
// license files say.
type linkedModule struct {
	// Path and Version are the module as required; with -trimpath the
	// binary names its files Path@Version/..., replaced or not.
	Path, Version string
	// Replacement is "path version" (or a directory) when a replace
	// directive supplied the module's code; its license files are read.
	Replacement string
	// Dirs are the module's root, always first, then each subdirectory
	// with license files of its own (third_party/forked/golang, say).
	Dirs []licensedDir
}

// licensedDir is what the license and NOTICE files of one directory say.
type licensedDir struct {
	// Rel is the directory relative to the module's root, "" for the root.
	Rel string
	// Licenses are SPDX identifiers, sorted; otherLicense for a license
	// file that could not be classified, or when the root has none.
	Licenses []string
	// Copyright holds the files' copyright lines, without "Copyright (c)".
	Copyright []string
	// Text is the text of the license files that could not be classified.
	Text string
	// Notice is the text of the NOTICE files.
	Notice string
}

// goModCache is `go env GOMODCACHE`.
func goModCache(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("go env GOMODCACHE: empty")
	}
	return dir, nil
}

// escapeModulePath is a module path or version as the module cache spells
// it on disk (golang.org/x/mod/module.EscapePath): every upper-case letter
// becomes "!" and its lower case, so paths stay distinct on file systems
// that ignore case.
func escapeModulePath(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// moduleDir is where m's code is: its directory in the module cache, or
// the directory a replace directive names (a relative one resolved against
// the current directory, the main module's when make runs mkdeb).
func moduleDir(modCache string, m *debug.Module) string {
	if m.Version == "" { // a directory replacement
		return m.Path
	}
	return filepath.Join(modCache, filepath.FromSlash(escapeModulePath(m.Path)+"@"+escapeModulePath(m.Version)))
}

// linkedModules reads the licenses of every module in bi, sorted by path.
// A module missing from the module cache is an error: the machine that
// packages a binary has just built it from there.
func linkedModules(bi *debug.BuildInfo, modCache string) ([]linkedModule, error) {
	var mods []linkedModule
	for _, dep := range bi.Deps {
		lm := linkedModule{Path: dep.Path, Version: dep.Version}
		src := dep
		if dep.Replace != nil {
			src = dep.Replace
			lm.Replacement = strings.TrimSpace(src.Path + " " + src.Version)
		}
		dir := moduleDir(modCache, src)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("module %s %s (linked into the binary) is not at %s: run `go mod download %s@%s` where the binary was built",
				src.Path, src.Version, dir, src.Path, src.Version)
		}
		dirs, err := readLicenses(dir)
		if err != nil {
			return nil, fmt.Errorf("module %s %s: %w", src.Path, src.Version, err)
		}
		lm.Dirs = dirs
		mods = append(mods, lm)
	}
	slices.SortFunc(mods, func(a, b linkedModule) int { return strings.Compare(a.Path, b.Path) })
	return mods, nil
}

// licenseFileName matches LICENSE, LICENSE.txt, LICENSE.md, LICENSE_WINDOWS,
// LICENSE.libyaml, LICENCE, COPYING and the like, in any case;
// noticeFileName NOTICE and NOTICE.txt, the attribution notices the
// Apache License has redistributors pass on; notLicenseExt are the
// extensions of programs and data that such names may also have
// (license.go, LICENSE-3rdparty.csv).
var (
	licenseFileName = regexp.MustCompile(`(?i)^(un)?(licen[cs]e|copying)([._-].*)?$`)
	noticeFileName  = regexp.MustCompile(`(?i)^notice([._-].*)?$`)
	notLicenseExt   = []string{".go", ".s", ".c", ".h", ".csv", ".json", ".yml", ".yaml", ".proto", ".prototext", ".sh", ".py"}
)

// readLicenses classifies the license files of the module at dir: those at
// its root, then those of each subdirectory (but testdata, vendor and the
// directories go ignores), sorted by directory.
func readLicenses(dir string) ([]licensedDir, error) {
	type file struct{ rel, name, text string }
	var licenses, notices []file
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := e.Name()
		if e.IsDir() {
			if p != dir && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		license, notice := licenseFileName.MatchString(name), noticeFileName.MatchString(name)
		if !e.Type().IsRegular() || !license && !notice || slices.Contains(notLicenseExt, strings.ToLower(path.Ext(name))) {
			return nil
		}
		rel, err := filepath.Rel(dir, filepath.Dir(p))
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); rel == "." {
			rel = ""
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f := file{rel, name, strings.TrimSpace(strings.ToValidUTF8(string(data), "\uFFFD"))}
		if license {
			licenses = append(licenses, f)
		} else {
			notices = append(notices, f)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	byDir := map[string]*licensedDir{"": {}}
	unknown := map[string][]string{}
	notice := map[string][]string{}
	addCopyright := func(d *licensedDir, text string) {
		for _, c := range copyrightLines(text) {
			if !slices.Contains(d.Copyright, c) {
				d.Copyright = append(d.Copyright, c)
			}
		}
	}
	for _, f := range licenses {
		d := byDir[f.rel]
		if d == nil {
			d = &licensedDir{Rel: f.rel}
			byDir[f.rel] = d
		}
		addCopyright(d, f.text)
		found := classify(f.text)
		if len(found) == 0 {
			found = []string{otherLicense}
			unknown[f.rel] = append(unknown[f.rel], f.name+":\n\n"+f.text)
		}
		for _, id := range found {
			if !slices.Contains(d.Licenses, id) {
				d.Licenses = append(d.Licenses, id)
			}
		}
	}
	for _, f := range notices {
		if d := byDir[f.rel]; d != nil {
			addCopyright(d, f.text)
			notice[f.rel] = append(notice[f.rel], f.text)
		} else { // no license beside it: the module's own
			addCopyright(byDir[""], f.text)
			notice[""] = append(notice[""], f.rel+"/"+f.name+":\n\n"+f.text)
		}
	}
	if root := byDir[""]; len(root.Licenses) == 0 {
		root.Licenses = []string{otherLicense}
		unknown[""] = append(unknown[""], "The module has no LICENSE, LICENCE or COPYING file: its license is not known.")
	}
	var dirs []licensedDir
	for rel, d := range byDir {
		slices.Sort(d.Licenses)
		d.Text = strings.Join(unknown[rel], "\n\n")
		d.Notice = strings.Join(notice[rel], "\n\n")
		dirs = append(dirs, *d)
	}
	slices.SortFunc(dirs, func(a, b licensedDir) int { return strings.Compare(a.Rel, b.Rel) })
	return dirs, nil
}

// classify names the licenses whose distinctive phrases text has, as SPDX
// identifiers: one text may hold several (go.yaml.in/yaml/v3's MIT and
// Apache-2.0). Nil when it knows none of them.
func classify(text string) []string {
	t := strings.Join(strings.Fields(strings.ToLower(text)), " ")
	has := func(phrases ...string) bool {
		for _, p := range phrases {
			if !strings.Contains(t, p) {
				return false
			}
		}
		return true
	}
	var ids []string
	if has("apache license", "version 2.0") {
		ids = append(ids, "Apache-2.0")
	}
	if has("redistribution and use in source and binary forms") && !has("advertising materials") {
		if has("used to endorse or promote") { // the third clause
			ids = append(ids, "BSD-3-Clause")
		} else {
			ids = append(ids, "BSD-2-Clause")
		}
	}
	if has("distribute this software for any purpose with or without fee is hereby granted") {
		ids = append(ids, "ISC")
	}
	if has("permission is hereby granted, free of charge, to any person obtaining a copy") {
		ids = append(ids, "MIT")
	}
	if has("mozilla public license") && (has("version 2.0") || has("v. 2.0")) {
		ids = append(ids, "MPL-2.0")
	}
	return ids
}

// copyrightLine is a line that starts with Copyright followed by (c), ©,
// a year or a capitalised name: not "copyright notice" in a license's
// conditions, nor "COPYRIGHT HOLDERS" in its disclaimer.
var copyrightLine = regexp.MustCompile(`^(?:Copyright:?\s+(?:\([cC]\)|©|[0-9]|\p{Lu})|COPYRIGHT:?\s+(?:\([cC]\)|©|[0-9]))`)

// copyrightMark is a leading "(c)", "©" or repeated "Copyright".
var copyrightMark = regexp.MustCompile(`^(?:(?:\([cC]\)|©|Copyright\b|COPYRIGHT\b):?\s*)+`)

// copyrightLines are text's copyright statements, without "Copyright (c)";
// templates like the Apache License's "Copyright [yyyy] [name ...]" are
// not statements.
func copyrightLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.Join(strings.Fields(strings.TrimRight(strings.TrimLeft(l, " \t*#>"), " \t\r*")), " ")
		lower := strings.ToLower(l)
		if !copyrightLine.MatchString(l) || strings.Contains(lower, "yyyy") || strings.Contains(lower, "year>") || strings.Contains(lower, "[year]") {
			continue
		}
		if c := copyrightMark.ReplaceAllString(l, ""); c != "" && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// field formats a DEP-5 field whose value may span lines: the first on the
// field's line, the others indented one space, empty ones as " .".
func field(name string, lines ...string) string {
	var b strings.Builder
	b.WriteString(name + ":")
	for i, l := range lines {
		l = strings.TrimRight(strings.ReplaceAll(l, "\t", "    "), " \r")
		switch {
		case i == 0 && l == "":
		case i == 0:
			b.WriteString(" " + l)
		case l == "" || l == ".":
			b.WriteString("\n .")
		default:
			b.WriteString("\n " + l)
		}
	}
	return b.String() + "\n"
}

// copyrightFile is the agent's DEP-5 copyright: head (the header and the
// "Files: *" paragraph), a paragraph for each module in mods (and each of
// its subdirectories with license files of their own) and one for the
// standard library of goVersion, then a stand-alone License paragraph for
// every short name used, from files/licenses/. The same inputs give the
// same bytes.
func copyrightFile(head []byte, goVersion string, mods []linkedModule) ([]byte, error) {
	var b bytes.Buffer
	b.Write(bytes.TrimRight(head, "\n"))
	b.WriteString("\n")
	used := map[string]bool{}
	for _, l := range strings.Split(string(head), "\n") {
		if id, ok := strings.CutPrefix(l, "License: "); ok {
			used[strings.TrimSpace(id)] = true
		}
	}
	for _, m := range mods {
		for i, d := range m.Dirs {
			files := m.Path + "@" + m.Version + "/*"
			if d.Rel != "" {
				files = m.Path + "@" + m.Version + "/" + d.Rel + "/*"
			}
			b.WriteString("\n" + field("Files", files))
			holders := d.Copyright
			if len(holders) == 0 {
				holders = []string{"the authors of " + m.Path}
			}
			b.WriteString(field("Copyright", holders...))
			lic := strings.Join(d.Licenses, " and ")
			if d.Text != "" {
				b.WriteString(field("License", append([]string{lic}, strings.Split(d.Text, "\n")...)...))
			} else {
				b.WriteString(field("License", lic))
			}
			var comment []string
			if i == 0 && m.Replacement != "" {
				comment = append(comment, "Replaced by "+m.Replacement+", whose license files are the ones read.")
			}
			if d.Text != "" {
				comment = append(comment, "A license could not be classified: its text is the License field's.")
			}
			if d.Notice != "" {
				comment = append(comment, "NOTICE:", "")
				comment = append(comment, strings.Split(d.Notice, "\n")...)
			}
			if len(comment) > 0 {
				b.WriteString(field("Comment", comment...))
			}
			for _, id := range d.Licenses {
				if id != otherLicense {
					used[id] = true
				}
			}
		}
	}
	if goVersion != "" {
		b.WriteString("\n" + field("Files", "go/src/*"))
		b.WriteString(field("Copyright", "2009 The Go Authors"))
		b.WriteString(field("License", "BSD-3-Clause"))
		b.WriteString(field("Comment", "The Go standard library of "+goVersion+" (go/src in Go's source archive)."))
		used["BSD-3-Clause"] = true
	}
	var ids []string
	for id := range used {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		text, err := static.ReadFile("files/licenses/" + id)
		if err != nil {
			return nil, fmt.Errorf("no stand-alone text for license %s: %w", id, err)
		}
		b.WriteString("\n" + field("License", append([]string{id}, strings.Split(strings.TrimRight(string(text), "\n"), "\n")...)...))
	}
	return b.Bytes(), nil
}

// agentCopyright is the agent package's copyright file for binary, the
// modules it links read from modCache (`go env GOMODCACHE` when empty).
func agentCopyright(ctx context.Context, binary, modCache string) ([]byte, error) {
	bi, err := buildinfo.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("copyright: reading the build info of %s: %w", binary, err)
	}
	if modCache == "" && len(bi.Deps) > 0 {
		if modCache, err = goModCache(ctx); err != nil {
			return nil, fmt.Errorf("copyright: %w", err)
		}
	}
	mods, err := linkedModules(bi, modCache)
	if err != nil {
		return nil, fmt.Errorf("copyright: %w", err)
	}
	head, err := static.ReadFile("files/ecom-agent/copyright")
	if err != nil {
		return nil, err
	}
	return copyrightFile(head, bi.GoVersion, mods)
}
