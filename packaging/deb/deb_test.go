package deb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// commitTime stands for SOURCE_DATE_EPOCH.
var commitTime = time.Date(2026, 11, 30, 4, 48, 43, 0, time.UTC)

func sum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

// dpkgDeb runs dpkg-deb when this machine has it (Debian does).
func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("no dpkg-deb here")
	}
	cmd := exec.Command("dpkg-deb", args...)
	cmd.Env = append(os.Environ(), "TZ=UTC") // listings show times in UTC
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// fakeKubeBins writes the six binaries into a new directory, with the
// given mode and mtime, so two copies differ in everything but content.
func fakeKubeBins(t *testing.T, mode os.FileMode, mtime time.Time) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range KubeBinaries {
		p := filepath.Join(dir, b)
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+b+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestKubeIsReproducible builds the companion package twice from copies
// of the same binaries that differ in mode and mtime, with different
// staging and output directories: the bytes must be the same.
func TestKubeIsReproducible(t *testing.T) {
	ctx := context.Background()
	var paths []string
	for i, src := range []string{
		fakeKubeBins(t, 0o700, time.Now()),
		fakeKubeBins(t, 0o775, time.Unix(1e9, 0)),
	} {
		k := Kube{
			Common: Common{Version: "1.37.2-1", MTime: commitTime, Staging: t.TempDir() + fmt.Sprint("/s", i)},
			BinDir: src,
		}
		p, err := k.Build(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if filepath.Base(paths[0]) != "ecom-agent-kubernetes_1.37.2-1_amd64.deb" {
		t.Errorf("file name %s", filepath.Base(paths[0]))
	}
	if a, b := sum(t, paths[0]), sum(t, paths[1]); a != b {
		t.Fatalf("two builds differ: %s %s", a, b)
	}
	list := dpkgDeb(t, "--contents", paths[0])
	for _, b := range KubeBinaries {
		if !regexpLine(list, "-rwxr-xr-x root/root", "2026-11-30 04:48 ./usr/bin/"+b) {
			t.Errorf("%s not in the package as root:root 0755 with the commit time:\n%s", b, list)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		if !strings.Contains(line, " root/root ") || !strings.Contains(line, " 2026-11-30 04:48 ") {
			t.Errorf("entry not root:root at the commit time: %s", line)
		}
	}
	// Debian's and upstream's packages of the same programs are replaced,
	// not overwritten by a failing dpkg -i.
	info := dpkgDeb(t, "--info", paths[0])
	for _, want := range []string{"Conflicts: kubernetes-client, kubectl, kubelet, kubeadm\n", "Replaces: kubernetes-client, kubectl, kubelet, kubeadm\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}
}

// regexpLine reports whether some line of list starts with prefix and ends
// with suffix.
func regexpLine(list, prefix, suffix string) bool {
	for _, l := range strings.Split(list, "\n") {
		if strings.HasPrefix(l, prefix) && strings.HasSuffix(l, suffix) {
			return true
		}
	}
	return false
}

// buildAgentBinary builds ecom-agent the way `make deb` does.
func buildAgentBinary(t *testing.T, version, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X github.com/ecom-platform/ecom-agent/buildinfo.Version="+version,
		"-o", out, "./cmd/ecom-agent")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
}

// TestAgentIsReproducible builds the agent binary twice, checks the two are
// the same bytes, then packages each into its own directory: the two
// packages must be the same bytes too. It also checks what the package
// holds. It takes a minute or two (two links of a large binary).
func TestAgentIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent twice")
	}
	ctx := context.Background()
	const version = "0.0~git20261130.0123abc-1"
	var bins, debs []string
	for i := range 2 {
		bin := filepath.Join(t.TempDir(), "ecom-agent")
		buildAgentBinary(t, version, bin)
		bins = append(bins, bin)
		a := Agent{
			Common:      Common{Version: version, MTime: commitTime, Staging: filepath.Join(t.TempDir(), fmt.Sprint("s", i))},
			Binary:      bin,
			Config:      "../config.toml",
			KubeVersion: "1.37.2",
		}
		p, err := a.Build(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		debs = append(debs, p)
	}
	if a, b := sum(t, bins[0]), sum(t, bins[1]); a != b {
		t.Fatalf("two builds of the binary differ: %s %s", a, b)
	}
	if a, b := sum(t, debs[0]), sum(t, debs[1]); a != b {
		t.Fatalf("two builds of the package differ: %s %s", a, b)
	}
	if got, want := filepath.Base(debs[0]), "ecom-agent_"+version+"_amd64.deb"; got != want {
		t.Errorf("file name %s, want %s", got, want)
	}

	list := dpkgDeb(t, "--contents", debs[0])
	var paths []string
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Fields(l)
		paths = append(paths, f[len(f)-1])
		if f[1] != "root/root" || !strings.Contains(l, " 2026-11-30 04:48 ") {
			t.Errorf("entry not root:root at the commit time: %s", l)
		}
	}
	for _, want := range []string{
		"./usr/bin/ecom-agent",
		"./lib/systemd/system/ecom-agent.service",
		"./usr/share/doc/ecom-agent/examples/config.toml",
		"./etc/ecom-agent/manifests.d/",
		"./etc/default/ecom-agent",
		"./usr/share/man/man1/ecom-agent.1.gz",
		"./usr/share/man/man1/ecom-agent-join.1.gz",
		"./usr/share/man/man1/ecom-agent-etcdctl.1.gz",
		"./usr/share/man/man1/ecom-agent-etcd-snapshot-save.1.gz",
		"./usr/share/man/man1/ecom-agent-etcd-recover.1.gz",
		"./usr/share/man/man1/ecom-agent-etcd-restore.1.gz",
		"./usr/share/man/man1/ecom-agent-token-create.1.gz",
		"./usr/share/man/man5/ecom-agent.toml.5.gz",
		"./usr/share/bash-completion/completions/ecom-agent",
		"./usr/share/zsh/vendor-completions/_ecom-agent",
		"./usr/share/fish/vendor_completions.d/ecom-agent.fish",
		"./usr/share/doc/ecom-agent/copyright",
		"./usr/share/doc/ecom-agent/changelog.Debian.gz",
		"./usr/share/lintian/overrides/ecom-agent",
	} {
		if !slices.Contains(paths, want) {
			t.Errorf("package lacks %s", want)
		}
	}
	for _, p := range paths {
		if strings.Contains(p, "internal") {
			t.Errorf("package has %s: hidden commands get no man page", p)
		}
	}
	if got := dpkgDeb(t, "--ctrl-tarfile", debs[0]); !strings.Contains(got, "conffiles") {
		t.Error("no conffiles")
	}
	// The node's config is its own (written by the operator or
	// cloud-init), never a conffile an upgrade prompts over; the
	// environment file ships commented out.
	conffiles := dpkgDeb(t, "--info", debs[0], "conffiles")
	if conffiles != "/etc/default/ecom-agent\n" {
		t.Errorf("conffiles = %q", conffiles)
	}
	if slices.Contains(paths, "./etc/ecom-agent/config.toml") {
		t.Error("the package ships /etc/ecom-agent/config.toml")
	}
	control := dpkgDeb(t, "--field", debs[0])
	for _, want := range []string{
		"Package: ecom-agent\n", "Version: " + version + "\n", "Architecture: amd64\n",
		"Section: admin\n", "Priority: optional\n", "Depends: init-system-helpers (>= 1.52), iptables, ipset, ecom-agent-images (= " + version + ")\n",
		"Recommends: ecom-agent-kubernetes (>= 1.37.2-1), ecom-agent-kubernetes (<< 1.38~), ecom-agent-containerd\n",
	} {
		if !strings.Contains(control, want) {
			t.Errorf("control lacks %q:\n%s", want, control)
		}
	}

	// The unit is exactly what the packaged binary prints.
	x := t.TempDir()
	dpkgDeb(t, "--extract", debs[0], x)
	want, err := exec.Command(bins[0], "internal", "agent-unit").Output()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(x, "lib/systemd/system/ecom-agent.service"))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("packaged unit differs from `ecom-agent internal agent-unit` (%v)", err)
	}
	// The copyright names every module linked into the binary.
	copyright, err := os.ReadFile(filepath.Join(x, "usr/share/doc/ecom-agent/copyright"))
	if err != nil {
		t.Fatal(err)
	}
	checkLinkedModules(t, bins[0], copyright)
}

