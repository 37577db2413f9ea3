package snapshot

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// keyBucket is etcd's bucket of every key revision, keyed by revision
// (8 bytes main, '_', 8 bytes sub; a trailing 't' marks a deletion).
var keyBucket = []byte("key")

// ReadKey returns the latest value of key in the snapshot at path, read
// from its database without starting etcd, as etcd-dump-db reads one;
// found is false when the snapshot never held key or its last revision
// deleted it. Verify the file first: ReadKey trusts it.
func ReadKey(path, key string) (value []byte, found bool, err error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		return nil, false, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var latest []byte // the revision key of the latest entry for key
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(keyBucket)
		if b == nil {
			return fmt.Errorf("%s: %w: no key bucket", path, ErrCorrupt)
		}
		// Revisions sort in order, so the last entry for key wins.
		return b.ForEach(func(rev, v []byte) error {
			if !bytes.Contains(v, []byte(key)) {
				return nil
			}
			var kv mvccpb.KeyValue
			if err := proto.Unmarshal(v, &kv); err != nil {
				return fmt.Errorf("%s: %w: %v", path, ErrCorrupt, err)
			}
			if string(kv.Key) != key {
				return nil
			}
			latest = bytes.Clone(rev)
			found = len(rev) == 17 // 18 bytes with the deletion mark
			value = bytes.Clone(kv.Value)
			return nil
		})
	})
	if err != nil || latest == nil || !found {
		return nil, false, err
	}
	return value, true, nil
}
