package bootstrap

import (
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigSpec describes one kubeconfig file.
type KubeconfigSpec struct {
	// Cluster names the cluster entry (the cluster name from the config).
	Cluster string
	// Server is the API server URL.
	Server string
	// CAPEM is the cluster CA certificate the client trusts.
	CAPEM []byte
	// User names the user entry, e.g. "kubernetes-admin".
	User string
	// CertPEM and KeyPEM are embedded client credentials. When
	// ClientCertFile is set instead, the user points at that file (cert
	// and key in one PEM), which is how the kubelet picks up rotations.
	CertPEM, KeyPEM []byte
	ClientCertFile  string
}

// Kubeconfig builds a kubeconfig file with one cluster, user and context.
func Kubeconfig(s KubeconfigSpec) ([]byte, error) {
	if s.Server == "" || len(s.CAPEM) == 0 || s.User == "" {
		return nil, fmt.Errorf("kubeconfig for %s: server, CA and user are required", s.User)
	}
	user := &clientcmdapi.AuthInfo{}
	switch {
	case s.ClientCertFile != "":
		user.ClientCertificate = s.ClientCertFile
		user.ClientKey = s.ClientCertFile
	case len(s.CertPEM) > 0 && len(s.KeyPEM) > 0:
		user.ClientCertificateData = s.CertPEM
		user.ClientKeyData = s.KeyPEM
	default:
		return nil, fmt.Errorf("kubeconfig for %s: no client credentials", s.User)
	}
	ctx := s.User + "@" + s.Cluster
	c := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{
			s.Cluster: {Server: s.Server, CertificateAuthorityData: s.CAPEM},
		},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{s.User: user},
		Contexts:       map[string]*clientcmdapi.Context{ctx: {Cluster: s.Cluster, AuthInfo: s.User}},
		CurrentContext: ctx,
	}
	out, err := clientcmd.Write(c)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig for %s: %w", s.User, err)
	}
	return out, nil
}

// EmbeddedCredentials returns the client certificate and key embedded in a
// kubeconfig's current user, or nil when the file has none.
func EmbeddedCredentials(data []byte) (certPEM, keyPEM []byte, err error) {
	certPEM, keyPEM, _, err = credentials(data)
	return certPEM, keyPEM, err
}

// credentials returns a kubeconfig's embedded client certificate and key
// of its current context, or the file it names for them instead.
func credentials(data []byte) (certPEM, keyPEM []byte, certFile string, err error) {
	c, err := clientcmd.Load(data)
	if err != nil {
		return nil, nil, "", fmt.Errorf("parse kubeconfig: %w", err)
	}
	ctx, ok := c.Contexts[c.CurrentContext]
	if !ok {
		return nil, nil, "", nil
	}
	u, ok := c.AuthInfos[ctx.AuthInfo]
	if !ok {
		return nil, nil, "", nil
	}
	return u.ClientCertificateData, u.ClientKeyData, u.ClientCertificate, nil
}
