package apilb_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ecom-platform/ecom-agent/apilb"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
)

// TestRealAPIServerKilledMidStream: a client-go watch through the balancer
// to the real kube-apiserver (TLS end to end, the client's own
// certificate) receives events; when the API server process is killed,
// the watch ends promptly instead of hanging, and the balancer calls the
// endpoint unhealthy.
func TestRealAPIServerKilledMidStream(t *testing.T) {
	c := kubetest.Start(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM) {
		t.Fatal("no CA certificate")
	}
	lb, err := apilb.New(apilb.Options{
		Listen:    "127.0.0.1:0",
		HealthTLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Interval:  200 * time.Millisecond,
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lb.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	endpoint := c.URL[len("https://"):]
	lb.SetEndpoints([]string{endpoint})

	// The admin's client, through the balancer: the API server's
	// certificate carries 127.0.0.1, so TLS verifies as if direct.
	rc := rest.CopyConfig(c.Admin)
	rc.Host = "https://" + lb.Addr().String()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer wcancel()
	w, err := cs.CoreV1().ConfigMaps("default").Watch(wctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(wctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "through-the-lb"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if cm, ok := ev.Object.(*corev1.ConfigMap); !ok || cm.Name != "through-the-lb" {
			t.Fatalf("first event %v %T", ev.Type, ev.Object)
		}
	case <-wctx.Done():
		t.Fatal("no event through the balancer")
	}
	if st := lb.Status(); len(st) != 1 || st[0].Connections == 0 {
		t.Fatalf("status %+v: want the watch's connection counted", st)
	}

	c.Stop() // the API server process dies mid-stream
stream:
	for {
		select {
		case _, ok := <-w.ResultChan():
			if !ok {
				break stream
			}
		case <-wctx.Done():
			t.Fatal("the watch did not end after its API server died")
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := lb.Status()
		if len(st) == 1 && !st[0].Healthy && st[0].Since.After(time.Time{}) && st[0].Connections == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v: want the endpoint unhealthy with no connections", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
