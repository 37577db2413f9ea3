package bootstrap

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

// AdminGroup is the group admin.conf's user belongs to, bound to
// cluster-admin by the bootstrap RBAC (kubeadm names it so).
const AdminGroup = "kubeadm:cluster-admins"

// MaxUserKubeconfigTTL bounds a workstation kubeconfig's lifetime: a
// client certificate cannot be revoked, only its RBAC bindings removed.
const MaxUserKubeconfigTTL = 365 * 24 * time.Hour

// UserKubeconfigOptions describe a kubeconfig for a person or a tool
// outside the cluster (as kubeadm's `kubeconfig user`).
type UserKubeconfigOptions struct {
	// User is the certificate's common name, the user RBAC sees.
	User string
	// Groups are its organizations, the groups RBAC sees.
	Groups []string
	// Server is the API server URL; empty: this node's advertised one.
	Server string
	// TTL is the certificate's lifetime.
	TTL time.Duration
	// Now is the time to sign at (default time.Now).
	Now func() time.Time
}

// UserKubeconfig issues a client certificate from the cluster CA on a
// control-plane node and returns a kubeconfig embedding it, and the
// certificate.
func UserKubeconfig(root *hostfs.Root, cfg *config.Config, o UserKubeconfigOptions) ([]byte, *x509.Certificate, error) {
	if !cfg.IsControlPlane() {
		return nil, nil, errors.New("the cluster CA's key is on control-plane nodes only: make the kubeconfig on one of them")
	}
	if err := checkUser(o); err != nil {
		return nil, nil, err
	}
	if o.Server == "" {
		o.Server = ClusterAPIServer(cfg)
	} else if u, err := url.Parse(o.Server); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, fmt.Errorf("server %q: want an https URL such as https://10.0.0.11:6443", o.Server)
	}
	opts := PKIOptions(cfg)
	// Nobody renews this certificate; pki wants a margin below its
	// lifetime all the same.
	opts.CertValidity, opts.RenewBefore, opts.Now = o.TTL, o.TTL/2, o.Now
	ca, err := pki.NewStore(root, opts).LoadAuthority(pki.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("the cluster CA: %w", err)
	}
	kp, err := ca.Issue(pki.CertSpec{Name: "user-" + o.User, CA: pki.CA, CommonName: o.User, Organization: o.Groups,
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, opts)
	if err != nil {
		return nil, nil, err
	}
	cert, err := pki.ParseCertPEM(kp.CertPEM)
	if err != nil {
		return nil, nil, err
	}
	data, err := Kubeconfig(KubeconfigSpec{Cluster: cfg.ClusterName, Server: o.Server, CAPEM: ca.CertPEM(),
		User: o.User, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM})
	return data, cert, err
}

// checkUser refuses names RBAC would misread and identities that must
// not leave the cluster.
func checkUser(o UserKubeconfigOptions) error {
	if o.TTL < time.Minute || o.TTL > MaxUserKubeconfigTTL {
		return fmt.Errorf("--ttl %s: want a lifetime of at least 1m and at most %s (a client certificate cannot be revoked)", o.TTL, MaxUserKubeconfigTTL)
	}
	names := append([]string{o.User}, o.Groups...)
	for i, n := range names {
		what := "user"
		if i > 0 {
			what = "group"
		}
		if n == "" || len(n) > 253 || strings.ContainsFunc(n, func(r rune) bool { return r < 0x21 || r == 0x7f || r == '/' }) {
			return fmt.Errorf("%s %q: want a non-empty name without spaces, slashes or control characters", what, n)
		}
	}
	if strings.HasPrefix(o.User, "system:") {
		return fmt.Errorf("user %q: system: names belong to Kubernetes' own components and nodes; pick a person's or a tool's name", o.User)
	}
	for _, g := range o.Groups {
		if g == "system:masters" {
			return errors.New("group system:masters bypasses RBAC, so its certificate could never be revoked: use " + AdminGroup +
				" (cluster-admin through a binding you can delete), or super-admin.conf on a control-plane node to break glass")
		}
		if strings.HasPrefix(g, "system:") {
			return fmt.Errorf("group %q: system: groups are Kubernetes' own; pick a group your RBAC binds", g)
		}
	}
	return nil
}
