package pki

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

func TestEnsureControlPlaneCreatesThenReuses(t *testing.T) {
	s, root, _ := newTestStore(t, KeyECDSAP256)
	outs, err := EnsureControlPlane(s, testNode())
	if err != nil {
		t.Fatal(err)
	}
	wantOrder := []string{"ca", "etcd/ca", "front-proxy-ca", "sa", "apiserver", "apiserver-kubelet-client",
		"front-proxy-client", "apiserver-etcd-client", "etcd/server", "etcd/peer", "etcd/healthcheck-client"}
	if len(outs) != len(wantOrder) {
		t.Fatalf("%d outcomes, want %d: %v", len(outs), len(wantOrder), outs)
	}
	for i, o := range outs {
		if o.Name != wantOrder[i] || o.Action != Created {
			t.Errorf("outcome %d = %v, want %s created", i, o, wantOrder[i])
		}
	}
	before := snapshot(t, root)
	time.Sleep(20 * time.Millisecond) // lets a rewrite show in the mtimes
	outs, err = EnsureControlPlane(s, testNode())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range outs {
		if o.Action != Reused {
			t.Errorf("second run: %v", o)
		}
	}
	sameFiles(t, before, snapshot(t, root))
}

func TestPermissions(t *testing.T) {
	old := syscall.Umask(0o077) // directories must not depend on the umask
	defer syscall.Umask(old)
	_, root, _ := setUp(t, KeyECDSAP256)
	files := 0
	err := filepath.WalkDir(root.Path(Dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var want fs.FileMode
		switch {
		case d.IsDir():
			want = DirMode
		case strings.HasSuffix(p, ".key"):
			want = 0o600
		case strings.HasSuffix(p, ".crt"), strings.HasSuffix(p, ".pub"):
			want = 0o644
		default:
			t.Errorf("unexpected file %s", p)
			return nil
		}
		if !d.IsDir() {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != 3*2+2+7*2 {
		t.Errorf("%d files, want 22", files)
	}
	if fi, _ := root.Stat(Dir + "/etcd"); fi == nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("pki/etcd mode %v, want 0755", fi)
	}
}

func TestLoosenedKeyModeIsTightened(t *testing.T) {
	s, root, _ := setUp(t, KeyECDSAP256)
	for _, p := range []string{KeyPath("apiserver"), KeyPath("ca"), ServiceAccountKey} {
		if err := os.Chmod(root.Path(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := EnsureControlPlane(s, testNode()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{KeyPath("apiserver"), KeyPath("ca"), ServiceAccountKey} {
		if fi, _ := root.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v after Ensure, want 0600", p, fi.Mode().Perm())
		}
	}
}

// TestReissue changes one thing and checks that exactly the affected
// certificates are re-issued, for the right reason, and that the run after
// that reuses everything.
func TestReissue(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(t *testing.T, root *hostfs.Root, c *clock, n *Node)
		want   map[string]ReasonKind // re-issued certificates; every other one is reused
		detail string                // in the apiserver's (or first) reason
		create bool                  // the action is Created, not Reissued
	}{
		{name: "inside renewal window",
			edit: func(t *testing.T, _ *hostfs.Root, c *clock, _ *Node) {
				c.now = epoch().Add(DefaultCertValidity - 29*24*time.Hour)
			},
			want: allLeaves(ReasonRenewal), detail: "in 29d; renewal window 30d"},
		{name: "outside renewal window",
			edit: func(t *testing.T, _ *hostfs.Root, c *clock, _ *Node) {
				c.now = epoch().Add(DefaultCertValidity - 31*24*time.Hour)
			},
			want: nil},
		{name: "expired",
			edit: func(t *testing.T, _ *hostfs.Root, c *clock, _ *Node) {
				c.now = epoch().Add(DefaultCertValidity + time.Hour)
			},
			want: allLeaves(ReasonExpired)},
		{name: "extra SAN added",
			edit: func(t *testing.T, _ *hostfs.Root, _ *clock, n *Node) {
				n.ExtraSANs = append(n.ExtraSANs, "api2.example.com", "2001:db8::7")
			},
			want:   map[string]ReasonKind{"apiserver": ReasonSANsChanged},
			detail: "added 2001:db8::7, api2.example.com"},
		{name: "extra SAN removed",
			edit: func(t *testing.T, _ *hostfs.Root, _ *clock, n *Node) { n.ExtraSANs = nil },
			want: map[string]ReasonKind{"apiserver": ReasonSANsChanged}, detail: "removed 192.0.2.7, api.example.com"},
		{name: "advertise address changed",
			edit: func(t *testing.T, _ *hostfs.Root, _ *clock, n *Node) {
				n.AdvertiseIP = n.AdvertiseIP.Next()
			},
			want: map[string]ReasonKind{"apiserver": ReasonSANsChanged, "etcd/server": ReasonSANsChanged,
				"etcd/peer": ReasonSANsChanged},
			detail: "added 10.0.0.11; removed 10.0.0.10"},
		{name: "node renamed",
			edit: func(t *testing.T, _ *hostfs.Root, _ *clock, n *Node) { n.Name = "cp-2" },
			want: map[string]ReasonKind{"apiserver": ReasonSANsChanged, "etcd/server": ReasonSubjectChanged,
				"etcd/peer": ReasonSubjectChanged}},
		{name: "signed by another CA",
			edit: func(t *testing.T, root *hostfs.Root, c *clock, n *Node) {
				other, _, err := generateCA(CA, Options{Now: c.Now}.withDefaults())
				if err != nil {
					t.Fatal(err)
				}
				kp, err := other.Issue(ControlPlaneCerts(*n)[0], Options{Now: c.Now})
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, root, CertPath("apiserver"), kp.CertPEM, 0o644)
				writeFile(t, root, KeyPath("apiserver"), kp.KeyPEM, 0o600)
			},
			want: map[string]ReasonKind{"apiserver": ReasonWrongCA}},
		{name: "signed by the wrong cluster CA",
			edit: func(t *testing.T, root *hostfs.Root, _ *clock, _ *Node) {
				// An etcd leaf moved to where a front-proxy leaf belongs.
				writeFile(t, root, CertPath("front-proxy-client"), readFile(t, root, CertPath("apiserver-etcd-client")), 0o644)
				writeFile(t, root, KeyPath("front-proxy-client"), readFile(t, root, KeyPath("apiserver-etcd-client")), 0o600)
			},
			want: map[string]ReasonKind{"front-proxy-client": ReasonWrongCA}},
		{name: "key does not match",
			edit: func(t *testing.T, root *hostfs.Root, _ *clock, _ *Node) {
				writeFile(t, root, KeyPath("apiserver"), readFile(t, root, KeyPath("etcd/server")), 0o600)
			},
			want: map[string]ReasonKind{"apiserver": ReasonKeyMismatch}},
		{name: "garbage certificate",
			edit: func(t *testing.T, root *hostfs.Root, _ *clock, _ *Node) {
				writeFile(t, root, CertPath("apiserver"), []byte("garbage"), 0o644)
			},
			want: map[string]ReasonKind{"apiserver": ReasonUnreadable}},
		{name: "key missing",
			edit: func(t *testing.T, root *hostfs.Root, _ *clock, _ *Node) {
				if _, err := root.Remove(KeyPath("apiserver")); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]ReasonKind{"apiserver": ReasonMissing}},
		{name: "certificate missing",
			edit: func(t *testing.T, root *hostfs.Root, _ *clock, _ *Node) {
				if _, err := root.Remove(CertPath("apiserver")); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]ReasonKind{"apiserver": ReasonMissing}, create: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, root, c := setUp(t, KeyECDSAP256)
			n := testNode()
			oldAPI := readFile(t, root, CertPath("apiserver"))
			tc.edit(t, root, c, &n)
			outs, err := EnsureControlPlane(s, n)
			if err != nil {
				t.Fatal(err)
			}
			var firstDetail string
			for _, o := range outs {
				kind, reissue := tc.want[o.Name]
				switch {
				case !reissue && o.Action != Reused:
					t.Errorf("%v, want reused", o)
				case reissue && o.Reason.Kind != kind:
					t.Errorf("%v, want reason %v", o, Reason{Kind: kind})
				case reissue && tc.create && o.Action != Created, reissue && !tc.create && o.Action != Reissued:
					t.Errorf("%v: wrong action", o)
				}
				if reissue && (firstDetail == "" || o.Name == "apiserver") {
					firstDetail = o.String()
				}
			}
			if !strings.Contains(firstDetail, tc.detail) {
				t.Errorf("reason %q does not contain %q", firstDetail, tc.detail)
			}
			if _, ok := tc.want["apiserver"]; ok && bytes.Equal(oldAPI, readFile(t, root, CertPath("apiserver"))) {
				t.Error("apiserver.crt was not rewritten")
			}
			// The new files pass their own check, so the next run is quiet.
			before := snapshot(t, root)
			outs, err = EnsureControlPlane(s, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range outs {
				if o.Action != Reused {
					t.Errorf("run after re-issue: %v", o)
				}
			}
			sameFiles(t, before, snapshot(t, root))
		})
	}
}

func allLeaves(kind ReasonKind) map[string]ReasonKind {
	m := make(map[string]ReasonKind)
	for _, s := range ControlPlaneCerts(testNode()) {
		m[s.Name] = kind
	}
	return m
}

func TestOutcomeString(t *testing.T) {
	s, _, _ := setUp(t, KeyECDSAP256)
	n := testNode()
	n.ExtraSANs = append(n.ExtraSANs, "api2.example.com")
	outs, err := EnsureControlPlane(s, n)
	if err != nil {
		t.Fatal(err)
	}
	got := outcomesByName(outs)["apiserver"].String()
	if want := "apiserver: re-issued: SANs changed (added api2.example.com)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := outcomesByName(outs)["etcd/server"].String(); got != "etcd/server: reused" {
		t.Errorf("got %q", got)
	}
}

func TestKeyAlgorithmChangeReissuesLeavesNotCAs(t *testing.T) {
	_, root, c := setUp(t, KeyECDSAP256)
	caBefore := readFile(t, root, KeyPath("ca"))
	s2 := NewStore(root, Options{KeyAlgorithm: KeyRSA2048, Now: c.Now})
	a, out, err := s2.EnsureCA(CA)
	if err != nil || out.Action != Reused {
		t.Fatalf("EnsureCA: %v %v", out, err)
	}
	out, err = s2.EnsureCert(a, ControlPlaneCerts(testNode())[0])
	if err != nil {
		t.Fatal(err)
	}
	if out.Action != Reissued || out.Reason.Kind != ReasonKeyAlgorithmChanged ||
		!strings.Contains(out.Reason.String(), "ecdsa-p256 → rsa-2048") {
		t.Errorf("outcome %v", out)
	}
	if !bytes.Equal(caBefore, readFile(t, root, KeyPath("ca"))) {
		t.Error("CA key changed")
	}
	if keyAlgorithm(loadCert(t, root, "apiserver").PublicKey) != KeyRSA2048 {
		t.Error("apiserver key is not RSA-2048")
	}
}

func TestLeafNeverOutlivesItsCA(t *testing.T) {
	s, root, c := newTestStore(t, KeyECDSAP256)
	s.opts.CAValidity = 2 * DefaultCertValidity
	if _, err := EnsureControlPlane(s, testNode()); err != nil {
		t.Fatal(err)
	}
	ca := loadCert(t, root, "ca")
	// 20 days before the CA expires, the first leaves have expired.
	c.now = ca.NotAfter.Add(-20 * 24 * time.Hour)
	outs, err := EnsureControlPlane(s, testNode())
	if err != nil {
		t.Fatal(err)
	}
	if o := outcomesByName(outs)["apiserver"]; o.Reason.Kind != ReasonExpired {
		t.Fatalf("apiserver: %v", o)
	}
	if got := loadCert(t, root, "apiserver").NotAfter; !got.Equal(ca.NotAfter) {
		t.Errorf("leaf NotAfter %v, want capped at CA's %v", got, ca.NotAfter)
	}
	// Inside the renewal window, but a new leaf could not last longer.
	outs, err = EnsureControlPlane(s, testNode())
	if err != nil {
		t.Fatal(err)
	}
	if o := outcomesByName(outs)["apiserver"]; o.Action != Reused {
		t.Errorf("capped leaf churned: %v", o)
	}
}

func TestEnsureCertRefusesWrongAuthority(t *testing.T) {
	s, _, _ := setUp(t, KeyECDSAP256)
	a, err := s.LoadAuthority(CA)
	if err != nil {
		t.Fatal(err)
	}
	etcdServer := ControlPlaneCerts(testNode())[4]
	if _, err := s.EnsureCert(a, etcdServer); err == nil || !strings.Contains(err.Error(), "etcd/server: must be signed by etcd/ca") {
		t.Errorf("err = %v", err)
	}
	if _, err := a.Issue(etcdServer, Options{}); err == nil {
		t.Error("Issue signed an etcd certificate with the cluster CA")
	}
	if _, err := s.EnsureCert(nil, etcdServer); err == nil {
		t.Error("EnsureCert accepted a nil authority")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{KeyAlgorithm: "ed25519"},
		{RenewBefore: 400 * 24 * time.Hour},
		{CertValidity: -time.Hour},
		{CAValidity: time.Hour},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate accepted %+v", o)
		}
	}
	if err := (Options{}).Validate(); err != nil {
		t.Error(err)
	}
	s, _, _ := newTestStore(t, "dsa")
	if _, err := EnsureControlPlane(s, testNode()); err == nil || !strings.HasPrefix(err.Error(), "ca: ") {
		t.Errorf("err = %v", err)
	}
}
