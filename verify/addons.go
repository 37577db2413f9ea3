package verify

// The add-on checks: dns, storage, metrics.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The add-ons' objects, as seed/manifests/0*.yaml name them.
const (
	dnsNamespace      = "kube-system"
	dnsDeployment     = "coredns"
	dnsService        = "kube-dns"
	dnsConfigMap      = "coredns"
	storageNamespace  = "local-path-storage"
	storageDeployment = "local-path-provisioner"
	metricsNamespace  = "kube-system"
	metricsDeployment = "metrics-server"
	metricsAPIService = "v1beta1.metrics.k8s.io"
	metricsNodesPath  = "/apis/metrics.k8s.io/v1beta1/nodes"
	apiServicesPath   = "/apis/apiregistration.k8s.io/v1/apiservices/"
	kubernetesService = "kubernetes"
)

// addOn starts an add-on's check: the reader the check goes on with, the
// add-on's Deployment as a workload and, when it is not available, its
// problem. When the
// Deployment does not exist (the add-on is switched off: the cluster
// brings its own) or cannot be read, res is the check's result.
func (e *env) addOn(ctx context.Context, ns, name string) (r *reader, w workload, probs []Problem, res *Result) {
	d, err := e.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		r := skip("not seeded: no " + objectName("Deployment", ns, name))
		return nil, w, nil, &r
	case err != nil:
		r := broken("get "+objectName("Deployment", ns, name), err)
		return nil, w, nil, &r
	}
	r = e.reader()
	if w = deploymentWorkload(d); !w.ok {
		probs = append(probs, r.diagnose(ctx, w))
	}
	return r, w, probs, nil
}

// checkDNS: CoreDNS available, kube-dns with ready endpoints, and
// kubernetes.default.svc.<domain> resolving, through the kube-dns
// Service's cluster IP, to the kubernetes Service's.
func checkDNS(ctx context.Context, e *env) Result {
	r, w, probs, res := e.addOn(ctx, dnsNamespace, dnsDeployment)
	if res != nil {
		return *res
	}
	svc, err := e.cs.CoreV1().Services(dnsNamespace).Get(ctx, dnsService, metav1.GetOptions{})
	if err != nil {
		return fail("", append(probs, Problem{objectName("Service", dnsNamespace, dnsService), oneLine(err.Error())})...)
	}
	n, why, err := r.serviceProblem(ctx, svc)
	if err != nil {
		return broken("endpoints of "+objectName("Service", dnsNamespace, dnsService), err)
	}
	if n == 0 {
		// Nothing would answer the query: say why, and do not wait for it.
		return fail("", append(probs, Problem{objectName("Service", dnsNamespace, dnsService), why})...)
	}
	domain := DefaultClusterDomain
	if cm, err := e.cs.CoreV1().ConfigMaps(dnsNamespace).Get(ctx, dnsConfigMap, metav1.GetOptions{}); err == nil {
		domain = corefileDomain(cm.Data["Corefile"])
	}
	api, err := e.cs.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, kubernetesService, metav1.GetOptions{})
	if err != nil {
		return broken("get "+objectName("Service", metav1.NamespaceDefault, kubernetesService), err)
	}
	name := "kubernetes.default.svc." + domain
	server := net.JoinHostPort(svc.Spec.ClusterIP, "53")
	got, err := resolve(ctx, server, name)
	if err != nil {
		why := fmt.Sprintf("asking %s for %s: %s", server, name, oneLine(err.Error()))
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			why += " (verify asks from this host: run it on a node, where kube-proxy routes Service IPs)"
		}
		probs = append(probs, Problem{objectName("Service", dnsNamespace, dnsService), why})
	} else if p := dnsProblem(name, got, clusterIPs(api)); p != "" {
		probs = append(probs, Problem{objectName("Service", dnsNamespace, dnsService), "asked at " + server + ": " + p})
	}
	if len(probs) > 0 {
		return fail("", probs...)
	}
	return pass(fmt.Sprintf("%s -> %s (asked %s); %s: %s, %d ready endpoint(s)", name, strings.Join(clusterIPs(api), ", "), server, w.object(), w.state, n))
}

func clusterIPs(s *corev1.Service) []string {
	if len(s.Spec.ClusterIPs) > 0 {
		return s.Spec.ClusterIPs
	}
	return []string{s.Spec.ClusterIP}
}

// dnsTimeout bounds a lookup: CoreDNS answers a cluster name at once.
const dnsTimeout = 10 * time.Second

// resolve asks the DNS server at server (ip:port) alone for name's
// addresses, with Go's resolver (UDP, TCP when truncated); ctx bounds it.
// The name is rooted, so no search domain applies.
func resolve(ctx context.Context, server, name string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
	return r.LookupNetIP(ctx, "ip", strings.TrimSuffix(name, ".")+".")
}

