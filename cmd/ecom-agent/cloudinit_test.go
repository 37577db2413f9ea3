package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/ecom-platform/ecom-agent/config"
)

// TestCloudInitExample: the example user-data writes a config that loads
// as is on any node (its name and address from the host), with a secret
// file the config accepts, and ends with `ecom-agent join`.
func TestCloudInitExample(t *testing.T) {
	ud := readUserData(t, "../../packaging/cloud-init/control-plane.yaml")
	root := t.TempDir()
	var cfgText []byte
	for _, f := range ud.WriteFiles {
		mode := os.FileMode(0o644)
		if f.Permissions == "0600" {
			mode = 0o600
		}
		p := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		content := f.Content
		if f.Path == "/etc/ecom-agent/cluster-secret" {
			// The example's placeholder is refused, as an admin who
			// forgot to change it would see.
			if err := os.WriteFile(p, []byte(content), mode); err != nil {
				t.Fatal(err)
			}
			_, err := config.Parse([]byte("cluster_name = \"x\"\nrole = \"control-plane\"\nnode_name = \"w\"\nadvertise_address = \"10.0.0.9\"\ncluster_secret_file = \"/etc/ecom-agent/cluster-secret\"\n"),
				"c.toml", config.LoadOptions{Root: root})
			if err == nil || !strings.Contains(err.Error(), "placeholder") {
				t.Errorf("the placeholder secret is accepted: %v", err)
			}
			content = "a-real-secret-0123456789abcdef0123456789\n"
		}
		if f.Path == "/etc/ecom-agent/control-plane-key" {
			if !strings.HasPrefix(content, "CHANGE-ME") || f.Permissions != "0600" || f.Owner != "root:root" {
				t.Errorf("the control-plane key is not a private placeholder: %+v", f)
			}
			content = "a-real-control-plane-key-fedcba9876543210\n"
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if f.Path == config.DefaultPath {
			cfgText = []byte(f.Content)
		}
	}
	if cfgText == nil {
		t.Fatalf("the user-data writes no %s", config.DefaultPath)
	}
	// The same text on three different hosts.
	for i, addr := range []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"} {
		host := []string{"cp-a", "cp-b", "cp-c"}[i]
		cfg, err := config.Parse(cfgText, config.DefaultPath, config.LoadOptions{
			Hostname:  func() (string, error) { return host, nil },
			HostAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr(addr)}, nil },
			Root:      root,
		})
		if err != nil {
			t.Fatalf("on %s: %v", host, err)
		}
		if cfg.NodeName != host || cfg.AdvertiseAddress.String() != addr || !cfg.IsControlPlane() || cfg.Expect != 3 || len(cfg.Gossip.Join) != 3 {
			t.Errorf("on %s: %+v", host, cfg)
		}
	}
	if !ud.PackageUpdate {
		t.Error("package_update is not set: apt-get install of runc would work from stale lists")
	}
	// dpkg -i gets every package, the images the agent depends on too.
	var dpkg string
	for _, c := range ud.RunCmd {
		if l := strings.Join(c, " "); strings.Contains(l, "dpkg ") {
			dpkg = l
		}
	}
	for _, pkg := range []string{"ecom-agent-containerd_", "ecom-agent-kubernetes_", "ecom-agent-images_", "ecom-agent_"} {
		if !strings.Contains(dpkg, "/"+pkg) {
			t.Errorf("the dpkg -i line does not install %s*.deb: %q", pkg, dpkg)
		}
	}
	last := ud.RunCmd[len(ud.RunCmd)-1]
	if len(last) < 2 || last[0] != "ecom-agent" || last[1] != "join" {
		t.Errorf("the last runcmd is %q, want ecom-agent join", last)
	}
}

// The workers' user-data writes a config that loads with a real token in
// place of the placeholder, and is refused, naming the token, with it.
func TestCloudInitWorkerExample(t *testing.T) {
	ud := readUserData(t, "../../packaging/cloud-init/worker.yaml")
	root := t.TempDir()
	var cfgText []byte
	for _, f := range ud.WriteFiles {
		p := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if f.Permissions == "0600" {
			mode = 0o600
		}
		if err := os.WriteFile(p, []byte(f.Content), mode); err != nil {
			t.Fatal(err)
		}
		if f.Path == config.DefaultPath {
			cfgText = []byte(f.Content)
		}
	}
	opts := config.LoadOptions{Root: root, Hostname: func() (string, error) { return "w-7", nil },
		HostAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("10.0.0.27")}, nil }}
	if _, err := config.Parse(cfgText, "c.toml", opts); err == nil || !strings.Contains(err.Error(), "join.token_file") {
		t.Errorf("the placeholder token is accepted: %v", err)
	}
	tok := "EA1::sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef::0123456789ab.0123456789abcdef0123456789abcdef\n"
	if err := os.WriteFile(filepath.Join(root, "etc/ecom-agent/join-token"), []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(cfgText, "c.toml", opts)
	if err != nil {
		t.Fatal(err)
	}
	if c.IsControlPlane() || len(c.Secret()) != 0 || len(c.JoinServerAddrs()) != 3 {
		t.Errorf("loaded %+v", c)
	}
	if last := ud.RunCmd[len(ud.RunCmd)-1]; strings.Join(last[:2], " ") != "ecom-agent join" {
		t.Errorf("the user-data ends with %v", last)
	}
}

// userData is the part of cloud-init's user-data the examples use.
type userData struct {
	WriteFiles []struct {
		Path        string `json:"path"`
		Owner       string `json:"owner"`
		Permissions string `json:"permissions"`
		Content     string `json:"content"`
	} `json:"write_files"`
	RunCmd        [][]string `json:"runcmd"`
	PackageUpdate bool       `json:"package_update"`
}

// readUserData reads an example user-data file strictly.
func readUserData(t *testing.T, path string) userData {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "#cloud-config\n") {
		t.Fatalf("%s: user-data must start with #cloud-config", path)
	}
	var ud userData
	if err := yaml.UnmarshalStrict(data, &ud); err != nil {
		t.Fatal(err)
	}
	return ud
}
