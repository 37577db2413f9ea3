package bootstrap

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"
)

// encryptionKeyName names the key in the provider list; a later rotation
// adds a second key ahead of it.
const encryptionKeyName = "key1"

// NewEncryptionKey returns a fresh 32-byte secretbox key.
func NewEncryptionKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate encryption key: %w", err)
	}
	return key, nil
}

// EncryptionConfig builds kube-apiserver's encryption-at-rest config:
// Secrets are written with secretbox (XSalsa20-Poly1305); identity stays
// readable behind it so Secrets written before encryption was on still
// load.
func EncryptionConfig(key []byte) ([]byte, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("encryption key: %d bytes, want 32", len(key))
	}
	c := apiserverv1.EncryptionConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiserver.config.k8s.io/v1", Kind: "EncryptionConfiguration"},
		Resources: []apiserverv1.ResourceConfiguration{{
			Resources: []string{"secrets"},
			Providers: []apiserverv1.ProviderConfiguration{
				{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: []apiserverv1.Key{{
					Name:   encryptionKeyName,
					Secret: base64.StdEncoding.EncodeToString(key),
				}}}},
				{Identity: &apiserverv1.IdentityConfiguration{}},
			},
		}},
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encryption config: %w", err)
	}
	return append([]byte(generatedHeader("#")), out...), nil
}

// EncryptionKey returns the secretbox key of an existing encryption
// config, so re-rendering keeps the key Secrets were written with.
func EncryptionKey(data []byte) ([]byte, error) {
	var c apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("parse encryption config: %w", err)
	}
	for _, r := range c.Resources {
		for _, p := range r.Providers {
			if p.Secretbox == nil {
				continue
			}
			for _, k := range p.Secretbox.Keys {
				key, err := base64.StdEncoding.DecodeString(k.Secret)
				if err != nil {
					return nil, fmt.Errorf("encryption key %s: %w", k.Name, err)
				}
				if len(key) != 32 {
					return nil, fmt.Errorf("encryption key %s: %d bytes, want 32", k.Name, len(key))
				}
				return key, nil
			}
		}
	}
	return nil, fmt.Errorf("encryption config has no secretbox key")
}
