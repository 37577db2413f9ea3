package pki

import (
	"testing"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// BenchmarkControlPlanePKI measures generating a control-plane node's
// whole PKI (three CAs, the service-account key and seven leaves, written
// to disk) from nothing.
func BenchmarkControlPlanePKI(b *testing.B) {
	for _, alg := range []string{KeyECDSAP256, KeyRSA2048} {
		b.Run(alg, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				root, err := hostfs.New(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				s := NewStore(root, Options{KeyAlgorithm: alg})
				b.StartTimer()
				if _, err := EnsureControlPlane(s, testNode()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
