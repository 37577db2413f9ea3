package joinserver

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/token"
)

type noTokens struct{}

func (noTokens) Check(context.Context, token.Token, token.Usage, time.Time) error {
	return token.ErrUnknown
}

// Requests that are not a worker's, too large, or without credentials
// are refused before anything is looked up or signed, each with a reason.
func TestHandlerRefusesBadRequests(t *testing.T) {
	h := &Handler{Config: configtest.ControlPlane(t), Root: configtest.Root(t), Log: slog.New(slog.DiscardHandler), Now: time.Now,
		Tokens: noTokens{},
		Registered: func(context.Context, string) (bool, error) {
			t.Error("a bad request reached the Node lookup")
			return false, nil
		},
		ControlPlaneNames: func(context.Context) ([]string, error) { return nil, nil },
	}
	good := `{"node_name":"w-1","kubelet_csr":"","proxy_csr":""}`
	for _, tc := range []struct {
		name, method, path, body, auth string
		code                           int
		want                           string
	}{
		{"GET", http.MethodGet, PathWorker, "", "", http.StatusNotFound, "is the only method"},
		{"another path", http.MethodPost, "/v1/peer/etcd.join", good, "", http.StatusNotFound, "is the only method"},
		{"not JSON", http.MethodPost, PathWorker, "hello", "", http.StatusBadRequest, "not a worker request"},
		{"unknown field", http.MethodPost, PathWorker, `{"node_name":"w-1","role":"control-plane"}`, "", http.StatusBadRequest, "unknown field"},
		{"too large", http.MethodPost, PathWorker, `{"node_name":"` + strings.Repeat("a", maxRequest) + `"}`, "", http.StatusBadRequest, "too large"},
		{"bad name", http.MethodPost, PathWorker, `{"node_name":"W_1; rm"}`, "", http.StatusBadRequest, "node name"},
		{"no credentials", http.MethodPost, PathWorker, good, "", http.StatusUnauthorized, "present a join token"},
		{"not a token", http.MethodPost, PathWorker, good, "Bearer abc", http.StatusUnauthorized, "not an ecom-agent join token"},
		{"unknown token", http.MethodPost, PathWorker, good, "Bearer EA1::sha256:" + strings.Repeat("ab", 32) + "::0123456789ab." + strings.Repeat("cd", 16),
			http.StatusUnauthorized, "not a token of this cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
				t.Errorf("%d %s; want %d with %q", w.Code, w.Body.String(), tc.code, tc.want)
			}
		})
	}
}
