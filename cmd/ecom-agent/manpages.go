package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ecom-platform/ecom-agent/buildinfo"
	"github.com/ecom-platform/ecom-agent/config"
)

// rootManSections are the sections cobra's pages lack, added to
// ecom-agent.1 before SEE ALSO: the exit codes every command shares
// (exitCodesHelp without its title) and the files the agent reads and
// writes.
func rootManSections() string {
	return ".SH EXIT STATUS\n.nf\n" + roffText(strings.TrimPrefix(exitCodesHelp, "Exit codes:\n")) + "\n.fi\n" + rootManFiles
}

const rootManFiles = `.SH FILES
.TP
.I /etc/ecom-agent/config.toml
The node's configuration; see \fBecom-agent.toml\fP(5).
.TP
.I /etc/ecom-agent/cluster-secret, /etc/ecom-agent/control-plane-key
The control-plane nodes' shared secret and the key that seals the CA keys, mode 0600.
.TP
.I /etc/ecom-agent/join-token
A worker's join token (\fBecom-agent token create\fP on a control-plane node), mode 0600.
.TP
.I /var/lib/ecom-agent/snapshots/
The scheduled etcd snapshots, each with its metadata (FILE.json).
.TP
.I /etc/ecom-agent/manifests.d/
The operator's own manifests, seeded with the platform's.
.TP
.I /etc/default/ecom-agent
Environment of the agent, containerd and the kubelet (a proxy, say).
.TP
.I /var/lib/ecom-agent/
The agent's state; images/ holds image archives imported before the kubelet starts.
.TP
.I /etc/kubernetes/, /var/lib/etcd/, /var/lib/kubelet/
What the agent renders and runs: PKI, kubeconfigs, etcd data, the kubelet's state.
.TP
.I /run/ecom-agent/agent.sock
The daemon's control socket (status, verify).
`

// roffText escapes text for a roff no-fill block: backslashes, and a
// line's leading dot or quote (it would be a request).
func roffText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// writeManPages adds the sections above to dir's ecom-agent.1 (cobra
// wrote it) and writes ecom-agent.toml.5: the config file's page, whose
// body is the commented example every key is documented in.
func writeManPages(dir string, date time.Time) error {
	root := filepath.Join(dir, "ecom-agent.1")
	page, err := os.ReadFile(root)
	if err != nil {
		return err
	}
	text := string(page)
	i := strings.Index(text, ".SH SEE ALSO")
	if i < 0 {
		return fmt.Errorf("%s: no SEE ALSO section to put EXIT STATUS and FILES before", root)
	}
	text = text[:i] + rootManSections() + text[i:]
	text = strings.Replace(text, ".SH SEE ALSO\n", ".SH SEE ALSO\n\\fBecom-agent.toml\\fP(5), ", 1)
	if err := os.WriteFile(root, []byte(text), 0o644); err != nil {
		return err
	}
	toml := fmt.Sprintf(`.TH "ECOM-AGENT.TOML" "5" "%s" "ecom-agent %s" "ecom-agent manual"
.nh
.ad l
.SH NAME
ecom-agent.toml \- configuration of the ecom-agent node bootstrap agent
.SH SYNOPSIS
.I /etc/ecom-agent/config.toml
.SH DESCRIPTION
The node's configuration, in TOML, read by \fBecom-agent join\fP, the daemon and every command that takes \fB--config\fP.
It is decoded strictly: an unknown key, a wrong type or an invalid value is an error naming the key and its line, and nothing is written (exit status 78).
The same file can go to every node of a role (cloud-init's write_files): a node takes its name from its hostname and its address from its only address unless node_name and advertise_address say otherwise.
\fBecom-agent config validate\fP checks a file without touching the host; \fBecom-agent config print-defaults\fP prints every default.
.PP
The example below, shipped as /usr/share/doc/ecom-agent/examples/config.toml, lists every key with its default and meaning.
.SH EXAMPLE
.nf
%s
.fi
.SH FILES
.TP
.I /etc/ecom-agent/config.toml
This file.
.TP
.I /etc/ecom-agent/cluster-secret, /etc/ecom-agent/control-plane-key
The files cluster_secret_file and control_plane_key_file name by default; a worker must not hold the control-plane key.
.SH SEE ALSO
\fBecom-agent\fP(1), \fBecom-agent-join\fP(1), \fBecom-agent-config-validate\fP(1)
`, date.Format("Jan 2006"), buildinfo.Version, roffText(strings.TrimRight(string(config.Example), "\n")))
	return os.WriteFile(filepath.Join(dir, "ecom-agent.toml.5"), []byte(toml), 0o644)
}
