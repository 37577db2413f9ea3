package pki

import (
	"bytes"
	"fmt"
)

// Bundle holds what every control-plane node of a cluster must share: the
// CA key pairs and the service-account signing key. It is created once, by
// the node that founds the cluster, and travels to the other
// control-plane nodes only sealed with a key derived from the cluster
// secret. A worker never receives one.
type Bundle struct {
	CAs map[CAName]PEMPair `json:"cas"`
	// ServiceAccountKey is sa.key; sa.pub is derived from it.
	ServiceAccountKey []byte `json:"sa_key"`
}

// PEMPair is a certificate and its private key.
type PEMPair struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// ExportBundle reads this node's CAs and service-account key, verifying
// each CA against its key.
func (s *Store) ExportBundle() (*Bundle, error) {
	b := &Bundle{CAs: map[CAName]PEMPair{}}
	for _, n := range CANames() {
		a, err := s.LoadAuthority(n)
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", n, err)
		}
		key, err := s.root.ReadFile(caFiles(n).key)
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", n, err)
		}
		b.CAs[n] = PEMPair{Cert: a.CertPEM(), Key: key}
	}
	sa, err := s.root.ReadFile(ServiceAccountKey)
	if err != nil {
		return nil, fmt.Errorf("export sa: %w", err)
	}
	if _, err := parseKeyPEM(sa); err != nil {
		return nil, fmt.Errorf("export sa: %w", err)
	}
	b.ServiceAccountKey = sa
	return b, nil
}

// InstallBundle writes a bundle received from the cluster. A CA this node
// does not have is installed; one it has with the same bytes is kept; one
// it has with other bytes is an error and nothing of it is changed: this
// node holds another cluster's CA (or one from an earlier bootstrap), and
// only an operator may decide which one is right.
func (s *Store) InstallBundle(b *Bundle) ([]Outcome, error) {
	if b == nil || len(b.CAs) != len(CANames()) || len(b.ServiceAccountKey) == 0 {
		return nil, fmt.Errorf("install bundle: incomplete bundle")
	}
	opts, err := s.opts.resolve()
	if err != nil {
		return nil, err
	}
	// Check everything before writing anything, so a bad bundle leaves
	// the node as it was.
	for _, n := range CANames() {
		p := b.CAs[n]
		if _, err := ParseAuthority(n, p.Cert, p.Key, opts); err != nil {
			return nil, fmt.Errorf("install bundle: %w", err)
		}
		if err := s.sameOrAbsent(string(n), caFiles(n).cert, p.Cert); err != nil {
			return nil, err
		}
		if err := s.sameOrAbsent(string(n), caFiles(n).key, p.Key); err != nil {
			return nil, err
		}
	}
	if _, err := parseKeyPEM(b.ServiceAccountKey); err != nil {
		return nil, fmt.Errorf("install bundle: sa: %w", err)
	}
	if err := s.sameOrAbsent("sa", ServiceAccountKey, b.ServiceAccountKey); err != nil {
		return nil, err
	}

	var outs []Outcome
	for _, n := range CANames() {
		p := b.CAs[n]
		out := Outcome{Name: string(n)}
		_, existed, err := s.read(caFiles(n).cert)
		if err != nil {
			return outs, err
		}
		if err := s.writePair(caFiles(n), p.Cert, p.Key); err != nil {
			return outs, fmt.Errorf("install %s: %w", n, err)
		}
		if !existed {
			out.Action, out.Reason = Created, Reason{ReasonMissing, "received from the cluster"}
		}
		outs = append(outs, out)
	}
	_, existed, err := s.read(ServiceAccountKey)
	if err != nil {
		return outs, err
	}
	if !existed {
		if _, err := s.write(ServiceAccountKey, b.ServiceAccountKey, KeyMode); err != nil {
			return outs, fmt.Errorf("install sa: %w", err)
		}
	}
	// sa.pub is derived from sa.key.
	out, err := s.EnsureServiceAccountKey()
	if err != nil {
		return outs, err
	}
	if !existed {
		out.Action, out.Reason = Created, Reason{ReasonMissing, "received from the cluster"}
	}
	return append(outs, out), nil
}

// sameOrAbsent refuses to replace an existing file with other bytes.
func (s *Store) sameOrAbsent(name, logical string, want []byte) error {
	have, ok, err := s.read(logical)
	if err != nil {
		return fmt.Errorf("install %s: %w", name, err)
	}
	if ok && !bytes.Equal(have, want) {
		return &CAError{Name: name,
			Problem: logical + " differs from the one the cluster sent: this node holds another cluster's CA or one from an earlier bootstrap",
			Remedy:  "if this node should join this cluster, run `ecom-agent reset` on it (or move /etc/kubernetes/pki aside) and join again"}
	}
	return nil
}

// GenerateBundle creates a new cluster's shared secrets in memory: the
// three CAs and the service-account key, nothing written. The node that
// founds a cluster generates it, persists it sealed together with its
// formation commit, and only then installs it (InstallBundle), so that a
// CA never lands on disk unless it is the one the cluster uses.
func GenerateBundle(opts Options) (*Bundle, error) {
	opts, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	b := &Bundle{CAs: map[CAName]PEMPair{}}
	for _, n := range CANames() {
		_, kp, err := generateCA(n, opts)
		if err != nil {
			return nil, fmt.Errorf("generate %s: %w", n, err)
		}
		b.CAs[n] = PEMPair{Cert: kp.CertPEM, Key: kp.KeyPEM}
	}
	key, err := generateKey(opts.KeyAlgorithm)
	if err != nil {
		return nil, fmt.Errorf("generate sa: %w", err)
	}
	if b.ServiceAccountKey, err = marshalKeyPEM(key); err != nil {
		return nil, fmt.Errorf("generate sa: %w", err)
	}
	return b, nil
}

// CAHashOf returns the pin (see CAHash) of the cluster CA in the bundle.
func (b *Bundle) CAHashOf() (string, error) {
	p, ok := b.CAs[CA]
	if !ok {
		return "", fmt.Errorf("bundle holds no %s", CA)
	}
	cert, err := parseCertPEM(p.Cert)
	if err != nil {
		return "", err
	}
	return CAHash(cert), nil
}
