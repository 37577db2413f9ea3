// Package logging builds the agent's slog logger: structured entries in
// the systemd journal when the agent runs under systemd, human-readable
// text on a terminal or a pipe otherwise.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"unicode"

	"github.com/coreos/go-systemd/v22/journal"
)

// New returns a logger at level writing to the journal when stderr is
// connected to it (systemd sets JOURNAL_STREAM), and text to w otherwise.
func New(w io.Writer, level slog.Level) *slog.Logger {
	if ok, err := journal.StderrIsJournalStream(); err == nil && ok && journal.Enabled() {
		return slog.New(NewJournalHandler(level))
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// JournalHandler sends each record to the journal as one entry: the
// message as MESSAGE, the level as PRIORITY, and every attribute as a
// field of its own (upper-cased, groups joined with "_"), so
// `journalctl -u ecom-agent PHASE=pki` filters by them.
type JournalHandler struct {
	level  slog.Level
	prefix string
	attrs  map[string]string
	send   func(msg string, p journal.Priority, vars map[string]string) error
}

// NewJournalHandler returns a handler that writes to the local journal.
func NewJournalHandler(level slog.Level) *JournalHandler {
	return &JournalHandler{level: level, attrs: map[string]string{}, send: journal.Send}
}

// Enabled reports whether records at l are logged.
func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

// Handle sends r to the journal.
func (h *JournalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := make(map[string]string, len(h.attrs)+r.NumAttrs()+1)
	for k, v := range h.attrs {
		vars[k] = v
	}
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		addAttr(vars, h.prefix, a)
		msg += " " + inline(a)
		return true
	})
	vars["SYSLOG_IDENTIFIER"] = "ecom-agent"
	return h.send(msg, priority(r.Level), vars)
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *JournalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := h.clone()
	for _, a := range attrs {
		addAttr(n.attrs, n.prefix, a)
	}
	return n
}

// WithGroup returns a handler that prefixes later attributes with name.
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := h.clone()
	n.prefix = h.prefix + fieldName(name) + "_"
	return n
}

func (h *JournalHandler) clone() *JournalHandler {
	n := *h
	n.attrs = make(map[string]string, len(h.attrs))
	for k, v := range h.attrs {
		n.attrs[k] = v
	}
	return &n
}

func addAttr(vars map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if a.Key == "" && v.Kind() != slog.KindGroup {
		return
	}
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += fieldName(a.Key) + "_"
		}
		for _, g := range v.Group() {
			addAttr(vars, p, g)
		}
		return
	}
	key := prefix + fieldName(a.Key)
	if reserved(key) {
		key = "X_" + key
	}
	vars[key] = fmt.Sprint(v.Any())
}

// inline renders an attribute for the MESSAGE line, as slog's text
// handler would (key=value, quoted when needed), so `journalctl -u
// ecom-agent` reads well without -o verbose.
func inline(a slog.Attr) string {
	v := a.Value.Resolve()
	s := v.String()
	if v.Kind() == slog.KindGroup {
		var parts []string
		for _, g := range v.Group() {
			parts = append(parts, inline(g))
		}
		s = "{" + strings.Join(parts, " ") + "}"
	} else if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		s = strconv.Quote(s)
	}
	return a.Key + "=" + s
}

// fieldName turns an attribute key into a journal field name: upper case
// letters, digits and underscores, not starting with an underscore.
func fieldName(k string) string {
	var b strings.Builder
	for _, r := range k {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(unicode.ToUpper(r))
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "_")
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		s = "F_" + s
	}
	return s
}

// reserved reports whether the journal or this handler sets the field.
func reserved(k string) bool {
	switch k {
	case "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "MESSAGE_ID":
		return true
	}
	return false
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}
