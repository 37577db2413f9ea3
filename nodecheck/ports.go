package nodecheck

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// Ports fails for each of Options.Ports that something else holds: it
// listens on the port on all addresses (":PORT") with Options.Listen and
// closes again. This check is the host's network, not Options.Root.
func Ports(o Options) []Failure {
	const check = "ports"
	listen := o.Listen
	if listen == nil {
		listen = net.Listen
	}
	var out []Failure
	for _, p := range o.Ports {
		if p.Port < 1 || p.Port > 65535 {
			out = append(out, Failure{check, fmt.Sprintf("port %d (%s) is not a port", p.Port, p.Owner), "use 1-65535"})
			continue
		}
		l, err := listen("tcp", net.JoinHostPort("", strconv.Itoa(p.Port)))
		if err == nil {
			l.Close()
			continue
		}
		find := fmt.Sprintf("`ss -ltnp 'sport = :%d'` names the process", p.Port)
		if errors.Is(err, syscall.EADDRINUSE) {
			out = append(out, Failure{check, fmt.Sprintf("port %d (%s) is in use", p.Port, p.Owner),
				"stop what listens there: " + find})
			continue
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err // drop "listen tcp :10250:", the message says it
		}
		out = append(out, Failure{check, fmt.Sprintf("port %d (%s) cannot be listened on: %v", p.Port, p.Owner, err),
			"run ecom-agent as root; if something holds it, " + find})
	}
	return out
}
