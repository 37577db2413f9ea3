// Command pause is the process of every pod's sandbox (infrastructure)
// container: containerd's CRI plugin on our air-gapped nodes is configured
// with the pause image (images.PauseImage) built from it, since the
// upstream registry.k8s.io/pause cannot be pulled there.
//
// It does what Kubernetes' build/pause/linux/pause.c does. It holds the
// pod's namespaces by sleeping forever; as PID 1 of a shared PID
// namespace it reaps the zombies other containers leave (on SIGCHLD, wait4
// until none is left); it exits 0 on SIGINT or SIGTERM; `-v` prints its
// version. Unlike pause.c, it also reaps once at start, in case a child
// exited before the handler was in place.
//
// Build it static and small: CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'.
package main

import (
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is the image's tag (images.PauseImage).
const version = "1.0"

func main() {
	for _, arg := range os.Args[1:] {
		if strings.EqualFold(arg, "-v") {
			os.Stdout.WriteString("pause (ecom-agent) " + version + "\n")
			return
		}
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	if os.Getpid() != 1 {
		// Not an error: pause.c says the same and carries on.
		os.Stderr.WriteString("Warning: pause should be the first process\n")
	}
	reap()
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Stderr.WriteString("Shutting down, got signal: " + sig.String() + "\n")
		os.Exit(0)
	}
}

// reap waits for every child that has exited, without blocking, and
// returns how many it reaped. SIGCHLDs coalesce, hence the loop.
func reap() int {
	n := 0
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return n
		}
		n++
	}
}
