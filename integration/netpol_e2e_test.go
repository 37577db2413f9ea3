//go:build e2e

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/images"
	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// dbFromAPI is the policy that lets api reach db on 8080: applied with
// the others, then deleted and put back at run time.
const dbFromAPI = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api, namespace: np-shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{protocol: TCP, port: 8080}]
`

// policyPod is one pod of the NetworkPolicy test: its namespace, name,
// app label and the host it is pinned to.
type policyPod struct {
	ns, name, app string
	host          *testhost.Host
}

// testNetworkPolicy checks that the cluster enforces NetworkPolicy, pair
// by pair, across nodes: in namespace np-shop a default deny (ingress and
// egress), DNS egress allowed, web -> api and api -> db allowed on 8080,
// nothing else; a pod of another namespace with the same labels is
// denied; removing a policy at run time takes effect, and so does putting
// it back. Each source pod is driven from its own host (an agent's node
// may always reach its own pods, as kubelet probes need), with the echo
// image's /connect (a TCP connect, as upstream's agnhost connect).
func testNetworkPolicy(t *testing.T, cp *testhost.Host, web, api, db *testhost.Host) {
	pods := []policyPod{
		{"np-shop", "web", "web", web}, {"np-shop", "api", "api", api}, {"np-shop", "db", "db", db},
		{"np-other", "outsider", "api", api},
	}
	var manifest strings.Builder
	manifest.WriteString(`apiVersion: v1
kind: Namespace
metadata: {name: np-shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: np-other}
`)
	for _, p := range pods {
		fmt.Fprintf(&manifest, `---
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {app: %s}}
spec:
  nodeSelector: {kubernetes.io/hostname: %s}
  tolerations: [{operator: Exists}]
  containers:
  - name: echo
    image: %s
    imagePullPolicy: IfNotPresent
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 2}
`, p.name, p.ns, p.app, p.host.Name(), images.EchoImage)
	}
	apply(t, cp, "np-pods", manifest.String())
	t.Cleanup(func() { kubectl(cp, "delete", "namespace", "np-shop", "np-other", "--wait=false") })

	ips := map[string]string{}
	await(t, 3*time.Minute, "the four pods Running", func() error {
		for _, ns := range []string{"np-shop", "np-other"} {
			running, err := runningPods(cp, ns, "app")
			if err != nil {
				return err
			}
			for _, r := range running {
				ips[ns+"/"+r.Name] = r.IP
			}
		}
		if len(ips) != len(pods) {
			return fmt.Errorf("running: %v", ips)
		}
		return nil
	})
	byName := map[string]policyPod{}
	for _, p := range pods {
		byName[p.ns+"/"+p.name] = p
	}
	// connect asks pod from to open a TCP connection to pod to's 8080.
	connect := func(from, to string) error {
		src := byName[from]
		res, err := run(src.host, "curl", "-sS", "-m", "6", "http://"+ips[from]+":8080/connect?addr="+ips[to]+":8080")
		if err != nil || strings.TrimSpace(res.Stdout) != "connected" {
			return fmt.Errorf("%s -> %s: %q %v %s", from, to, res.Stdout, err, res.Stderr)
		}
		return nil
	}
	allowed := func(from, to string) {
		t.Helper()
		await(t, 30*time.Second, from+" -> "+to+" allowed", func() error { return connect(from, to) })
	}
	denied := func(from, to string) {
		t.Helper()
		await(t, 30*time.Second, from+" -> "+to+" denied", func() error {
			if err := connect(from, to); err == nil {
				return fmt.Errorf("%s -> %s connected", from, to)
			}
			return nil
		})
		// Denied for good, not a passing failure.
		for range 2 {
			if err := connect(from, to); err == nil {
				t.Errorf("%s -> %s connected after it was denied", from, to)
			}
		}
	}

	// Without a policy every pair connects: what follows is the policies'
	// doing, not a broken network.
	for _, pair := range [][2]string{{"np-shop/web", "np-shop/db"}, {"np-other/outsider", "np-shop/db"}, {"np-shop/api", "np-shop/db"}} {
		allowed(pair[0], pair[1])
	}

	apply(t, cp, "np-policies", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: np-shop}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: np-shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}]
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-to-api, namespace: np-shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{protocol: TCP, port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: np-shop}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{protocol: TCP, port: 8080}]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{protocol: TCP, port: 8080}]
---
`+dbFromAPI)
	applied := time.Now()
	allowed("np-shop/api", "np-shop/db")
	allowed("np-shop/web", "np-shop/api")
	t.Logf("policies enforced %.1fs after kubectl apply", time.Since(applied).Seconds())
	denied("np-shop/web", "np-shop/db")        // web's egress and db's ingress
	denied("np-other/outsider", "np-shop/db")  // same label, another namespace
	denied("np-shop/db", "np-shop/api")        // db has no egress
	denied("np-shop/api", "np-other/outsider") // api's egress is db only
	await(t, 30*time.Second, "DNS from the api pod (egress to kube-system:53 allowed)", func() error {
		res, err := run(api, "curl", "-sS", "-m", "8", "http://"+ips["np-shop/api"]+":8080/resolve?name=kubernetes.default.svc.cluster.local")
		if err != nil || strings.TrimSpace(res.Stdout) != "10.96.0.1" {
			return fmt.Errorf("%q %v %s", res.Stdout, err, res.Stderr)
		}
		return nil
	})

	// A change at run time: without db-from-api nothing may reach db;
	// back, api may again.
	if out, err := kubectl(cp, "-n", "np-shop", "delete", "networkpolicy", "db-from-api"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	changed := time.Now()
	denied("np-shop/api", "np-shop/db")
	t.Logf("a deleted policy stopped allowing after %.1fs", time.Since(changed).Seconds())
	apply(t, cp, "np-db-from-api", dbFromAPI)
	changed = time.Now()
	allowed("np-shop/api", "np-shop/db")
	t.Logf("a policy put back allowed again after %.1fs", time.Since(changed).Seconds())

	// What the agents report: every node enforcing, the db's node with
	// the namespace's policies in its kernel.
	for _, h := range []*testhost.Host{cp, web, api, db} {
		st, _ := statusJSON(t, h)
		if np := st.NetworkPolicy; np == nil || !np.Enforcing || np.Error != "" {
			t.Errorf("%s: network_policy %+v", h.Name(), np)
		}
	}
	st, _ := statusJSON(t, db)
	if np := st.NetworkPolicy; np == nil || np.PolicyChains < 5 || np.PodChains < 1 {
		t.Errorf("%s: network_policy %+v, want the 5 policies' chains and the db pod's", db.Name(), np)
	}

	// An operator flushing FORWARD: the agent sees the hook gone and the
	// engine puts it back; policy holds again.
	db.MustRun(t, "iptables", "-w", "5", "-t", "filter", "-F", "FORWARD")
	flushed := time.Now()
	await(t, time.Minute, "the FORWARD hook back on "+db.Name(), func() error {
		out, err := run(db, "iptables", "-w", "5", "-t", "filter", "-S", "FORWARD")
		if err != nil || !strings.Contains(out.Stdout, "-j KUBE-ROUTER-FORWARD") {
			return fmt.Errorf("%q %v", out.Stdout, err)
		}
		return nil
	})
	t.Logf("FORWARD flushed by hand: kube-router's hook back after %.1fs", time.Since(flushed).Seconds())
	denied("np-shop/web", "np-shop/db")
	allowed("np-shop/api", "np-shop/db")
}
