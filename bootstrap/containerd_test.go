package bootstrap

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/ecom-platform/ecom-agent/images"
)

// TestContainerdConfig: the CRI plugin runs runc under systemd's cgroups
// with the project's pause image and Debian's CNI plugins; scores are
// clamped only on hosts that cannot lower them; and containerd itself
// accepts what we write (version 3, keys it knows).
func TestContainerdConfig(t *testing.T) {
	cfg := testConfig(t, "")
	for _, restrict := range []bool{false, true} {
		data, err := ContainerdConfigTOML(cfg, restrict)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Version int
			GRPC    struct{ Address string }
			Plugins map[string]map[string]any
		}
		if _, err := toml.Decode(string(data), &got); err != nil {
			t.Fatalf("not TOML: %v\n%s", err, data)
		}
		if got.Version != 3 || got.GRPC.Address != "/run/containerd/containerd.sock" {
			t.Errorf("version %d, socket %q", got.Version, got.GRPC.Address)
		}
		img := got.Plugins["io.containerd.cri.v1.images"]
		if img["pinned_images"].(map[string]any)["sandbox"] != images.PauseImage {
			t.Errorf("sandbox image: %v", img)
		}
		rt := got.Plugins["io.containerd.cri.v1.runtime"]
		runc := rt["containerd"].(map[string]any)["runtimes"].(map[string]any)["runc"].(map[string]any)
		if runc["options"].(map[string]any)["SystemdCgroup"] != true {
			t.Errorf("runc options: %v", runc)
		}
		if _, ok := rt["restrict_oom_score_adj"]; ok != restrict {
			t.Errorf("restrict %v: config\n%s", restrict, data)
		}
		if !strings.Contains(string(data), `bin_dirs = ["/usr/lib/cni"]`) {
			t.Errorf("CNI plugins' directory missing:\n%s", data)
		}
	}
}

func TestPodNetworkConfig(t *testing.T) {
	cluster := netip.MustParsePrefix("10.244.0.0/16")
	data, err := PodNetworkConfig(netip.MustParsePrefix("10.244.7.0/24"), cluster, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		CNIVersion string
		Name       string
		Plugins    []map[string]any
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Name != PodNetworkName || len(conf.Plugins) != 2 || conf.Plugins[0]["type"] != "bridge" || conf.Plugins[1]["type"] != "portmap" {
		t.Errorf("config:\n%s", data)
	}
	if conf.Plugins[0]["ipMasq"] != false || !strings.Contains(string(data), `"subnet": "10.244.7.0/24"`) {
		t.Errorf("bridge:\n%s", data)
	}
	if _, ok := conf.Plugins[0]["mtu"]; ok {
		t.Errorf("an MTU with none asked for:\n%s", data)
	}
	vx, _ := PodNetworkConfig(netip.MustParsePrefix("10.244.7.0/24"), cluster, 1450)
	if !strings.Contains(string(vx), `"mtu": 1450`) {
		t.Errorf("the VXLAN backend's MTU:\n%s", vx)
	}
	if _, err := PodNetworkConfig(netip.MustParsePrefix("10.9.0.0/24"), cluster, 0); err == nil || !strings.Contains(err.Error(), "not inside the cluster's pod range") {
		t.Errorf("a range outside the cluster's: %v", err)
	}
}
