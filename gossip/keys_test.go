package gossip

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func TestDeriveKey(t *testing.T) {
	// Computed independently (Python's hmac module, RFC 5869 by hand):
	// every agent version must derive the same key from the same secret.
	const want = "be3885612e1880b320bbe349fb0d2da87608fbdfc97af5b44966ad1cfbef88cb"
	key, err := DeriveKey([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(key); got != want {
		t.Errorf("DeriveKey = %s, want %s", got, want)
	}

	other, err := DeriveKey([]byte("0123456789abcdef0123456789abcdeF"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(key, other) {
		t.Error("two secrets give the same key")
	}
}
