// Command echo is the tests' server, shipped as images.EchoImage to
// air-gapped test clusters (no registry to pull a stock image from).
//
// It listens on $PORT (default 8080). GET / answers "<hostname> <IPv4>\n",
// the pod's name and its first non-loopback IPv4 address, so a test can
// tell which pod a Service sent it to; GET /healthz answers "ok" (for
// probes); GET /resolve?name=N looks N up with the pod's resolver (its
// resolv.conf: the cluster DNS) and answers the addresses, sorted, one
// per line, or 502 with the error; GET /connect?addr=HOST:PORT opens a TCP
// connection from the pod (as upstream's agnhost connect does for the
// NetworkPolicy tests) and answers "connected" or 502 with the error.
// With $ECHO_WRITE set to a file path
// it first writes its hostname there and exits 1 if it cannot (a test
// that a mounted volume is writable by the image's user). Every request is logged to stdout. SIGTERM (and SIGINT) stop it
// cleanly: the listener closes, requests in flight finish, exit 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// defaultPort is images.EchoPort.
const defaultPort = 8080

// shutdownTimeout bounds how long requests in flight may take after SIGTERM.
const shutdownTimeout = 5 * time.Second

func main() {
	logger := log.New(os.Stdout, "", log.LstdFlags|log.LUTC)
	if err := run(logger); err != nil {
		logger.Print(err)
		os.Exit(1)
	}
}

func run(logger *log.Logger) error {
	port := os.Getenv("PORT")
	if port == "" {
		port = strconv.Itoa(defaultPort)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if file := os.Getenv("ECHO_WRITE"); file != "" {
		host, _ := podInfo()
		if err := os.WriteFile(file, []byte(host+"\n"), 0o644); err != nil {
			return fmt.Errorf("$ECHO_WRITE: %w", err)
		}
		logger.Printf("echo: wrote %s", file)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort("", port))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           newHandler(podInfo, net.DefaultResolver.LookupHost, logger),
		ReadHeaderTimeout: 10 * time.Second,
	}
	host, ip := podInfo()
	logger.Printf("echo: %s %s listening on %s", host, ip, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Print("echo: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// podInfo returns the hostname (the pod's name) and the first
// non-loopback IPv4 address (the pod's IP), "unknown" and "none" when
// they cannot be found.
func podInfo() (hostname, ip string) {
	hostname, err := os.Hostname()
	if err != nil || hostname == "" {
		hostname = "unknown"
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return hostname, "none"
	}
	return hostname, firstIPv4(addrs)
}

// firstIPv4 is the first IPv4 address of addrs that is not a loopback
// address, or "none".
func firstIPv4(addrs []net.Addr) string {
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		if ip4 := ip.To4(); ip4 != nil && !ip4.IsLoopback() {
			return ip4.String()
		}
	}
	return "none"
}

// lookupTimeout bounds a /resolve lookup.
const lookupTimeout = 5 * time.Second

// connectTimeout bounds a /connect dial: a connection a policy drops
// times out.
const connectTimeout = 2 * time.Second

// newHandler serves /, /healthz, /resolve and /connect, logging each request to
// logger.
func newHandler(info func() (hostname, ip string), lookup func(context.Context, string) ([]string, error), logger *log.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		host, ip := info()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s %s\n", host, ip)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /resolve", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		name := r.URL.Query().Get("name")
		if name == "" {
			http.Error(w, "name= is required", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
		defer cancel()
		addrs, err := lookup(ctx, name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		slices.Sort(addrs)
		io.WriteString(w, strings.Join(addrs, "\n")+"\n")
	})
	mux.HandleFunc("GET /connect", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		addr := r.URL.Query().Get("addr")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			http.Error(w, "addr=HOST:PORT is required", http.StatusBadRequest)
			return
		}
		d := net.Dialer{Timeout: connectTimeout}
		c, err := d.DialContext(r.Context(), "tcp", addr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c.Close()
		io.WriteString(w, "connected\n")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(rec, r)
		logger.Printf("%s %s %s %d %dB %s", r.RemoteAddr, r.Method, r.URL.RequestURI(), rec.status, rec.bytes, time.Since(start).Round(time.Microsecond))
	})
}

// statusRecorder remembers a response's status and size for the log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(p)
	r.bytes += n
	return n, err
}