// checkStorage: a default StorageClass, the provisioner available, and
// every claim in the platform's namespaces Bound.
func checkStorage(ctx context.Context, e *env) Result {
	r, _, probs, res := e.addOn(ctx, storageNamespace, storageDeployment)
	if res != nil {
		return *res
	}
	classes, err := e.cs.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return broken("list StorageClasses", err)
	}
	def := defaultClass(classes.Items)
	if def == nil {
		probs = append(probs, Problem{"StorageClass", "no default StorageClass (annotation storageclass.kubernetes.io/is-default-class=true)"})
	}
	nss, err := e.managedNamespaces(ctx)
	if err != nil {
		return broken("find the platform's namespaces", err)
	}
	claims, err := e.cs.CoreV1().PersistentVolumeClaims(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return broken("list PersistentVolumeClaims", err)
	}
	bound := 0
	for i := range claims.Items {
		c := &claims.Items[i]
		if !nss[c.Namespace] {
			continue
		}
		if c.Status.Phase == corev1.ClaimBound {
			bound++
			continue
		}
		f := claimFacts{claim: c, class: def}
		if c.Spec.StorageClassName != nil && *c.Spec.StorageClassName != "" {
			f.class = nil
			for j := range classes.Items {
				if classes.Items[j].Name == *c.Spec.StorageClassName {
					f.class = &classes.Items[j]
				}
			}
		}
		f.events, _ = r.eventsOf(ctx, c.Namespace, "PersistentVolumeClaim", c.Name)
		if pods, err := r.podsIn(ctx, c.Namespace); err == nil {
			f.users = claimUsers(pods, c.Name)
		}
		probs = append(probs, Problem{objectName("PersistentVolumeClaim", c.Namespace, c.Name), claimProblem(f)})
	}
	if len(probs) > 0 {
		return fail("", probs...)
	}
	return pass(fmt.Sprintf("default StorageClass %s (%s); %s available; %d claim(s) Bound", def.Name, def.Provisioner,
		objectName("Deployment", storageNamespace, storageDeployment), bound))
}

// managedNamespaces returns the namespaces that hold objects the agent
// seeded (or are themselves seeded).
func (e *env) managedNamespaces(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	nss, err := e.cs.CoreV1().Namespaces().List(ctx, managed)
	if err != nil {
		return nil, err
	}
	for _, n := range nss.Items {
		out[n.Name] = true
	}
	deps, err := e.cs.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, managed)
	if err != nil {
		return nil, err
	}
	for _, d := range deps.Items {
		out[d.Namespace] = true
	}
	sets, err := e.cs.AppsV1().StatefulSets(metav1.NamespaceAll).List(ctx, managed)
	if err != nil {
		return nil, err
	}
	for _, s := range sets.Items {
		out[s.Namespace] = true
	}
	svcs, err := e.cs.CoreV1().Services(metav1.NamespaceAll).List(ctx, managed)
	if err != nil {
		return nil, err
	}
	for _, s := range svcs.Items {
		out[s.Namespace] = true
	}
	return out, nil
}

// checkMetrics: metrics-server available, its APIService Available, and
// the metrics API reporting usage for every node.
func checkMetrics(ctx context.Context, e *env) Result {
	_, _, probs, res := e.addOn(ctx, metricsNamespace, metricsDeployment)
	if res != nil {
		return *res
	}
	rest := e.cs.Discovery().RESTClient()
	apiObj := "APIService " + metricsAPIService
	raw, err := rest.Get().AbsPath(apiServicesPath + metricsAPIService).DoRaw(ctx)
	var svc apiService
	switch {
	case apierrors.IsNotFound(err):
		probs = append(probs, Problem{apiObj, "does not exist"})
	case err != nil:
		probs = append(probs, Problem{apiObj, oneLine(err.Error())})
	case json.Unmarshal(raw, &svc) != nil:
		probs = append(probs, Problem{apiObj, "unreadable: " + snippet(raw)})
	default:
		if p := apiServiceProblem(svc); p != "" {
			probs = append(probs, Problem{apiObj, p})
		}
	}
	nodes, err := e.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return broken("list Nodes", err)
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	var list nodeMetricsList
	raw, err = rest.Get().AbsPath(metricsNodesPath).DoRaw(ctx)
	if err == nil {
		err = json.Unmarshal(raw, &list)
	}
	if err != nil {
		probs = append(probs, Problem{"GET " + metricsNodesPath, oneLine(err.Error())})
	} else if missing := nodesWithoutMetrics(names, list); len(missing) > 0 {
		probs = append(probs, Problem{"GET " + metricsNodesPath, fmt.Sprintf("no usage for %d of %d node(s): %s", len(missing), len(names), strings.Join(missing, ", "))})
	}
	if len(probs) > 0 {
		return fail("", probs...)
	}
	return pass(fmt.Sprintf("%s Available; usage for %d of %d node(s)", apiObj, len(names), len(names)))
}
