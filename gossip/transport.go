package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

const (
	// maxPacket is the largest UDP payload; every read fits in it.
	maxPacket = 65536
	// udpRecvBuf is the socket receive buffer asked for, as memberlist's
	// own transport does, so bursts of gossip are not dropped by the
	// kernel while the node is busy.
	udpRecvBuf = 2 << 20
)

// transport is the agent's memberlist transport: UDP packets and TCP
// streams on one address and port, like memberlist's NetTransport, with
// one difference that matters at fleet scale: NetTransport hands every
// received packet over in a fresh 64 KiB buffer, so a node's garbage
// grows with the packets it receives (mostly a few hundred bytes each).
// Here a packet is read into one reused buffer and handed over in a copy
// of its own size.
type transport struct {
	log    *slog.Logger
	tcp    *net.TCPListener
	udp    *net.UDPConn
	port   int
	packet chan *memberlist.Packet
	stream chan net.Conn

	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// newTransport listens on addr (TCP and UDP, the same port). Port 0 picks
// a free TCP port and binds UDP to the same one, trying a few ports if
// that one is taken for UDP.
func newTransport(addr netip.AddrPort, log *slog.Logger) (*transport, error) {
	tries := 1
	if addr.Port() == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var t *transport
		if t, err = listen(addr, log); err == nil {
			return t, nil
		}
	}
	return nil, err
}

func listen(addr netip.AddrPort, log *slog.Logger) (*transport, error) {
	tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("listen on TCP %s: %w", addr, err)
	}
	port := tcp.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr.Addr(), uint16(port))))
	if err != nil {
		_ = tcp.Close()
		return nil, fmt.Errorf("listen on UDP %s port %d: %w", addr.Addr(), port, err)
	}
	// The kernel may cap the buffer (net.core.rmem_max); smaller is
	// still a working socket, as with memberlist's transport.
	for size := udpRecvBuf; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t := &transport{
		log:    log,
		tcp:    tcp,
		udp:    udp,
		port:   port,
		packet: make(chan *memberlist.Packet),
		stream: make(chan net.Conn),
		done:   make(chan struct{}),
	}
	t.wg.Add(2)
	go t.readPackets()
	go t.acceptStreams()
	return t, nil
}

// FinalAdvertiseAddr advertises ip, and the bound port when port is 0.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, 0, fmt.Errorf("advertise address %q: %w", ip, err)
	}
	if port == 0 {
		port = t.port
	}
	return net.IP(a.Unmap().AsSlice()), port, nil
}

// WriteTo sends one packet to addr ("ip:port").
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends one packet to a.Addr ("ip:port", or "host:port",
// which is resolved).
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ap, err := netip.ParseAddrPort(a.Addr)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", a.Addr)
		if rerr != nil {
			return time.Time{}, rerr
		}
		ap = ua.AddrPort()
	}
	_, err = t.udp.WriteToUDPAddrPort(b, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	// The time after the write, as memberlist's transport takes it: it
	// times probes' round trips.
	return time.Now(), err
}

// PacketCh delivers received packets.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packet }

// DialTimeout opens a stream to addr.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream to a.Addr.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", a.Addr)
}

// StreamCh delivers accepted streams.
func (t *transport) StreamCh() <-chan net.Conn { return t.stream }

// Shutdown closes both sockets and waits for the readers to end. It is
// safe to call more than once.
func (t *transport) Shutdown() error {
	t.stopOnce.Do(func() {
		close(t.done)
		_ = t.tcp.Close()
		_ = t.udp.Close()
	})
	t.wg.Wait()
	return nil
}

func (t *transport) stopped() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// readPackets hands every UDP packet to memberlist in a buffer of its own
// size.
func (t *transport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		ts := time.Now()
		if err != nil {
			if t.stopped() || errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("reading a gossip packet", "err", err)
			continue
		}
		if n < 1 {
			continue
		}
		b := make([]byte, n)
		copy(b, buf)
		p := &memberlist.Packet{
			Buf:       b,
			From:      net.UDPAddrFromAddrPort(from),
			Timestamp: ts,
		}
		select {
		case t.packet <- p:
		case <-t.done:
			return
		}
	}
}

// acceptStreams hands every TCP connection to memberlist. Accept errors
// other than the listener's close (too many open files, say) are retried
// after a growing pause of at most a second.
func (t *transport) acceptStreams() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.tcp.Accept()
		if err != nil {
			if t.stopped() || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("accepting a gossip stream", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-t.done:
				return
			}
			continue
		}
		delay = 0
		select {
		case t.stream <- conn:
		case <-t.done:
			_ = conn.Close()
			return
		}
	}
}
