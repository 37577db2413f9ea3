package pki

import (
	"bytes"
	"errors"
	"testing"
)

func TestBundleExportInstall(t *testing.T) {
	src, _, _ := setUp(t, KeyECDSAP256)
	b, err := src.ExportBundle()
	if err != nil {
		t.Fatal(err)
	}
	dst, dstRoot, _ := newTestStore(t, KeyECDSAP256)
	outs, err := dst.InstallBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range outs {
		if o.Action != Created {
			t.Errorf("%s: %v, want created", o.Name, o.Action)
		}
	}
	// The installed CAs sign leaves that verify against the source's CA.
	if _, err := EnsureControlPlane(dst, testNode()); err != nil {
		t.Fatal(err)
	}
	for _, n := range CANames() {
		a, _ := src.LoadAuthority(n)
		c, _ := dst.LoadAuthority(n)
		if !bytes.Equal(a.CertPEM(), c.CertPEM()) {
			t.Errorf("%s differs after install", n)
		}
	}
	srcPub, _ := src.root.ReadFile(ServiceAccountPub)
	dstPub, _ := dstRoot.ReadFile(ServiceAccountPub)
	if !bytes.Equal(srcPub, dstPub) {
		t.Error("sa.pub differs")
	}
	// Installing the same bundle again changes nothing.
	outs, err = dst.InstallBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range outs {
		if o.Action != Reused {
			t.Errorf("second install %s: %v, want reused", o.Name, o.Action)
		}
	}
}

func TestBundleNeverReplacesAnotherCA(t *testing.T) {
	src, _, _ := setUp(t, KeyECDSAP256)
	b, _ := src.ExportBundle()
	other, otherRoot, _ := setUp(t, KeyECDSAP256)
	before, _ := otherRoot.ReadFile(CertPath("ca"))
	_, err := other.InstallBundle(b)
	var caErr *CAError
	if !errors.As(err, &caErr) {
		t.Fatalf("got %v, want a *CAError", err)
	}
	after, _ := otherRoot.ReadFile(CertPath("ca"))
	if !bytes.Equal(before, after) {
		t.Fatal("the existing CA was replaced")
	}
}

func TestBundleRejectsMismatchedPair(t *testing.T) {
	src, _, _ := setUp(t, KeyECDSAP256)
	b, _ := src.ExportBundle()
	p := b.CAs[EtcdCA]
	p.Key = b.CAs[CA].Key
	b.CAs[EtcdCA] = p
	dst, root, _ := newTestStore(t, KeyECDSAP256)
	if _, err := dst.InstallBundle(b); err == nil {
		t.Fatal("installed a CA whose key does not match")
	}
	if ok, _ := root.Exists(CertPath("ca")); ok {
		t.Fatal("a rejected bundle wrote files")
	}
}
