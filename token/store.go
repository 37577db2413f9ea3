package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// KeyPrefix is where the tokens' records live in etcd, one key per token
// id. kube-apiserver keeps its objects under /registry/, so the two never
// meet.
const KeyPrefix = "/ecom-agent/join-tokens/"

// Store is the cluster's list of join tokens, in etcd: every control-plane
// agent reads it, so a token made on one node is accepted by all of them,
// and a deleted one by none.
type Store struct {
	kv clientv3.KV
}

// NewStore returns the store in the etcd that kv reads.
func NewStore(kv clientv3.KV) *Store { return &Store{kv: kv} }

// Add stores r; it refuses an id already there (a collision of 48 random
// bits, or the same record twice).
func (s *Store) Add(ctx context.Context, r Record) error {
	if !isLowerHex(r.ID, 2*idBytes) || r.SecretSHA256 == "" || len(r.Usages) == 0 {
		return fmt.Errorf("join token record %q is incomplete", r.ID)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	key := KeyPrefix + r.ID
	resp, err := s.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(data))).
		Commit()
	if err != nil {
		return fmt.Errorf("store join token %s: %w", r.ID, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("store join token %s: a token with that id exists; make another", r.ID)
	}
	return nil
}

// Get returns the record of the token id; ErrUnknown when there is none.
func (s *Store) Get(ctx context.Context, id string) (Record, error) {
	if !isLowerHex(id, 2*idBytes) {
		return Record{}, fmt.Errorf("%w: %q is not a token id (%d lower-case hex digits)", ErrMalformed, id, 2*idBytes)
	}
	resp, err := s.kv.Get(ctx, KeyPrefix+id)
	if err != nil {
		return Record{}, fmt.Errorf("read join token %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return Record{}, fmt.Errorf("join token %s: %w", id, ErrUnknown)
	}
	return decodeRecord(resp.Kvs[0].Key, resp.Kvs[0].Value)
}

// Check accepts t for usage at now if the cluster holds its record.
func (s *Store) Check(ctx context.Context, t Token, usage Usage, now time.Time) error {
	r, err := s.Get(ctx, t.id)
	if err != nil {
		return err
	}
	return r.Check(t, usage, now)
}

// List returns every record, expired ones included, by creation time.
func (s *Store) List(ctx context.Context) ([]Record, error) {
	resp, err := s.kv.Get(ctx, KeyPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	var out []Record
	var errs []error
	for _, kv := range resp.Kvs {
		r, err := decodeRecord(kv.Key, kv.Value)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, errors.Join(errs...)
}

// Delete removes the token id, which no agent accepts from then on;
// ErrUnknown when there was none.
func (s *Store) Delete(ctx context.Context, id string) error {
	if !isLowerHex(id, 2*idBytes) {
		return fmt.Errorf("%w: %q is not a token id (%d lower-case hex digits; token list shows them)", ErrMalformed, id, 2*idBytes)
	}
	resp, err := s.kv.Delete(ctx, KeyPrefix+id)
	if err != nil {
		return fmt.Errorf("delete join token %s: %w", id, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("join token %s: %w", id, ErrUnknown)
	}
	return nil
}

// PruneAfter is how long an expired token's record is kept, so that a
// worker using it is told it expired rather than that it is unknown.
const PruneAfter = 24 * time.Hour

// Prune deletes the records that expired more than PruneAfter before now,
// and returns their ids.
func (s *Store) Prune(ctx context.Context, now time.Time) ([]string, error) {
	rs, err := s.List(ctx)
	var pruned []string
	for _, r := range rs {
		if r.Expired(now.Add(-PruneAfter)) {
			if _, derr := s.kv.Delete(ctx, KeyPrefix+r.ID); derr != nil {
				return pruned, errors.Join(err, derr)
			}
			pruned = append(pruned, r.ID)
		}
	}
	return pruned, err
}

func decodeRecord(key, value []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		return Record{}, fmt.Errorf("join token record %s is not valid JSON: %w", key, err)
	}
	if KeyPrefix+r.ID != string(key) {
		return Record{}, fmt.Errorf("join token record %s names id %q", key, r.ID)
	}
	return r, nil
}
