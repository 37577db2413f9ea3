package main

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

const (
	stateStarting = iota
	stateRunning
	stateStopping
)

// health is what GET /api/v1/health answers: 200 "ok" while the tailer
// runs and has polled within stale; 503 "starting" before the tailer has
// loaded its positions and opened the files, "stalled" when a poll has
// not finished within stale (writing to stdout blocks, say) and
// "stopping" after SIGTERM.
type health struct {
	state atomic.Int32
	last  atomic.Int64 // unix nanoseconds of the last finished poll
	stale time.Duration
	now   func() time.Time
}

func (h *health) beat() { h.last.Store(h.now().UnixNano()) }

func (h *health) status() (int, string) {
	switch h.state.Load() {
	case stateStarting:
		return http.StatusServiceUnavailable, "starting"
	case stateStopping:
		return http.StatusServiceUnavailable, "stopping"
	}
	if h.now().Sub(time.Unix(0, h.last.Load())) > h.stale {
		return http.StatusServiceUnavailable, "stalled"
	}
	return http.StatusOK, "ok"
}

// handler serves GET /api/v1/health, and the counters in Prometheus'
// text format on GET /api/v1/metrics and GET /metrics.
func (s *shipper) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/health", func(w http.ResponseWriter, _ *http.Request) {
		code, text := s.health.status()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintln(w, text)
	})
	metrics := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		for _, c := range []struct {
			name, kind, help string
			v                *atomic.Int64
		}{
			{"lines_total", "counter", "Lines written to stdout as records.", &s.m.lines},
			{"parse_errors_total", "counter", "Lines that were not a JSON object, shipped as {\"log\": line}.", &s.m.parseErrors},
			{"skipped_lines_total", "counter", "Lines longer than -max-line-bytes, not shipped.", &s.m.skipped},
			{"rotations_total", "counter", "Files renamed or removed while followed.", &s.m.rotations},
			{"truncations_total", "counter", "Files found shorter than their read position, read again from the start.", &s.m.truncations},
			{"output_errors_total", "counter", "Failed writes to stdout (the lines are written again).", &s.m.outputErrors},
			{"state_save_errors_total", "counter", "Failed saves of the positions file.", &s.m.stateErrors},
			{"files_followed", "gauge", "Files open, rotated ones still read included.", &s.m.files},
		} {
			fmt.Fprintf(w, "# HELP log_shipper_%[1]s %[2]s\n# TYPE log_shipper_%[1]s %[3]s\nlog_shipper_%[1]s %[4]d\n",
				c.name, c.help, c.kind, c.v.Load())
		}
	}
	mux.HandleFunc("GET /api/v1/metrics", metrics)
	mux.HandleFunc("GET /metrics", metrics)
	return mux
}
