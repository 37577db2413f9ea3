package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	kubeletapis "k8s.io/kubelet/pkg/apis"
)

// Node is what this node's Node object is registered with, and how the
// control-plane nodes are tainted. The kubelet sets the labels and
// taints when it registers the Node, as kubeadm's nodeRegistration and
// k3s's --node-label and --node-taint do: changing them later is
// `kubectl label` and `kubectl taint`. The control-plane nodes share one
// config and the workers another, so labels and taints are per role.
type Node struct {
	// Labels are the Node's labels. Keys in the kubernetes.io and k8s.io
	// namespaces only where a kubelet may set them (topology, instance
	// type, *.node.kubernetes.io, ...); the role label
	// node-role.kubernetes.io/control-plane is the agent's.
	Labels map[string]string `toml:"labels"`
	// Taints are the Node's taints, each "key[=value]:Effect" with Effect
	// NoSchedule, PreferNoSchedule or NoExecute.
	Taints []string `toml:"taints"`
	// ControlPlaneTaint is the effect of the taint
	// node-role.kubernetes.io/control-plane the control-plane nodes carry
	// while the cluster has at least one worker Node: PreferNoSchedule
	// (default; workloads go to the workers first, and a pod bound to a
	// control-plane node's local volume still schedules), NoSchedule (as
	// kubeadm; only pods that tolerate it, such as the seeded add-ons) or
	// "none" (the agent leaves it to kubectl taint). A cluster of
	// control-plane nodes only is never tainted.
	ControlPlaneTaint TaintEffect `toml:"control_plane_taint"`
}

// TaintEffect is a taint's effect, or TaintNone.
type TaintEffect string

const (
	TaintNoSchedule       TaintEffect = "NoSchedule"
	TaintPreferNoSchedule TaintEffect = "PreferNoSchedule"
	TaintNoExecute        TaintEffect = "NoExecute"
	// TaintNone is node.control_plane_taint's "no taint".
	TaintNone TaintEffect = "none"
)

// ControlPlaneTaintKey is the control-plane nodes' taint, as kubeadm's:
// the key of their role label too (agent/noderole sets both).
const ControlPlaneTaintKey = "node-role.kubernetes.io/control-plane"

// Taint is one parsed node.taints entry.
type Taint struct {
	Key, Value string
	Effect     TaintEffect
}

// ParseTaint parses "key[=value]:Effect", the form of kubectl taint.
func ParseTaint(s string) (Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	if !ok {
		return Taint{}, fmt.Errorf("%q has no effect: write key[=value]:Effect, e.g. \"dedicated=db:NoSchedule\"", s)
	}
	key, value, _ := strings.Cut(kv, "=")
	t := Taint{Key: key, Value: value, Effect: TaintEffect(effect)}
	switch t.Effect {
	case TaintNoSchedule, TaintPreferNoSchedule, TaintNoExecute:
	default:
		return Taint{}, fmt.Errorf("%q: the effect %q is not NoSchedule, PreferNoSchedule or NoExecute", s, effect)
	}
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return Taint{}, fmt.Errorf("%q: the key %q is invalid: %s", s, key, strings.Join(errs, "; "))
	}
	if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
		return Taint{}, fmt.Errorf("%q: the value %q is invalid: %s", s, value, strings.Join(errs, "; "))
	}
	return t, nil
}

// ParsedTaints is node.taints parsed; the config was validated, so every
// entry parses.
func (n Node) ParsedTaints() []Taint {
	var ts []Taint
	for _, s := range n.Taints {
		if t, err := ParseTaint(s); err == nil {
			ts = append(ts, t)
		}
	}
	return ts
}

// LabelsFlag is node.labels as the kubelet's --node-labels value,
// sorted: "k1=v1,k2=v2"; "" for none.
func (n Node) LabelsFlag() string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
		kv = append(kv, k+"="+n.Labels[k])
	}
	return strings.Join(kv, ",")
}

// kubeletOwnLabels are the labels the kubelet gives every Node itself,
// which --node-labels would override: the seeded add-ons select on
// kubernetes.io/os, local volumes are bound to kubernetes.io/hostname.
var kubeletOwnLabels = []string{"kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch"}

func (l *loader) validateNode(c *Config) {
	for _, k := range slices.Sorted(maps.Keys(c.Node.Labels)) {
		key, v := keyName([]string{"node", "labels", k}), c.Node.Labels[k]
		ns, _, _ := strings.Cut(k, "/")
		if !strings.Contains(k, "/") {
			ns = ""
		}
		restricted := ns == "kubernetes.io" || ns == "k8s.io" || strings.HasSuffix(ns, ".kubernetes.io") || strings.HasSuffix(ns, ".k8s.io")
		switch {
		case len(validation.IsQualifiedName(k)) > 0:
			l.add(key, "%q is not a label key: %s", k, strings.Join(validation.IsQualifiedName(k), "; "))
		case len(validation.IsValidLabelValue(v)) > 0:
			l.add(key, "%q is not a label value: %s", v, strings.Join(validation.IsValidLabelValue(v), "; "))
		case slices.Contains(kubeletOwnLabels, k):
			l.add(key, "the kubelet sets %s itself, and pods and volumes select on it; remove it", k)
		case ns == "node-role.kubernetes.io":
			l.add(key, "node-role labels are not the kubelet's to set: the agent labels the control-plane nodes itself; use a label of your own domain, e.g. \"example.com/role\"")
		case restricted && !kubeletapis.IsKubeletLabel(k):
			l.add(key, "a kubelet may not set labels in %s except %s and *.%s; use a label of your own domain, e.g. \"example.com/%s\"",
				ns, strings.Join(kubeletapis.KubeletLabels(), ", "), strings.Join(kubeletapis.KubeletLabelNamespaces(), ", *."), k[strings.LastIndex(k, "/")+1:])
		}
	}
	seen := map[string]bool{}
	for i, s := range c.Node.Taints {
		t, err := ParseTaint(s)
		switch {
		case err != nil:
			l.add("node.taints", "entry %d: %v", i+1, err)
		case t.Key == ControlPlaneTaintKey:
			l.add("node.taints", "entry %d: the control-plane taint is node.control_plane_taint's; remove %q", i+1, s)
		case seen[t.Key+":"+string(t.Effect)]:
			l.add("node.taints", "entry %d: %s with effect %s is already listed", i+1, t.Key, t.Effect)
		}
		seen[t.Key+":"+string(t.Effect)] = true
	}
	switch c.Node.ControlPlaneTaint {
	case TaintPreferNoSchedule, TaintNoSchedule, TaintNone:
	default:
		l.add("node.control_plane_taint", "%q is not one of \"PreferNoSchedule\", \"NoSchedule\" or \"none\"", c.Node.ControlPlaneTaint)
	}
}
