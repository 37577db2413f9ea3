//go:build e2e

package integration

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/images"
	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// storageDir is the config's default addons.storage_dir.
const storageDir = "/var/lib/ecom-agent-volumes"

// testAddOns checks the add-ons the agent seeds on a cluster of
// control-plane hosts cps and nodes Nodes in all, worker among them:
// CoreDNS, local-path-provisioner and metrics-server become available
// from the images the package ships; a pod on every node resolves
// Service names through the cluster DNS; a claim of the default class
// binds on the worker, its pod writes to it as a non-root user, and
// deleting the claim deletes its directory; the metrics API reports
// every node; `ecom-agent verify --scope addons` passes.
func testAddOns(t *testing.T, cps []*testhost.Host, worker *testhost.Host, nodes int) {
	cp := cps[0]
	for _, d := range []string{"kube-system/coredns", "local-path-storage/local-path-provisioner", "kube-system/metrics-server"} {
		ns, name, _ := strings.Cut(d, "/")
		await(t, 5*time.Minute, d+" available", func() error {
			out, err := kubectl(cp, "-n", ns, "get", "deployment", name, "-o",
				`jsonpath={.status.availableReplicas}/{.spec.replicas}`)
			if err != nil || out != "1/1" && out != "2/2" {
				pods, _ := kubectl(cp, "-n", ns, "get", "pods", "-o", "wide")
				return fmt.Errorf("%q %v\n%s", out, err, pods)
			}
			return nil
		})
	}

	t.Run("DNS from a pod on every node", func(t *testing.T) {
		pods := echoOnEveryNode(t, cp, "dns-probe", nodes)
		for _, p := range pods {
			for name, want := range map[string]string{
				"kubernetes.default.svc.cluster.local": "10.96.0.1",
				"kube-dns.kube-system":                 "10.96.0.10", // through the pod's search path
			} {
				await(t, time.Minute, p.Node+"'s pod resolving "+name, func() error {
					res, err := run(cps[1], "curl", "-sS", "-m", "8", "http://"+p.IP+":8080/resolve?name="+name)
					if err != nil || strings.TrimSpace(res.Stdout) != want {
						return fmt.Errorf("%q %v %s", res.Stdout, err, res.Stderr)
					}
					return nil
				})
			}
		}
	})

	t.Run("a claim of the default class binds on a worker and is deleted with it", func(t *testing.T) {
		apply(t, cp, "volume", fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: %s}
  containers:
  - name: echo
    image: %s
    imagePullPolicy: IfNotPresent
    env: [{name: ECHO_WRITE, value: /data/hello}]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
`, worker.Name(), images.EchoImage))
		await(t, 4*time.Minute, "the writer pod Running with its claim Bound", func() error {
			out, err := kubectl(cp, "get", "pod/writer", "pvc/data", "-o", "jsonpath={.items[0].status.phase} {.items[1].status.phase}")
			if err != nil || out != "Running Bound" {
				desc, _ := kubectl(cp, "describe", "pod/writer", "pvc/data")
				return fmt.Errorf("%q %v\n%s", out, err, desc)
			}
			return nil
		})
		uid, err := kubectl(cp, "get", "pvc", "data", "-o", "jsonpath={.metadata.uid}")
		if err != nil {
			t.Fatal(err)
		}
		dir := path.Join(storageDir, "pvc-"+uid+"_default_data")
		if got := strings.TrimSpace(worker.MustRun(t, "cat", dir+"/hello")); got != "writer" {
			t.Errorf("%s on %s holds %q, want the pod's name", dir+"/hello", worker.Name(), got)
		}
		if out, err := kubectl(cp, "get", "pv", "pvc-"+uid, "-o", "jsonpath={.spec.storageClassName} {.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"); err != nil || out != "local-path "+worker.Name() {
			t.Errorf("the volume: %q %v, want class local-path pinned to %s", out, err, worker.Name())
		}
		if _, err := kubectl(cp, "delete", "pod/writer", "pvc/data", "--wait=true", "--timeout=2m"); err != nil {
			t.Fatal(err)
		}
		await(t, 3*time.Minute, "the volume's directory deleted on "+worker.Name(), func() error {
			if res, err := run(worker, "test", "-e", dir); err == nil {
				return fmt.Errorf("%s still exists: %s", dir, res.Stdout)
			}
			return nil
		})
	})

	t.Run("the metrics API reports every node", func(t *testing.T) {
		await(t, 4*time.Minute, "kubectl top nodes listing every node", func() error {
			out, err := kubectl(cp, "top", "nodes", "--no-headers")
			if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != nodes {
				return fmt.Errorf("%v:\n%s", err, out)
			}
			return nil
		})
	})

	t.Run("ecom-agent verify passes for the add-ons", func(t *testing.T) {
		await(t, 2*time.Minute, "ecom-agent verify --scope addons", func() error {
			res, err := run(cp, "ecom-agent", "verify", "--scope", "addons")
			if err != nil {
				return fmt.Errorf("%v:\n%s%s", err, res.Stdout, res.Stderr)
			}
			return nil
		})
	})
}

// apply writes manifest to a file on h and applies it with kubectl.
func apply(t *testing.T, h *testhost.Host, name, manifest string) {
	t.Helper()
	file := "/tmp/" + name + ".yaml"
	if err := h.WriteFile(file, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	// Apply is idempotent: a request etcd did not answer in time (a
	// loaded machine, seen with the unit tests beside) is asked again,
	// at most for a minute; any other error fails at once.
	var out string
	var err error
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Second) {
		out, err = kubectl(h, "apply", "-f", file)
		if err == nil || !transientAPIError(err.Error()+out) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("kubectl apply %s: %v\n%s", name, err, out)
	}
}

// transientAPIError reports whether kubectl's output is a timeout of the
// API server or etcd, which the same request may not meet again.
func transientAPIError(s string) bool {
	for _, m := range []string{"etcdserver: request timed out", "etcdserver: leader changed", "the server was unable to return a response in the time allotted", "Timeout: request did not complete"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// echoOnEveryNode runs the echo image as DaemonSet name (label app=name,
// tolerating every taint) in the default namespace and returns its pods
// once one runs on each of the nodes.
func echoOnEveryNode(t *testing.T, cp *testhost.Host, name string, nodes int) []probePod {
	t.Helper()
	apply(t, cp, name, fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: %[1]s, namespace: default}
spec:
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      tolerations: [{operator: Exists}]
      containers:
      - name: echo
        image: %[2]s
        imagePullPolicy: IfNotPresent
`, name, images.EchoImage))
	var pods []probePod
	await(t, 3*time.Minute, "a "+name+" pod Running on every node", func() error {
		var err error
		pods, err = runningPods(cp, "default", "app="+name)
		if err == nil && len(pods) != nodes {
			err = fmt.Errorf("%d of %d pods running: %+v", len(pods), nodes, pods)
		}
		return err
	})
	return pods
}

// probePod is a running pod: its node and IP.
type probePod struct{ Name, Node, IP string }

// runningPods lists the Running pods of namespace ns matching selector.
func runningPods(h *testhost.Host, ns, selector string) ([]probePod, error) {
	out, err := kubectl(h, "-n", ns, "get", "pods", "-l", selector, "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ NodeName string }
			Status   struct{ Phase, PodIP string }
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, err
	}
	var pods []probePod
	for _, p := range list.Items {
		if p.Status.Phase == "Running" && p.Status.PodIP != "" {
			pods = append(pods, probePod{p.Metadata.Name, p.Spec.NodeName, p.Status.PodIP})
		}
	}
	return pods, nil
}
