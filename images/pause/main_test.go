package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ecom-platform/ecom-agent/images"
	"github.com/ecom-platform/ecom-agent/images/oci"
)

// The test binary doubles as helper processes, chosen by environment:
//
//	PAUSE_TEST_CHILD=D    sleep D, exit 0 (a child that becomes a zombie)
//	PAUSE_TEST_PARENT=M   start such a child (PAUSE_TEST_CHILD_SLEEP),
//	                      print "child PID", then: M=exec: exec the pause
//	                      binary $PAUSE_TEST_BIN, which inherits the child;
//	                      M=hold: never wait for it (the control)
//	PAUSE_TEST_ZOMBIE_FIRST=1  before that, wait until the child has exited
const (
	envChild       = "PAUSE_TEST_CHILD"
	envParent      = "PAUSE_TEST_PARENT"
	envChildSleep  = "PAUSE_TEST_CHILD_SLEEP"
	envBin         = "PAUSE_TEST_BIN"
	envZombieFirst = "PAUSE_TEST_ZOMBIE_FIRST"
)

var binDir string

func TestMain(m *testing.M) {
	if d := os.Getenv(envChild); d != "" {
		dur, _ := time.ParseDuration(d)
		time.Sleep(dur)
		os.Exit(0)
	}
	if mode := os.Getenv(envParent); mode != "" {
		helperParent(mode)
		os.Exit(3) // not reached
	}
	var err error
	if binDir, err = os.MkdirTemp("", "pause-test-"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

func helperParent(mode string) {
	child := exec.Command(os.Args[0])
	child.Env = append(cleanEnv(), envChild+"="+os.Getenv(envChildSleep))
	if err := child.Start(); err != nil {
		panic(err)
	}
	if os.Getenv(envZombieFirst) != "" {
		for !waitable(child.Process.Pid) { // the test's timeout bounds this
			time.Sleep(5 * time.Millisecond)
		}
	}
	fmt.Printf("child %d\n", child.Process.Pid)
	switch mode {
	case "exec":
		bin := os.Getenv(envBin)
		if err := syscall.Exec(bin, []string{bin}, cleanEnv()); err != nil {
			panic(err)
		}
	case "hold":
		// Like pause, without the reaping.
		os.Stderr.WriteString("Warning: pause should be the first process\n")
		select {}
	}
}

// cleanEnv is the environment without the helpers' variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PAUSE_TEST_") {
			env = append(env, kv)
		}
	}
	return env
}

// procState is the state letter of pid ("S", "Z", ...), "" when pid is
// gone (reaped).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[0]
}

// waitable reports whether pid, a child of this process, has exited and
// can be waited for, without waiting for it (waitid with WNOWAIT). A
// zombie in /proc is not always waitable yet: a multithreaded process's
// leader shows Z while its other threads still exit.
func waitable(pid int) bool {
	const (
		pPID    = 1
		wExited = 4
		wNoWait = 0x01000000
	)
	var info [128]byte // siginfo_t
	_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&info[0])), syscall.WNOHANG|wExited|wNoWait, 0, 0)
	if errno != 0 {
		return false
	}
	// si_pid follows si_signo, si_errno, si_code (and padding to a word).
	off := 12
	if unsafe.Sizeof(uintptr(0)) == 8 {
		off = 16
	}
	return *(*int32)(unsafe.Pointer(&info[off])) == int32(pid)
}

// procParent is pid's parent pid, 0 when pid is gone.
func procParent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

var (
	buildOnce sync.Once
	buildErr  error
)

// pauseBinary builds this package as the image does: static, stripped.
func pauseBinary(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build pause with")
	}
	bin := filepath.Join(binDir, "pause")
	buildOnce.Do(func() {
		cmd := exec.Command(goCmd, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

// started is a running pause (or helper) whose handlers are in place.
type started struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr chan string
}

// start runs cmd and waits until it has printed the not-PID-1 warning,
// which pause prints once its signal handlers are installed.
func start(t *testing.T, cmd *exec.Cmd) *started {
	t.Helper()
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	s := &started{cmd: cmd, stdout: bufio.NewReader(outPipe), stderr: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			s.stderr <- sc.Text()
		}
		close(s.stderr)
	}()
	s.expectStderr(t, "Warning: pause should be the first process")
	return s
}

func (s *started) expectStderr(t *testing.T, prefix string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-s.stderr:
			if !ok {
				t.Fatalf("stderr closed before %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return
			}
		case <-timeout:
			t.Fatalf("no %q on stderr in 10s", prefix)
		}
	}
}

