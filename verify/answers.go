package verify

// The verdicts on answers, as pure functions: DNS, the metrics API, HTTP
// through the service proxy, pg_isready.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// DefaultClusterDomain is the cluster domain when the CoreDNS Corefile
// names none.
const DefaultClusterDomain = "cluster.local"

// corefileDomain returns the cluster domain of a CoreDNS Corefile: the
// first zone of its kubernetes plugin ("kubernetes cluster.local
// in-addr.arpa ip6.arpa {"), else DefaultClusterDomain.
func corefileDomain(corefile string) string {
	sc := bufio.NewScanner(strings.NewReader(corefile))
	for sc.Scan() {
		f := strings.Fields(strings.SplitN(sc.Text(), "#", 2)[0])
		if len(f) >= 2 && f[0] == "kubernetes" && f[1] != "{" {
			return strings.TrimSuffix(f[1], ".")
		}
	}
	return DefaultClusterDomain
}

// dnsProblem compares the addresses a name resolved to with the
// Service's cluster IPs; "" when they are the same set.
func dnsProblem(name string, got []netip.Addr, want []string) string {
	var g, w []string
	for _, a := range got {
		g = append(g, a.Unmap().String())
	}
	for _, ip := range want {
		if a, err := netip.ParseAddr(ip); err == nil {
			w = append(w, a.String())
		}
	}
	slices.Sort(g)
	slices.Sort(w)
	g, w = slices.Compact(g), slices.Compact(w)
	if slices.Equal(g, w) {
		return ""
	}
	if len(g) == 0 {
		return fmt.Sprintf("%s resolved to no address, want %s", name, strings.Join(w, ", "))
	}
	return fmt.Sprintf("%s resolved to %s, want %s (the kubernetes Service's cluster IP)", name, strings.Join(g, ", "), strings.Join(w, ", "))
}

// apiService is the part of an apiregistration.k8s.io/v1 APIService the
// metrics check reads.
type apiService struct {
	Status struct {
		Conditions []apiServiceCondition `json:"conditions"`
	} `json:"status"`
}

type apiServiceCondition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// apiServiceProblem says why an APIService is not Available, "" when it is.
func apiServiceProblem(a apiService) string {
	for _, c := range a.Status.Conditions {
		if c.Type == "Available" {
			if c.Status == "True" {
				return ""
			}
			return join("Available="+c.Status, c.Reason, c.Message)
		}
	}
	return "no Available condition yet"
}

// nodeMetricsList is the part of metrics.k8s.io/v1beta1 NodeMetricsList
// the metrics check reads.
type nodeMetricsList struct {
	Items []nodeMetrics `json:"items"`
}

type nodeMetrics struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Usage map[string]string `json:"usage"`
}

// nodesWithoutMetrics returns the nodes that have no usage in list.
func nodesWithoutMetrics(nodes []string, list nodeMetricsList) []string {
	have := map[string]bool{}
	for _, it := range list.Items {
		if len(it.Usage) > 0 {
			have[it.Metadata.Name] = true
		}
	}
	var out []string
	for _, n := range nodes {
		if !have[n] {
			out = append(out, n)
		}
	}
	return out
}

// body is what an answer must carry besides a 2xx status.
type body int

const (
	anyBody body = iota
	jsonBody
	htmlBody
)

// httpAnswer is what a GET through the service proxy returned: its status
// (0 when none came back), content type and body, or the error.
type httpAnswer struct {
	Code        int
	ContentType string
	Body        []byte
	Err         error
}

// httpProblem says why an answer to GET path is not what the platform
// serves, "" when it is: a 2xx status, and a JSON or HTML body when want
// says so.
func httpProblem(path string, a httpAnswer, want body) string {
	get := "GET " + path
	if a.Code == 0 {
		if a.Err == nil {
			return get + ": no answer"
		}
		return get + ": " + oneLine(a.Err.Error())
	}
	if a.Code < 200 || a.Code > 299 {
		why := snippet(a.Body)
		if a.Err != nil {
			why = oneLine(a.Err.Error())
		}
		return join(fmt.Sprintf("%s answered %d %s", get, a.Code, http.StatusText(a.Code)), why)
	}
	media, _, _ := mime.ParseMediaType(a.ContentType)
	if media == "" {
		media, _, _ = mime.ParseMediaType(http.DetectContentType(a.Body))
	}
	switch want {
	case jsonBody:
		if !json.Valid(a.Body) {
			return fmt.Sprintf("%s answered %d with a body that is not JSON (%s): %s", get, a.Code, orNone(a.ContentType), snippet(a.Body))
		}
	case htmlBody:
		if media != "text/html" {
			return fmt.Sprintf("%s answered %d with %s, want text/html", get, a.Code, orNone(a.ContentType))
		}
	}
	return ""
}

// snippet is the start of a body, on one line.
func snippet(b []byte) string {
	s := oneLine(string(b))
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "no Content-Type"
	}
	return s
}

// execAnswer is what a command run with pods/exec returned.
type execAnswer struct {
	// Exit is the command's exit code; -1 when it did not run.
	Exit   int
	Output string // stdout and stderr
	Err    error  // why it did not run
}

// psqlProblem says why psql's answer to "SELECT version()" is not a
// PostgreSQL version, "" when it is.
func psqlProblem(a execAnswer) string {
	switch {
	case a.Exit < 0:
		return "psql could not be run: " + oneLine(fmt.Sprint(a.Err))
	case a.Exit != 0:
		return join(fmt.Sprintf("psql -U postgres exited %d", a.Exit), a.Output)
	case psqlVersionLine(a.Output) == "":
		return "psql answered SELECT version() with " + snippet([]byte(a.Output))
	}
	return ""
}

// psqlVersionLine is the line of psql's output that holds the server's
// version ("PostgreSQL 15.18 ..."), "" when there is none; the exec stream
// carries stderr too, where psql may have written a notice first.
func psqlVersionLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "PostgreSQL ") {
			return l
		}
	}
	return ""
}

// pgIsReadyProblem says why pg_isready's answer is not "accepting
// connections", "" when it is.
func pgIsReadyProblem(a execAnswer) string {
	switch {
	case a.Exit == 0:
		return ""
	case a.Exit < 0:
		return "pg_isready could not be run: " + oneLine(fmt.Sprint(a.Err))
	}
	// pg_isready: 1 rejecting connections, 2 no response, 3 no attempt.
	return join(fmt.Sprintf("pg_isready exited %d", a.Exit), a.Output)
}
