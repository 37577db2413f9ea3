package pki

// EnsureControlPlane makes s hold a control-plane node's whole PKI: the
// three CAs, the service-account key pair and every leaf of
// ControlPlaneCerts(n), in that order. It returns what it did for each,
// up to the first error; errors name the certificate ("etcd/ca: ...").
// The certificates of KubeconfigCerts and KubeletServingCert are not
// files and are not issued here: issue them with Authority.Issue, from
// s.LoadAuthority(CA).
func EnsureControlPlane(s *Store, n Node) ([]Outcome, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	var outcomes []Outcome
	authorities := make(map[CAName]*Authority, 3)
	for _, name := range CANames() {
		a, out, err := s.EnsureCA(name)
		if err != nil {
			return outcomes, err
		}
		authorities[name] = a
		outcomes = append(outcomes, out)
	}
	out, err := s.EnsureServiceAccountKey()
	if err != nil {
		return outcomes, err
	}
	outcomes = append(outcomes, out)
	for _, spec := range ControlPlaneCerts(n) {
		out, err := s.EnsureCert(authorities[spec.CA], spec)
		if err != nil {
			return outcomes, err
		}
		outcomes = append(outcomes, out)
	}
	return outcomes, nil
}
