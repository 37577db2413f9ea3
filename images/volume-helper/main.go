// Command volume-helper creates and deletes the directories of node-local
// volumes for local-path-provisioner, shipped as images.VolumeHelperImage
// (upstream's helper runs shell scripts in a busybox image, which an
// air-gapped node cannot pull).
//
// The provisioner starts it in a short-lived pod on the volume's node with
// the volume's parent directory mounted at the same path:
//
//	volume-helper -p PATH -s SIZE -m Filesystem -a create|delete
//
// It acts only on a directory directly under $STORAGE_DIR (the helper
// pod's template sets it to the configured storage directory) whose name
// is the provisioner's default pattern, "pvc-<uid>_<namespace>_<claim>".
// Anything else is refused: a StorageClass's pathPattern that climbs out
// of the storage directory (the path traversal of local-path-provisioner
// before v0.0.34, CVE-2025-62878) makes provisioning fail instead of
// creating or deleting a directory elsewhere on the host, and deletion
// never removes what the provisioner did not create.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// volumeName is the provisioner's default folder name: the PV's name
// ("pvc-" and the claim's UID), the claim's namespace and its name.
var volumeName = regexp.MustCompile(`^pvc-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_[a-z0-9]([-a-z0-9]*[a-z0-9])?_[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

func main() {
	if err := run(os.Args[1:], os.Getenv("STORAGE_DIR"), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "volume-helper:", err)
		os.Exit(1)
	}
}

func run(args []string, storageDir string, stdout io.Writer) error {
	fs := flag.NewFlagSet("volume-helper", flag.ContinueOnError)
	path := fs.String("p", "", "the volume's directory")
	fs.String("s", "", "the claim's requested size in bytes (not enforced: local volumes share their disk)")
	mode := fs.String("m", "Filesystem", "the claim's volume mode")
	action := fs.String("a", "", "create or delete")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := checkPath(*path, storageDir); err != nil {
		return err
	}
	switch *action {
	case "create":
		if *mode != "Filesystem" {
			return fmt.Errorf("volume mode %q: only Filesystem volumes are supported (a directory, not a block device)", *mode)
		}
		if err := create(*path); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "created", *path)
	case "delete":
		if err := remove(*path); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "deleted", *path)
	default:
		return fmt.Errorf("-a %q: want create or delete", *action)
	}
	return nil
}

// checkPath refuses a path that is not a volume directory directly under
// storageDir.
func checkPath(path, storageDir string) error {
	if storageDir == "" || !filepath.IsAbs(storageDir) || filepath.Clean(storageDir) != storageDir {
		return fmt.Errorf("$STORAGE_DIR %q: want the storage directory as a clean absolute path (the helper pod's template sets it)", storageDir)
	}
	if path == "" {
		return errors.New("-p: the volume's directory is required")
	}
	if filepath.Clean(path) != path || filepath.Dir(path) != storageDir {
		return fmt.Errorf("refusing %q: a volume's directory must be directly under the storage directory %s", path, storageDir)
	}
	if !volumeName.MatchString(filepath.Base(path)) {
		return fmt.Errorf("refusing %q: not a volume the provisioner names (pvc-<uid>_<namespace>_<claim>)", path)
	}
	return nil
}

// create makes the directory, writable by any user: the pods that mount
// it run as users the provisioner cannot know, and a hostPath volume gets
// no fsGroup ownership change (upstream's setup script does the same).
func create(path string) error {
	if err := os.Mkdir(path, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w (is the storage directory on a writable disk?)", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", path)
	}
	return os.Chmod(path, 0o777) // the umask took bits off
}

// remove deletes the volume's directory and everything in it; one that
// is already gone is not an error (a retried deletion).
func remove(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("refusing to delete %s: not a directory", path)
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	return nil
}
