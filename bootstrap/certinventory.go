package bootstrap

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"sort"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

// CertInventory lists the PKI files, the certificates embedded in the
// kubeconfigs, and the kubelet's certificate store, soonest expiry first.
func CertInventory(root *hostfs.Root, opts pki.Options) ([]pki.CertStatus, error) {
	store := pki.NewStore(root, opts)
	statuses, err := store.Inventory()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", PKIDir, err)
	}
	cas := map[pki.CAName]*x509.Certificate{}
	for _, n := range pki.CANames() {
		if cert, err := store.LoadCACert(n); err == nil {
			cas[n] = cert
		}
	}
	for _, e := range embeddedCertKubeconfigs {
		kc := e.path
		data, err := root.ReadFile(kc)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		certPEM, _, certFile, err := credentials(data)
		if err == nil && len(certPEM) == 0 && certFile != "" {
			continue // a worker's kube-proxy.conf names its certificate's file, listed below
		}
		if err != nil || len(certPEM) == 0 {
			statuses = append(statuses, pki.CertStatus{Name: kc, Path: kc, Error: fmt.Sprintf("no embedded client certificate (%v)", err)})
			continue
		}
		statuses = append(statuses, pki.Inspect(kc, kc, certPEM, cas, opts))
	}
	// The kubelet's certificates, and a worker's kube-proxy certificate
	// (signed by a control-plane agent from its CSR).
	for _, p := range []string{KubeletClientCert, KubeletServerCert, KubeProxyClientCert} {
		data, err := root.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		statuses = append(statuses, pki.Inspect(p, p, data, cas, opts))
	}
	sort.SliceStable(statuses, func(i, j int) bool { return statuses[i].NotAfter.Before(statuses[j].NotAfter) })
	return statuses, nil
}