// stop sends sig and wants exit status 0 within 10 seconds.
func (s *started) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	s.expectStderr(t, "Shutting down, got signal")
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after %v: %v, want exit 0", sig, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after %v", sig)
	}
}

func TestVersion(t *testing.T) {
	bin := pauseBinary(t)
	for _, args := range [][]string{{"-v"}, {"-V"}, {"ignored", "-v"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("pause %q: %v", args, err)
		}
		if string(out) != "pause (ecom-agent) "+version+"\n" {
			t.Errorf("pause %q printed %q", args, out)
		}
	}
	// The version is the image's tag.
	if _, tag, err := oci.SplitName(images.PauseImage); err != nil || tag != version {
		t.Errorf("version %q, image %s", version, images.PauseImage)
	}
}

func TestExitsOnSignal(t *testing.T) {
	bin := pauseBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			s := start(t, exec.Command(bin))
			// Still there after a moment: it sleeps, it does not exit.
			time.Sleep(100 * time.Millisecond)
			if err := s.cmd.Process.Signal(syscall.Signal(0)); err != nil {
				t.Fatalf("pause is gone: %v", err)
			}
			s.stop(t, sig)
		})
	}
}

// TestReapsZombies gives a running pause a child (its parent execs pause,
// keeping the child), which then exits: pause must reap it, as PID 1 of a
// pod reaps the orphans of the pod's other containers.
func TestReapsZombies(t *testing.T) {
	bin := pauseBinary(t)
	for _, tc := range []struct {
		name, mode, sleep string
		zombieFirst       bool
		wantReaped        bool
	}{
		// SIGCHLD while pause runs.
		{"child exits later", "exec", "300ms", false, true},
		// A zombie already there when pause starts: no SIGCHLD will come.
		{"zombie before start", "exec", "0s", true, true},
		// The control: a parent that does not reap keeps the zombie.
		{"control without reaping", "hold", "300ms", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(cleanEnv(), envParent+"="+tc.mode, envChildSleep+"="+tc.sleep, envBin+"="+bin)
			if tc.zombieFirst {
				cmd.Env = append(cmd.Env, envZombieFirst+"=1")
			}
			s := start(t, cmd)
			line, err := s.stdout.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			var child int
			if _, err := fmt.Sscanf(line, "child %d", &child); err != nil {
				t.Fatalf("helper printed %q", line)
			}
			if ppid := procParent(child); ppid != 0 && ppid != cmd.Process.Pid {
				t.Fatalf("child %d has parent %d, want %d", child, ppid, cmd.Process.Pid)
			}
			if !tc.wantReaped {
				// The zombie appears and stays.
				waitState(t, child, "Z", 3*time.Second)
				time.Sleep(500 * time.Millisecond)
				if st := procState(child); st != "Z" {
					t.Errorf("control: child %d state %q, want a zombie", child, st)
				}
				return
			}
			waitState(t, child, "", 3*time.Second)
			if tc.mode == "exec" {
				s.stop(t, syscall.SIGTERM)
			}
		})
	}
}

// waitState waits until pid's state is want ("" for reaped).
func waitState(t *testing.T, pid int, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := procState(pid)
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d: state %q after %v, want %q", pid, st, timeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReap calls the reaper in this process.
func TestReap(t *testing.T) {
	if n := reap(); n != 0 {
		t.Fatalf("reaped %d children before starting any", n)
	}
	var pids []int
	for range 3 {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(cleanEnv(), envChild+"=0s")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !waitable(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("child %d (state %q) not waitable after 10s", pid, procState(pid))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if n := reap(); n != len(pids) {
		t.Errorf("reaped %d, want %d", n, len(pids))
	}
	for _, pid := range pids {
		if st := procState(pid); st != "" {
			t.Errorf("child %d still there (state %s)", pid, st)
		}
	}
	var status syscall.WaitStatus
	if _, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); !errors.Is(err, syscall.ECHILD) {
		t.Errorf("wait4 after reap: %v, want ECHILD", err)
	}
}
