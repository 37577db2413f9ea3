// Package seed applies the platform's workload manifests to the cluster once
// its control plane is healthy.
//
// Every control-plane agent calls Run; the agents campaign for the Lease
// kube-system/ecom-agent-seeder and only the holder applies. The manifests
// are the package's embedded files, overridden, disabled or extended by the
// files of a directory on the host (see Load). They are applied with
// server-side apply (field manager "ecom-agent", forced) in dependency order;
// every pass is recorded in the ConfigMap kube-system/ecom-agent-seed so that
// every node can show it, and the next pass prunes, from that inventory, the
// objects that left the set (only those that carry our label and annotation).
package seed

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/ecom-platform/ecom-agent/config"
)

// ManifestsDir is the logical host directory whose files override, disable
// or extend the embedded manifests.
const ManifestsDir = "/etc/ecom-agent/manifests.d"

const (
	// FieldManager is the server-side apply field manager of every object
	// the seeder applies.
	FieldManager = "ecom-agent"
	// ReplicasFieldManager co-owns spec.replicas of a workload scaled by a
	// HorizontalPodAutoscaler of the set, from its creation on, so that the
	// seeder can stop applying the field without the API server removing
	// it (the documented hand-over of replicas to an HPA).
	ReplicasFieldManager = "ecom-agent-replicas"
	// ManagedByLabel is set to ManagedByValue on every applied object.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel.
	ManagedByValue = "ecom-agent"
	// ManifestAnnotation names the manifest file an object comes from.
	ManifestAnnotation = "ecom-agent.io/manifest"

	// LeaseNamespace and LeaseName name the Lease the seeders campaign for.
	LeaseNamespace = "kube-system"
	LeaseName      = "ecom-agent-seeder"
	// ReportNamespace and ReportName name the ConfigMap holding the last
	// report under ReportKey.
	ReportNamespace = "kube-system"
	ReportName      = "ecom-agent-seed"
	ReportKey       = "report.json"
)

// Results of an object in a pass.
const (
	Created    = "created"
	Configured = "configured"
	// Replaced is an object deleted (its pods orphaned) and created again
	// because its immutable selector changed (see replace.go).
	Replaced  = "replaced"
	Unchanged = "unchanged"
	Failed    = "failed"
	Skipped   = "skipped"
	Pruned    = "pruned"
)

// Results lists every result, in the order a summary prints them.
var Results = []string{Created, Configured, Replaced, Unchanged, Pruned, Skipped, Failed}

// notPrunedReason is the reason of an object that left the set but that the
// seeder never deletes by itself.
const notPrunedReason = "not pruned: namespaces and CRDs are never pruned automatically"

//go:embed manifests/*.yaml
var embedded embed.FS

// Embedded returns the package's embedded manifests, the files at the root
// of the returned FS.
func Embedded() fs.FS {
	sub, err := fs.Sub(embedded, "manifests")
	if err != nil {
		panic(err) // a constant, valid path
	}
	return sub
}

// The cluster add-ons among the embedded manifests, each in one file the
// config can leave out (AddOnFile).
const (
	AddOnDNS     = "dns"
	AddOnStorage = "storage"
	AddOnMetrics = "metrics"
	// AddOnGrafana is the platform's Grafana, whose image cannot be built
	// here: it is seeded only on a cluster that pulls from a registry.
	AddOnGrafana = "grafana"
)

// AddOnFile is the embedded manifest file of each add-on.
var AddOnFile = map[string]string{
	AddOnDNS:     "00-coredns.yaml",
	AddOnStorage: "01-local-path.yaml",
	AddOnMetrics: "02-metrics-server.yaml",
	AddOnGrafana: "92-grafana.yaml",
}

// GrafanaNotSeeded is why Grafana is left out where the images come from
// the nodes' own imports: its image cannot be built here.
const GrafanaNotSeeded = "not seeded: Grafana's image cannot be built here (its web frontend needs a Node.js build); " +
	"set seed.image_registry to a registry that serves grafana:11.2.0 to seed it"

// GrafanaObject names Grafana's workload, as the status shows it.
const GrafanaObject = "Deployment ecommerce/grafana"

// GrafanaSeeded tells whether Grafana is seeded: only when the platform's
// images come from a registry.
func GrafanaSeeded(s config.Seed) bool { return s.ImageRegistry != config.DefaultImageRegistry }

