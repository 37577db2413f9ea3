// Package workercreds is a worker's side of joining: the component that
// asks a control-plane agent's join endpoint (agent/joinserver) for the
// worker's kubelet and kube-proxy certificates and the gossip key, with
// its join token the first time and its kubelet certificate afterwards,
// renews them, and runs the API load balancer its kubelet and kube-proxy
// talk through.
package workercreds

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/ecom-platform/ecom-agent/agent/joinserver"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/token"
)

// clockSkewWarning is the clock difference to a control-plane node a
// worker warns about.
const clockSkewWarning = time.Minute

// maxResponse bounds what a worker reads of an answer.
const maxResponse = 1 << 20

// auth is how a worker proves itself to a join endpoint, and which CA it
// trusts there.
type auth struct {
	// tok is the join token of a first join (zero on a renewal); the
	// endpoint's chain must hold the CA it pins.
	tok token.Token
	// roots is the pinned cluster CA of a renewal, and cert the current
	// kubelet certificate it presents.
	roots *x509.CertPool
	cert  *tls.Certificate
}

// credentials are the ways this worker can prove itself, in the order to
// try them: its kubelet certificate from the pinned CA while it is valid
// (a renewal), then its join token (a first join, or a worker whose Node
// was deleted).
func (w *Worker) credentials() ([]auth, error) {
	var out []auth
	root := w.d.Root
	caPEM, caErr := root.ReadFile(bootstrap.PKIDir + "/ca.crt")
	current, certErr := root.ReadFile(bootstrap.KubeletClientCert)
	if caErr == nil && certErr == nil {
		if kp, err := pki.ParseCombinedPEM(current); err == nil && w.d.Now().Before(kp.Cert.NotAfter) {
			if c, err := tls.X509KeyPair(current, current); err == nil {
				pool := x509.NewCertPool()
				if pool.AppendCertsFromPEM(caPEM) {
					out = append(out, auth{roots: pool, cert: &c})
				}
			}
		}
	}
	tok, err := token.Parse(string(w.d.Config.Join.Token))
	if err != nil {
		if len(out) > 0 {
			return out, nil
		}
		return nil, fmt.Errorf("join.token: %w", err)
	}
	return append(out, auth{tok: tok}), nil
}

// String says which credential an auth is, for errors.
func (a auth) String() string {
	if a.cert != nil {
		return "kubelet certificate"
	}
	return "join token " + a.tok.ID()
}

// tlsConfig is the client side of the connection to addr.
func (a auth) tlsConfig(addr string) *tls.Config {
	host, _, _ := net.SplitHostPort(addr)
	if a.cert != nil {
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: a.roots, ServerName: host,
			Certificates: []tls.Certificate{*a.cert}}
	}
	// A first join trusts nothing yet but the CA hash of its token: the
	// endpoint's chain must hold a CA with that hash which signed the
	// endpoint's certificate for addr. Only then is the token sent.
	want := a.tok.CAHash()
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below against the pinned hash
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) < 2 {
				return fmt.Errorf("%w: the endpoint sent no CA certificate", token.ErrCAMismatch)
			}
			for _, c := range cs.PeerCertificates[1:] {
				if !c.IsCA || pki.CAHash(c) != want {
					continue
				}
				pool := x509.NewCertPool()
				pool.AddCert(c)
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: host})
				return err
			}
			return fmt.Errorf("%w: the endpoint's CA is not the one the join token pins (%s); check join.servers and the token", token.ErrCAMismatch, want)
		},
	}
}

// call posts req to the join endpoint at addr.
func call(ctx context.Context, addr string, a auth, req joinserver.WorkerRequest) (joinserver.WorkerResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return joinserver.WorkerResponse{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+joinserver.PathWorker, bytes.NewReader(body))
	if err != nil {
		return joinserver.WorkerResponse{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	if a.cert == nil {
		hr.Header.Set("Authorization", joinserver.BearerPrefix+a.tok.String())
	}
	tr := &http.Transport{TLSClientConfig: a.tlsConfig(addr), Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(hr)
	if err != nil {
		return joinserver.WorkerResponse{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return joinserver.WorkerResponse{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var e joinserver.ErrorResponse
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
				return joinserver.WorkerResponse{}, &refusal{code: resp.StatusCode, msg: e.Error}
			}
			return joinserver.WorkerResponse{}, fmt.Errorf("refused (%s): %s", http.StatusText(resp.StatusCode), e.Error)
		}
		return joinserver.WorkerResponse{}, fmt.Errorf("answered %s", resp.Status)
	}
	var out joinserver.WorkerResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return joinserver.WorkerResponse{}, errors.New("the answer is not a worker response: " + err.Error())
	}
	return out, nil
}

// refusal is a join endpoint's answer that only an operator can change:
// the token or the name refused (401, 403). Every control-plane agent
// reads the same token list and Nodes, so another one would say the same.
type refusal struct {
	code int
	msg  string
}

func (r *refusal) Error() string {
	return fmt.Sprintf("refused (%s): %s", http.StatusText(r.code), r.msg)
}

// refused reports whether every answer in err, from fetch, is one only an
// operator can change: a refusal, or an endpoint whose CA is not the one
// the token pins (join.servers or the token is another cluster's). An
// unreachable server or a transient error (a renewal's certificate
// answered 503 while an old token is refused) keeps the worker waiting.
func refused(err error) bool {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return isRefusal(err)
	}
	errs := joined.Unwrap()
	for _, e := range errs {
		if !isRefusal(e) {
			return false
		}
	}
	return len(errs) > 0
}

func isRefusal(err error) bool {
	var r *refusal
	return errors.As(err, &r) || errors.Is(err, token.ErrCAMismatch)
}
