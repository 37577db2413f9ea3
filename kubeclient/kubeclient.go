// Package kubeclient reads the kubeconfigs the renderer wrote and asks
// API servers for their readiness, as the agent's components and status
// need it.
package kubeclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/buildinfo"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig reads a kubeconfig the renderer wrote.
func RESTConfig(root *hostfs.Root, path string) (*rest.Config, error) {
	data, err := root.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.UserAgent = "ecom-agent/" + buildinfo.Version
	cfg.Timeout = 30 * time.Second
	return cfg, nil
}

// Readyz asks an API server's /readyz (verbose) and returns nil when
// it answers 200, else an error carrying the checks that fail.
func Readyz(ctx context.Context, cfg *rest.Config) error {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+"/readyz?verbose", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("/readyz: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var failing []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "[-]") {
			failing = append(failing, strings.TrimSuffix(strings.TrimPrefix(l, "[-]"), " failed: reason withheld"))
		}
	}
	if len(failing) == 0 {
		failing = []string{strings.TrimSpace(string(body))}
	}
	if n := len(failing); n > 3 {
		failing = append(failing[:3], fmt.Sprintf("and %d more", n-3))
	}
	return fmt.Errorf("/readyz %d, failing: %s", resp.StatusCode, strings.Join(failing, ", "))
}

// ProbeAPIServers asks every control-plane node's kube-apiserver for
// /readyz at once, as the agent's own identity: one per started etcd
// member, on the member's peer address and the API server's port.
func ProbeAPIServers(ctx context.Context, root *hostfs.Root, cfg *config.Config, members []status.EtcdMember) []status.APIServerHealth {
	base, err := RESTConfig(root, bootstrap.AgentKubeconfig)
	var out []status.APIServerHealth
	for _, m := range members {
		if !m.Started || len(m.PeerURLs) == 0 {
			continue
		}
		u, perr := url.Parse(m.PeerURLs[0])
		if perr != nil {
			continue
		}
		addr, perr := netip.ParseAddr(u.Hostname())
		if perr != nil {
			continue
		}
		h := status.APIServerHealth{Node: m.Name, URL: "https://" + netip.AddrPortFrom(addr, uint16(cfg.APIServer.Port)).String()}
		if err != nil {
			h.Error = err.Error()
		}
		out = append(out, h)
	}
	if err != nil {
		return out
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			c := rest.CopyConfig(base)
			c.Host = out[i].URL
			if err := Readyz(ctx, c); err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Ready = true
		})
	}
	wg.Wait()
	return out
}
