package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// With ECHO_TEST_MAIN=1 the test binary is the echo server.
func TestMain(m *testing.M) {
	if os.Getenv("ECHO_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// syncBuffer is a log destination the handler writes from other goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHandler(t *testing.T) {
	var logs syncBuffer
	info := func() (string, string) { return "echo-7d9f-abcde", "10.244.1.17" }
	lookup := func(_ context.Context, name string) ([]string, error) {
		if name == "kubernetes.default" {
			return []string{"10.96.0.1", "10.0.0.1"}, nil
		}
		return nil, errors.New("lookup " + name + ": no such host")
	}
	srv := httptest.NewServer(newHandler(info, lookup, log.New(&logs, "", 0)))
	defer srv.Close()
	// A port nothing listens on: the listener is closed before the dial.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	srvAddr := strings.TrimPrefix(srv.URL, "http://")

	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/", 200, "echo-7d9f-abcde 10.244.1.17\n"},
		{"GET", "/healthz", 200, "ok"},
		{"HEAD", "/", 200, ""},
		{"GET", "/nope", 404, "404 page not found\n"},
		{"POST", "/", 405, "Method Not Allowed\n"},
		{"GET", "/resolve?name=kubernetes.default", 200, "10.0.0.1\n10.96.0.1\n"},
		{"GET", "/resolve?name=nope.invalid", 502, "lookup nope.invalid: no such host\n"},
		{"GET", "/resolve", 400, "name= is required\n"},
		{"GET", "/connect?addr=" + srvAddr, 200, "connected\n"},
		{"GET", "/connect?addr=" + closedAddr, 502, "dial tcp " + closedAddr + ": connect: connection refused\n"},
		{"GET", "/connect?addr=nope", 400, "addr=HOST:PORT is required\n"},
	} {
		code, body := get(t, tc.method, srv.URL+tc.path)
		if code != tc.code || body != tc.body {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, code, body, tc.code, tc.body)
		}
	}
	// One log line per request: client, method, path, status.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{`GET / 200 28B`, `GET /healthz 200 2B`, `HEAD / 200 `, `GET /nope 404 `, `POST / 405 `,
		`GET /resolve?name=kubernetes.default 200 `, `GET /resolve?name=nope.invalid 502 `, `GET /resolve 400 `,
		`GET /connect?addr=` + srvAddr + ` 200 `, `GET /connect?addr=` + closedAddr + ` 502 `, `GET /connect?addr=nope 400 `}
	if len(lines) != len(want) {
		t.Fatalf("log:\n%s", logs.String())
	}
	for i, line := range lines {
		if !strings.HasPrefix(line, "127.0.0.1:") || !strings.Contains(line, " "+want[i]) {
			t.Errorf("log line %q, want client address and %q", line, want[i])
		}
	}
}

// The real pod info: this host's name and an IPv4 address.
func TestHandlerPodInfo(t *testing.T) {
	srv := httptest.NewServer(newHandler(podInfo, net.DefaultResolver.LookupHost, log.New(io.Discard, "", 0)))
	defer srv.Close()
	_, body := get(t, "GET", srv.URL+"/")
	host, _ := os.Hostname()
	fields := strings.Fields(body)
	if len(fields) != 2 || fields[0] != host || !strings.HasSuffix(body, "\n") {
		t.Fatalf("GET / = %q, want %q and an address", body, host)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	if want := firstIPv4(addrs); fields[1] != want {
		t.Errorf("address %q, want %q", fields[1], want)
	}
	if fields[1] != "none" {
		if ip := net.ParseIP(fields[1]); ip == nil || ip.To4() == nil || ip.IsLoopback() {
			t.Errorf("address %q: not a non-loopback IPv4", fields[1])
		}
	}
}

func TestFirstIPv4(t *testing.T) {
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	for _, tc := range []struct {
		addrs []net.Addr
		want  string
	}{
		{[]net.Addr{cidr("127.0.0.1/8"), cidr("::1/128"), cidr("fe80::1/64"), cidr("10.244.1.17/24"), cidr("192.168.1.2/24")}, "10.244.1.17"},
		{[]net.Addr{&net.IPAddr{IP: net.ParseIP("172.16.0.9")}}, "172.16.0.9"},
		{[]net.Addr{cidr("127.0.0.1/8"), cidr("2001:db8::1/64")}, "none"},
		{nil, "none"},
	} {
		if got := firstIPv4(tc.addrs); got != tc.want {
			t.Errorf("firstIPv4(%v) = %q, want %q", tc.addrs, got, tc.want)
		}
	}
}

// The server as a process: $PORT, a request, SIGTERM, exit 0.
func TestServerStopsOnSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "ECHO_TEST_MAIN=1", "PORT=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stdout closed")
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no output in 10s")
		}
		return ""
	}
	m := regexp.MustCompile(`listening on (\S+)$`).FindStringSubmatch(next())
	if m == nil {
		t.Fatal("no listening line")
	}
	_, port, err := net.SplitHostPort(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, "GET", "http://127.0.0.1:"+port+"/healthz"); code != 200 || body != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if l := next(); !strings.Contains(l, "GET /healthz 200") {
		t.Errorf("log line %q", l)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if l := next(); !strings.Contains(l, "shutting down") {
		t.Errorf("log line %q", l)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
}