// EmbeddedWithout returns the embedded manifests less the files of the
// add-ons named (switched off in the config). An unknown name panics: the
// names are the constants above.
func EmbeddedWithout(addOns ...string) fs.FS {
	hide := map[string]bool{}
	for _, a := range addOns {
		f, ok := AddOnFile[a]
		if !ok {
			panic("seed: unknown add-on " + a)
		}
		hide[f] = true
	}
	return without{Embedded(), hide}
}

// without is an FS of files at its root with some of them hidden.
type without struct {
	fs.FS
	hide map[string]bool
}

func (w without) Open(name string) (fs.File, error) {
	if w.hide[name] {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return w.FS.Open(name)
}

func (w without) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(w.FS, name)
	if name != "." {
		return entries, err
	}
	kept := entries[:0:0]
	for _, e := range entries {
		if !w.hide[e.Name()] {
			kept = append(kept, e)
		}
	}
	return kept, err
}

// Vars are substituted for @@CLUSTER_NAME@@, @@CLUSTER_DOMAIN@@,
// @@CLUSTER_DNS_IP@@ and @@STORAGE_DIR@@ in the text of the manifests
// before they are parsed.
type Vars struct {
	ClusterName   string
	ClusterDomain string
	ClusterDNSIP  string
	// StorageDir is the nodes' directory of local volumes.
	StorageDir string
	// ImageRegistry is the registry the platform's images are named from
	// (seed.image_registry), without a trailing slash.
	ImageRegistry string
	// PodCIDR is the cluster's pod network (network.pod_cidr).
	PodCIDR string
}

// VarsOf returns the variables of the cluster cfg describes.
func VarsOf(cfg *config.Config) Vars {
	return Vars{
		ClusterName:   cfg.ClusterName,
		ClusterDomain: cfg.Network.ClusterDomain,
		ClusterDNSIP:  cfg.ClusterDNSIP().String(),
		StorageDir:    cfg.AddOns.StorageDir,
		ImageRegistry: cfg.Seed.ImageRegistry,
		PodCIDR:       cfg.Network.PodCIDR.String(),
	}
}

// registryPrefix is the registry with the slash before a repository's
// name, or "" when there is none.
func registryPrefix(r string) string {
	if r == "" {
		return ""
	}
	return r + "/"
}

func (v Vars) values() map[string]string {
	return map[string]string{
		"CLUSTER_NAME":   v.ClusterName,
		"CLUSTER_DOMAIN": v.ClusterDomain,
		"CLUSTER_DNS_IP": v.ClusterDNSIP,
		"STORAGE_DIR":    v.StorageDir,
		"POD_CIDR":       v.PodCIDR,
		// With its slash, so that an unset registry is still a problem.
		"IMAGE_REGISTRY": registryPrefix(v.ImageRegistry),
	}
}

// Problem is a manifest file, or a document of one, that could not be used.
// The other files and documents are still applied.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Message)
}

// Ref identifies an object the seeder applied: an entry of a report's
// inventory.
type Ref struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	File       string `json:"file,omitempty"`
}

func (r Ref) String() string {
	if r.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name)
	}
	return fmt.Sprintf("%s %s", r.Kind, r.Name)
}

// Object is what a pass did with one object.
type Object struct {
	File       string `json:"file,omitempty"`
	Line       int    `json:"line,omitempty"`
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	// Result is one of created, configured, unchanged, failed, skipped, pruned.
	Result string `json:"result"`
	// Reason says why an object failed or was skipped; it never holds a
	// secret value.
	Reason string `json:"reason,omitempty"`
}

// FileInfo is one file of the effective set.
type FileInfo struct {
	Name string `json:"name"`
	// Source is "embedded" or the logical path of the file on the host.
	Source string `json:"source"`
}

// Report is the outcome of one apply pass.
type Report struct {
	Seeder   string         `json:"seeder"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Hash     string         `json:"hash"`
	Counts   map[string]int `json:"counts"`
	Files    []FileInfo     `json:"files,omitempty"`
	Objects  []Object       `json:"objects"`
	Problems []Problem      `json:"problems,omitempty"`
	// Inventory is every object the seeder applied and may prune later:
	// the objects of the set that exist, plus objects that left the set
	// and whose pruning is still pending.
	Inventory []Ref `json:"inventory"`
}

// NeedsRetry reports whether the pass left work for the next one: an object
// failed, was skipped (its kind not served yet) or could not be pruned.
func (r *Report) NeedsRetry() bool {
	if r == nil {
		return true
	}
	for _, o := range r.Objects {
		if o.Result == Failed || o.Result == Skipped && !strings.HasPrefix(o.Reason, "not pruned:") {
			return true
		}
	}
	return false
}