// TestContainerdPackage builds the runtime's companion package twice from
// the same binaries: same bytes, the four programs in /usr/bin, crictl's
// configuration as a conffile, and it depends on Debian's runc and CNI
// plugins, which the agent's containerd configuration uses.
func TestContainerdPackage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, b := range ContainerdBinaries {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\necho "+b+"\n"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var paths []string
	for i := range 2 {
		c := Containerd{
			Common: Common{Version: "2.4.2-1", MTime: commitTime, Staging: t.TempDir() + fmt.Sprint("/s", i)},
			BinDir: dir,
		}
		p, err := c.Build(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if filepath.Base(paths[0]) != "ecom-agent-containerd_2.4.2-1_amd64.deb" {
		t.Errorf("file name %s", filepath.Base(paths[0]))
	}
	if a, b := sum(t, paths[0]), sum(t, paths[1]); a != b {
		t.Fatalf("two builds differ: %s %s", a, b)
	}
	list := dpkgDeb(t, "--contents", paths[0])
	for _, b := range ContainerdBinaries {
		if !regexpLine(list, "-rwxr-xr-x root/root", "2026-11-30 04:48 ./usr/bin/"+b) {
			t.Errorf("%s not in the package as root:root 0755:\n%s", b, list)
		}
	}
	if !regexpLine(list, "-rw-r--r-- root/root", "2026-11-30 04:48 ./etc/crictl.yaml") {
		t.Errorf("no /etc/crictl.yaml:\n%s", list)
	}
	if got := dpkgDeb(t, "--info", paths[0], "conffiles"); got != "/etc/crictl.yaml\n" {
		t.Errorf("conffiles = %q", got)
	}
	info := dpkgDeb(t, "--info", paths[0])
	for _, want := range []string{"Depends: runc, containernetworking-plugins\n", "Conflicts: containerd, containerd.io, cri-tools\n", "Replaces: containerd, containerd.io, cri-tools\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}

	_, err := Containerd{
		Common: Common{Version: "2.4.2-1", MTime: commitTime, Staging: t.TempDir()},
		BinDir: t.TempDir(),
	}.Build(ctx, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "run tools/containerd/build.sh") {
		t.Errorf("missing binaries: got %v, want the error to say how to build them", err)
	}
}

// TestImagesPackage builds the images package twice from the same
// archives: same bytes, the archives where the agent imports them from,
// and no package without archives.
func TestImagesPackage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var archives []string
	for _, a := range []string{"pause.tar", "coredns.tar"} {
		p := filepath.Join(dir, a)
		if err := os.WriteFile(p, []byte("archive "+a), 0o600); err != nil {
			t.Fatal(err)
		}
		archives = append(archives, p)
	}
	const version = "0.0~git20261130.0123abc-1"
	var paths []string
	for i := range 2 {
		p, err := Images{
			Common:   Common{Version: version, MTime: commitTime, Staging: t.TempDir() + fmt.Sprint("/s", i)},
			Archives: archives,
		}.Build(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if filepath.Base(paths[0]) != "ecom-agent-images_"+version+"_amd64.deb" {
		t.Errorf("file name %s", filepath.Base(paths[0]))
	}
	if a, b := sum(t, paths[0]), sum(t, paths[1]); a != b {
		t.Fatalf("two builds differ: %s %s", a, b)
	}
	list := dpkgDeb(t, "--contents", paths[0])
	for _, a := range []string{"pause.tar", "coredns.tar"} {
		if !regexpLine(list, "-rw-r--r-- root/root", "2026-11-30 04:48 ."+ImagesDir+"/"+a) {
			t.Errorf("%s not in the package as root:root 0644:\n%s", a, list)
		}
	}
	for _, bad := range [][]string{nil, {filepath.Join(dir, "missing.tar")}} {
		_, err := Images{Common: Common{Version: version, MTime: commitTime, Staging: t.TempDir()}, Archives: bad}.Build(ctx, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "run make images") {
			t.Errorf("archives %q: got %v, want the error to say how to build them", bad, err)
		}
	}
}
