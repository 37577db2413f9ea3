package units

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// exampleSpecs are units like the ones ecom-agent runs.
func exampleSpecs() []Spec {
	pki := "/etc/kubernetes/pki"
	return []Spec{
		{
			Name:          "etcd.service",
			Description:   "etcd key-value store (ecom-agent)",
			Documentation: []string{"https://etcd.io/docs/"},
			Wants:         []string{"network-online.target"},
			After:         []string{"network-online.target"},
			Type:          TypeNotify,
			ExecStart: []string{"/usr/local/bin/etcd",
				"--name=node-1",
				"--data-dir=/var/lib/etcd",
				"--listen-client-urls=https://10.0.0.1:2379,https://127.0.0.1:2379",
				"--advertise-client-urls=https://10.0.0.1:2379",
				"--initial-cluster=node-1=https://10.0.0.1:2380,node-2=https://10.0.0.2:2380",
				"--cert-file=" + pki + "/etcd/server.crt",
				"--key-file=" + pki + "/etcd/server.key",
				"--client-cert-auth=true",
			},
			Environment:  map[string]string{"ETCD_UNSUPPORTED_ARCH": "", "GOMAXPROCS": "2"},
			Restart:      RestartAlways,
			RestartDelay: 5 * time.Second,
			StartTimeout: Infinity,
			LimitNOFILE:  65536,
			WantedBy:     []string{"multi-user.target"},
		},
		{
			Name:          "kube-apiserver.service",
			Description:   "Kubernetes API server (ecom-agent)",
			Documentation: []string{"https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/"},
			Wants:         []string{"etcd.service"},
			After:         []string{"network-online.target", "etcd.service"},
			ExecStart: []string{"/usr/local/bin/kube-apiserver",
				"--advertise-address=10.0.0.1",
				"--etcd-servers=https://127.0.0.1:2379",
				"--service-cluster-ip-range=10.96.0.0/12",
				"--client-ca-file=" + pki + "/ca.crt",
				"--tls-cert-file=" + pki + "/apiserver.crt",
				"--tls-private-key-file=" + pki + "/apiserver.key",
				"--authorization-mode=Node,RBAC",
				"--enable-admission-plugins=NodeRestriction",
			},
			Restart:      RestartAlways,
			RestartDelay: 5 * time.Second,
			StartLimit:   &StartLimit{},
			WantedBy:     []string{"multi-user.target"},
		},
		{
			Name:        "kube-controller-manager.service",
			Description: "Kubernetes controller manager (ecom-agent)",
			After:       []string{"kube-apiserver.service"},
			ExecStart: []string{"/usr/local/bin/kube-controller-manager",
				"--kubeconfig=/etc/kubernetes/controller-manager.conf",
				"--leader-elect=true",
				"--cluster-signing-cert-file=" + pki + "/ca.crt",
			},
			Restart:      RestartAlways,
			RestartDelay: 5 * time.Second,
			StartLimit:   &StartLimit{},
			WantedBy:     []string{"multi-user.target"},
		},
		{
			Name:        "kube-scheduler.service",
			Description: "Kubernetes scheduler (ecom-agent)",
			After:       []string{"kube-apiserver.service"},
			ExecStart: []string{"/usr/local/bin/kube-scheduler",
				"--kubeconfig=/etc/kubernetes/scheduler.conf",
				"--leader-elect=true",
			},
			Restart:      RestartAlways,
			RestartDelay: 5 * time.Second,
			StartLimit:   &StartLimit{},
			WantedBy:     []string{"multi-user.target"},
		},
		{
			Name:                "kubelet.service",
			Description:         "kubelet: The Kubernetes Node Agent (ecom-agent)",
			Documentation:       []string{"https://kubernetes.io/docs/"},
			Wants:               []string{"network-online.target"},
			After:               []string{"network-online.target", "containerd.service"},
			ConditionPathExists: []string{"/var/lib/kubelet/config.yaml"},
			StartLimit:          &StartLimit{},
			ExecStartPre: []Command{
				{Argv: []string{"/sbin/modprobe", "br_netfilter"}, IgnoreFailure: true},
				{Argv: []string{"/sbin/modprobe", "overlay"}, IgnoreFailure: true},
			},
			ExecStart: []string{"/usr/local/bin/kubelet",
				"--config=/var/lib/kubelet/config.yaml",
				"--kubeconfig=/etc/kubernetes/kubelet.conf",
				"--node-labels=node.ecom/role=worker,node.ecom/zone=eu 1",
			},
			EnvironmentFiles: []string{"-/etc/default/kubelet"},
			Restart:          RestartAlways,
			RestartDelay:     10 * time.Second,
			KillMode:         KillProcess,
			Delegate:         true,
			WantedBy:         []string{"multi-user.target"},
			DropIns: []DropIn{{Name: "10-ecom-agent.conf", Options: []*unit.UnitOption{
				unit.NewUnitOption("Service", "CPUAccounting", "yes"),
				unit.NewUnitOption("Service", "MemoryAccounting", "yes"),
			}}},
		},
		{
			Name:             "ecom-agent.service",
			Description:      "ecom-agent node bootstrap agent",
			Documentation:    []string{"https://github.com/ecom-platform/ecom-agent"},
			Wants:            []string{"network-online.target"},
			After:            []string{"network-online.target"},
			Type:             TypeNotify,
			ExecStart:        []string{"/usr/local/bin/ecom-agent", "daemon", "--config=/etc/ecom-agent/config.toml"},
			WorkingDirectory: "/var/lib/ecom-agent",
			Restart:          RestartAlways,
			RestartDelay:     2 * time.Second,
			StopTimeout:      30 * time.Second,
			StartLimit:       &StartLimit{Interval: 10 * time.Minute, Burst: 20},
			KillMode:         KillMixed,
			WantedBy:         []string{"multi-user.target"},
		},
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./units -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", name, diff)
	}
}

