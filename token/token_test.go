package token

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/internal/etcdtest"
)

var (
	caHash = "sha256:" + strings.Repeat("ab", 32)
	now    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func mustNew(t *testing.T) Token {
	t.Helper()
	tok, err := New(caHash)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRoundTrip(t *testing.T) {
	tok := mustNew(t)
	s := tok.String()
	if !regexp.MustCompile(`^EA1::sha256:[0-9a-f]{64}::[0-9a-f]{12}\.[0-9a-f]{32}$`).MatchString(s) {
		t.Fatalf("token %q does not have the documented shape", s)
	}
	got, err := Parse("  " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got != tok || got.String() != s || got.CAHash() != caHash {
		t.Fatalf("parsed %q, made %q", got.String(), s)
	}
	if other := mustNew(t); other.ID() == tok.ID() || other.SecretHash() == tok.SecretHash() {
		t.Error("two tokens share an id or a secret")
	}
}

func TestParseErrors(t *testing.T) {
	good := mustNew(t).String()
	for _, c := range []struct{ in, want string }{
		{"", "the token is empty"},
		{"K10abc::server:secret", "parts, not 3"},
		{strings.Replace(good, "EA1", "EA9", 1), `starts with "EA9"`},
		{strings.Replace(good, "sha256:", "md5:", 1), "CA hash"},
		{good[:len(good)-1], "the secret is not 32"},
		{strings.Replace(good, ".", "", 1), "<id>.<secret>"},
		{good + ".1", "<id>.<secret>"},
		{strings.ToUpper(good[:3]) + strings.ToUpper(good[3:]), "CA hash"},
	} {
		_, err := Parse(c.in)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v; want ErrMalformed mentioning %q", c.in, err, c.want)
		}
		if c.in != "" && err != nil && strings.Contains(err.Error(), c.in) {
			t.Errorf("the error repeats the token: %v", err)
		}
	}
}

func TestTokenNeverPrintsItself(t *testing.T) {
	tok := mustNew(t)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("join", "token", tok)
	fmt.Fprintf(&buf, "%v %+v %#v %s %q", tok, tok, tok, tok, tok)
	if strings.Contains(buf.String(), tok.secret) || !strings.Contains(buf.String(), tok.ID()) {
		t.Errorf("printed %q", buf.String())
	}
}

func TestRecordCheck(t *testing.T) {
	tok := mustNew(t)
	r, err := NewRecord(tok, []Usage{UsageWorker}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fmt.Sprintf("%+v", r), tok.secret) {
		t.Fatal("the record holds the secret")
	}
	if err := r.Check(tok, UsageWorker, now.Add(59*time.Minute)); err != nil {
		t.Errorf("within its hour: %v", err)
	}
	if err := r.Check(tok, UsageWorker, now.Add(time.Hour+time.Second)); !errors.Is(err, ErrExpired) {
		t.Errorf("after its hour: %v", err)
	}
	if err := r.Check(tok, "control-plane", now); !errors.Is(err, ErrUsage) {
		t.Errorf("another usage: %v", err)
	}
	forged := tok
	forged.secret = strings.Repeat("0", 32)
	if err := r.Check(forged, UsageWorker, now); !errors.Is(err, ErrUnknown) {
		t.Errorf("another secret under the same id: %v", err)
	}
	forever, _ := NewRecord(tok, []Usage{UsageWorker}, now, 0)
	if err := forever.Check(tok, UsageWorker, now.Add(100*365*24*time.Hour)); err != nil {
		t.Errorf("a token without expiry: %v", err)
	}
	if _, err := NewRecord(tok, []Usage{UsageWorker}, now, -time.Second); err == nil {
		t.Error("a negative ttl accepted")
	}
}

// The store on a real etcd: a token is accepted from its record, refused
// once deleted, listed, and pruned a day after it expired.
func TestStore(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := context.Background()
	s := NewStore(cli)
	a, b := mustNew(t), mustNew(t)
	ra, _ := NewRecord(a, []Usage{UsageWorker}, now, time.Hour)
	rb, _ := NewRecord(b, []Usage{UsageWorker}, now.Add(time.Second), 0)
	rb.Description = "rack 4"
	for _, r := range []Record{ra, rb} {
		if err := s.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(ctx, ra); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("the same id twice: %v", err)
	}
	if err := s.Check(ctx, a, UsageWorker, now); err != nil {
		t.Errorf("a stored token: %v", err)
	}
	if err := s.Check(ctx, mustNew(t), UsageWorker, now); !errors.Is(err, ErrUnknown) {
		t.Errorf("a token never stored: %v", err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 || list[0].ID != a.ID() || list[1].Description != "rack 4" {
		t.Fatalf("list %+v, %v", list, err)
	}
	if err := s.Delete(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, b, UsageWorker, now); !errors.Is(err, ErrUnknown) {
		t.Errorf("a deleted token: %v", err)
	}
	if err := s.Delete(ctx, b.ID()); !errors.Is(err, ErrUnknown) {
		t.Errorf("deleting it again: %v", err)
	}
	if err := s.Delete(ctx, "../../registry"); !errors.Is(err, ErrMalformed) {
		t.Errorf("deleting by a path: %v", err)
	}
	// Expired an hour ago: still there, so a worker is told "expired".
	if pruned, err := s.Prune(ctx, now.Add(2*time.Hour)); err != nil || len(pruned) != 0 {
		t.Errorf("pruned %v, %v", pruned, err)
	}
	if err := s.Check(ctx, a, UsageWorker, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("an expired token: %v", err)
	}
	pruned, err := s.Prune(ctx, now.Add(26*time.Hour))
	if err != nil || !slices.Equal(pruned, []string{a.ID()}) {
		t.Errorf("pruned %v, %v", pruned, err)
	}
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Errorf("left %+v", list)
	}
}
