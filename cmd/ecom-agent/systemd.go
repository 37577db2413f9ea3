package main

import (
	"context"
	"fmt"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/units"
)

// connectSystemd connects to the host's systemd for a command that
// starts or stops units (join, reset, etcd recover and restore).
func connectSystemd(ctx context.Context, root *hostfs.Root) (*units.Manager, error) {
	m, err := units.Connect(ctx, root, units.Options{})
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	return m, nil
}