func TestRenderGolden(t *testing.T) {
	for _, s := range exampleSpecs() {
		t.Run(s.Name, func(t *testing.T) {
			got, err := Render(s)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := Render(s)
			if !bytes.Equal(got, again) {
				t.Fatal("two renders of the same spec differ")
			}
			checkGolden(t, s.Name, got)
			for _, d := range s.DropIns {
				data, err := RenderDropIn(s.Name, d.Options)
				if err != nil {
					t.Fatal(err)
				}
				checkGolden(t, s.Name+"-"+d.Name, data)
			}
		})
	}
}

// TestRenderDeserializes reads every rendered unit back with go-systemd's
// parser and checks that ExecStart holds the spec's argv.
func TestRenderDeserializes(t *testing.T) {
	for _, s := range exampleSpecs() {
		data, err := Render(s)
		if err != nil {
			t.Fatal(err)
		}
		opts, err := unit.DeserializeOptions(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: Deserialize: %v", s.Name, err)
		}
		if got := execStart(t, opts); !cmp.Equal(got, s.ExecStart) {
			t.Errorf("%s: ExecStart reads back as %q, want %q", s.Name, got, s.ExecStart)
		}
	}
}

func execStart(t *testing.T, opts []*unit.UnitOption) []string {
	t.Helper()
	for _, o := range opts {
		if o.Section == "Service" && o.Name == "ExecStart" {
			argv, err := parseCommand(o.Value)
			if err != nil {
				t.Fatalf("parse ExecStart %q: %v", o.Value, err)
			}
			return argv
		}
	}
	t.Fatal("no ExecStart")
	return nil
}

