//go:build e2e

package integration

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/images"
	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// TestVXLAN: a control-plane host on one network segment and two workers
// on another, reached only through a router (the test hosts' second
// segment), with network.backend = "vxlan". A route through a host of the
// other segment is refused by the kernel, as host-gw would need; with
// VXLAN every Node turns Ready, pods on every node reach each other and
// are reached from every host, the pods' MTU is the link's less 50, and
// NetworkPolicy holds across the tunnel.
func TestVXLAN(t *testing.T) {
	env := testhost.New(t, hostOptions(t, "x"))
	cps := env.Start(t, 1)
	workers := env.StartOn(t, 2, testhost.SegmentB)
	hosts := append(slices.Clone(cps), workers...)
	onEach(hosts, func(h *testhost.Host) {
		conf := joinConfig(h, cps, 1) + "\n[network]\nbackend = \"vxlan\"\n"
		if slices.Contains(workers, h) {
			conf = workerConfig(conf, h.Name(), cps)
		}
		if err := h.CopyIn(filepath.Join(imagesDir(t), images.EchoArchive), "/var/lib/ecom-agent/images/"+images.EchoArchive, 0o644); err != nil {
			t.Error(err)
		}
		install(t, h, conf)
	})
	// The segments are apart: a gateway on the other one is not on-link.
	res, err := run(cps[0], "ip", "route", "add", "10.250.0.0/24", "via", workers[0].Addr().String())
	if err == nil || !strings.Contains(res.Stderr, "Nexthop has invalid gateway") {
		t.Fatalf("a route through %s (the other segment) from %s: %v %s; want it refused as not on-link", workers[0].Addr(), cps[0].Name(), err, res.Stderr)
	}

	names := joinEach(t, cps)
	names = append(names, joinWorkers(t, cps[0], workers)...)
	await(t, 6*time.Minute, "all three Nodes Ready", func() error { return nodesReady(cps[0], names) })

	cp := cps[0]
	pods := echoOnEveryNode(t, cp, "vx-echo", len(hosts))
	byNode := map[string]probePod{}
	for _, p := range pods {
		byNode[p.Node] = p
	}

	t.Run("every host reaches every pod, and every pod every other", func(t *testing.T) {
		for _, h := range hosts {
			for _, p := range pods {
				await(t, time.Minute, h.Name()+" -> pod on "+p.Node, func() error {
					res, err := run(h, "curl", "-sS", "-m", "5", "http://"+p.IP+":8080/healthz")
					if err != nil || res.Stdout != "ok" {
						return fmt.Errorf("%q %v %s", res.Stdout, err, res.Stderr)
					}
					return nil
				})
			}
		}
		for _, from := range pods {
			src := env.Host(from.Node)
			for _, to := range pods {
				if to == from {
					continue
				}
				await(t, time.Minute, "pod on "+from.Node+" -> pod on "+to.Node, func() error {
					res, err := run(src, "curl", "-sS", "-m", "6", "http://"+from.IP+":8080/connect?addr="+to.IP+":8080")
					if err != nil || strings.TrimSpace(res.Stdout) != "connected" {
						return fmt.Errorf("%q %v %s", res.Stdout, err, res.Stderr)
					}
					return nil
				})
			}
		}
	})

	t.Run("status, device and MTU", func(t *testing.T) {
		for _, h := range hosts {
			st, _ := statusJSON(t, h)
			if k := st.Kubelet; k == nil || k.Backend != "vxlan" || len(k.Routes) != len(hosts)-1 {
				t.Errorf("%s: kubelet %+v", h.Name(), st.Kubelet)
			}
			mtu := h.MustRun(t, "cat", "/sys/class/net/ecom-vxlan/mtu")
			parent := h.MustRun(t, "cat", "/sys/class/net/eth0/mtu")
			m, merr := strconv.Atoi(mtu)
			pm, perr := strconv.Atoi(parent)
			if merr != nil || perr != nil || pm-m != 50 {
				t.Errorf("%s: ecom-vxlan MTU %s on eth0 of %s, want 50 less", h.Name(), mtu, parent)
			}
			// The pods' interfaces have the device's MTU: the host
			// ends of their veths on cni0 show it.
			veths := h.MustRun(t, "sh", "-c", "ip -o link show master cni0 | grep -o 'mtu [0-9]*' | sort -u")
			if veths != "mtu "+mtu {
				t.Errorf("%s: pods' veths %q, want mtu %s", h.Name(), veths, mtu)
			}
		}
	})

	t.Run("NetworkPolicy across the tunnel", func(t *testing.T) {
		w := byNode[workers[0].Name()]
		from := byNode[cp.Name()]
		connect := func() error {
			res, err := run(cp, "curl", "-sS", "-m", "6", "http://"+from.IP+":8080/connect?addr="+w.IP+":8080")
			if err != nil || strings.TrimSpace(res.Stdout) != "connected" {
				return fmt.Errorf("%q %v %s", res.Stdout, err, res.Stderr)
			}
			return nil
		}
		apply(t, cp, "vx-deny", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: vx-deny, namespace: default}
spec:
  podSelector: {matchLabels: {app: vx-echo}}
  policyTypes: [Ingress]
`)
		await(t, 30*time.Second, "pod on "+cp.Name()+" -> pod on "+w.Node+" denied", func() error {
			if connect() == nil {
				return fmt.Errorf("connected")
			}
			return nil
		})
		if _, err := kubectl(cp, "delete", "networkpolicy", "vx-deny"); err != nil {
			t.Fatal(err)
		}
		await(t, 30*time.Second, "allowed again once the policy is gone", connect)
	})
}
