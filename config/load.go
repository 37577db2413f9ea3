package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
)

// LoadOptions tells Load and Parse about the host the config is for, so
// that tests and `render --root` need not look at the machine they run on.
type LoadOptions struct {
	// Hostname returns the host's name; node_name defaults to it,
	// lowercased. If nil, node_name must be set in the file.
	Hostname func() (string, error)
	// HostAddrs lists the host's non-loopback unicast addresses; an unset
	// advertise_address defaults to the only usable one. If nil,
	// advertise_address must be set in the file.
	HostAddrs func() ([]netip.Addr, error)
	// Root is the directory that absolute paths in the config, such as
	// cluster_secret_file, are resolved under; "" means "/".
	Root string
}

// DefaultLoadOptions returns options for the machine the agent runs on.
func DefaultLoadOptions() LoadOptions {
	return LoadOptions{Hostname: os.Hostname, HostAddrs: hostAddrs}
}

func (o LoadOptions) root() string {
	if o.Root == "" {
		return "/"
	}
	return o.Root
}

// Load reads the config file at path (a real path, not resolved under
// opts.Root) and returns it decoded, defaulted and validated, as Parse does.
// All errors are *Error; one for a file that cannot be read wraps the
// *fs.PathError, so errors.Is(err, fs.ErrNotExist) tells a missing file.
func Load(path string, opts LoadOptions) (*Config, error) {
	data, err := os.ReadFile(path)
	var fi os.FileInfo
	if err == nil {
		fi, err = os.Stat(path)
	}
	if err != nil {
		return nil, &Error{File: path, cause: err,
			Problems: []Problem{{Msg: fmt.Sprintf("cannot read the config file: %v", unwrapPath(err))}}}
	}
	return parse(data, path, opts, fi)
}

// Parse decodes a config file's content strictly (unknown keys and type
// mismatches are errors), applies defaults, derives what it can from the
// host described by opts and validates the result. filename is used only in
// messages. On failure the error is an *Error listing every problem found.
func Parse(data []byte, filename string, opts LoadOptions) (*Config, error) {
	return parse(data, filename, opts, nil)
}

// parse is Parse, knowing the file's mode and owner when it was read from
// disk (fi; nil otherwise).
func parse(data []byte, filename string, opts LoadOptions, fi os.FileInfo) (*Config, error) {
	l := &loader{
		file:     filename,
		fileInfo: fi,
		opts:     opts,
		lines:    map[string]int{},
		defined:  map[string]bool{},
		bad:      map[string]bool{},
	}
	c := new(Config)
	if l.decode(data, c) {
		l.applyDefaults(c)
		l.validate(c)
	}
	if err := l.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// loader holds what loading one file learns on the way.
type loader struct {
	file     string
	fileInfo os.FileInfo // the file's, when Load read it from disk
	opts     LoadOptions
	lines    map[string]int  // dotted key → line in the file
	defined  map[string]bool // keys set in the file
	bad      map[string]bool // keys with a problem already
	probs    []Problem
}

// hostAddrs lists the addresses of the host's interfaces that are up and
// running, leaving out loopback, link-local and other non-unicast ones.
func hostAddrs() ([]netip.Addr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagRunning == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		ifAddrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", ifc.Name, err)
		}
		for _, ia := range ifAddrs {
			ipn, ok := ia.(*net.IPNet)
			if !ok {
				continue
			}
			a, ok := netip.AddrFromSlice(ipn.IP)
			if a = a.Unmap(); ok && a.IsGlobalUnicast() && !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	return addrs, nil
}