func TestRenderLongCommand(t *testing.T) {
	argv := []string{"/usr/local/bin/kube-apiserver"}
	for i := range 400 {
		argv = append(argv, fmt.Sprintf("--flag-%03d=%s", i, strings.Repeat("v", 100+i)))
	}
	argv = append(argv, "--spaces=a b c", `--quotes="x"`, "--dollar=$HOME", "--percent=50%")
	argv = append(argv, "--longest="+strings.Repeat("x", MaxLineLength-len("\t--longest=")-len(" \\")))
	s := Spec{Name: "long.service", ExecStart: argv}
	data, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 50_000 {
		t.Fatalf("unit is only %d bytes; the test wants a long command", len(data))
	}
	longest := 0
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		longest = max(longest, len(line))
	}
	if longest > MaxLineLength {
		t.Errorf("longest line is %d bytes, more than %d", longest, MaxLineLength)
	}
	opts, err := unit.DeserializeOptions(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Deserialize: %v", err)
	}
	if got := execStart(t, opts); !cmp.Equal(got, argv) {
		t.Errorf("ExecStart reads back differently:\n%s", cmp.Diff(argv, got))
	}

	// One argument too long for a line cannot be split: Render refuses it
	// rather than write a unit systemd would truncate.
	s.ExecStart = []string{"/bin/x", "--cert=" + strings.Repeat("x", unit.SYSTEMD_LINE_MAX)}
	if _, err := Render(s); err == nil || !strings.Contains(err.Error(), "line") {
		t.Errorf("Render of a too-long argument: %v, want a line length error", err)
	}
}

func TestRenderRefuses(t *testing.T) {
	ok := Spec{Name: "a.service", ExecStart: []string{"/bin/true"}}
	if _, err := Render(ok); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Spec){
		"no name":           func(s *Spec) { s.Name = "" },
		"not a service":     func(s *Spec) { s.Name = "a.timer" },
		"slash in name":     func(s *Spec) { s.Name = "../a.service" },
		"no ExecStart":      func(s *Spec) { s.ExecStart = nil },
		"relative argv0":    func(s *Spec) { s.ExecStart = []string{"true"} },
		"bad dependency":    func(s *Spec) { s.After = []string{"a b.service"} },
		"bad type":          func(s *Spec) { s.Type = "forking" },
		"bad restart":       func(s *Spec) { s.Restart = "sometimes" },
		"bad env name":      func(s *Spec) { s.Environment = map[string]string{"A-B": "x"} },
		"newline in descr":  func(s *Spec) { s.Description = "a\nb" },
		"bad drop-in name":  func(s *Spec) { s.DropIns = []DropIn{{Name: "x.txt"}} },
		"drop-in path":      func(s *Spec) { s.DropIns = []DropIn{{Name: "../x.conf"}} },
		"negative timeout":  func(s *Spec) { s.StopTimeout = -time.Second },
		"bad ExecStartPre":  func(s *Spec) { s.ExecStartPre = []Command{{Argv: []string{"modprobe"}}} },
		"documentation url": func(s *Spec) { s.Documentation = []string{"a b"} },
	} {
		s := ok
		mutate(&s)
		if _, err := Render(s); err == nil {
			t.Errorf("%s: Render accepted %+v", name, s)
		}
	}
}

func TestRenderDropIn(t *testing.T) {
	exec, err := FormatCommand([]string{"/usr/local/bin/etcd", "--debug"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := RenderDropIn("etcd.service", []*unit.UnitOption{
		unit.NewUnitOption("Service", "ExecStart", ""),
		unit.NewUnitOption("Service", "ExecStart", exec),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := header("etcd.service") + "\n[Service]\nExecStart=\nExecStart=/usr/local/bin/etcd \\\n\t--debug\n"
	if string(data) != want {
		t.Errorf("got\n%s\nwant\n%s", data, want)
	}
	if _, err := RenderDropIn("etcd.service", []*unit.UnitOption{unit.NewUnitOption("Service", "A=B", "c")}); err == nil {
		t.Error("RenderDropIn accepted an option name with '='")
	}
}
