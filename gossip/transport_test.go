package gossip

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestTransport(t *testing.T) {
	tr, err := newTransport(netip.AddrPortFrom(loopback, 0), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	if tr.port == 0 {
		t.Fatal("no port picked")
	}

	ip, port, err := tr.FinalAdvertiseAddr("127.0.0.1", 0)
	if err != nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) || len(ip) != 4 || port != tr.port {
		t.Fatalf("FinalAdvertiseAddr(127.0.0.1, 0) = %v %d %v, want 127.0.0.1 (4 bytes) %d", ip, port, err, tr.port)
	}
	if _, port, _ := tr.FinalAdvertiseAddr("127.0.0.1", 7946); port != 7946 {
		t.Fatalf("a configured advertise port became %d", port)
	}
	if _, _, err := tr.FinalAdvertiseAddr("not-an-ip", 0); err == nil {
		t.Fatal("FinalAdvertiseAddr accepted a bad address")
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.port))

	// Packets: UDP on the same port as the streams, each handed over in
	// a buffer of its own size, with the sender and a receive time.
	sender, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	ua, _ := net.ResolveUDPAddr("udp", addr)
	for _, size := range []int{1, 300, 1400, 9000} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		before := time.Now()
		if _, err := sender.WriteTo(msg, ua); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-tr.PacketCh():
			if !bytes.Equal(p.Buf, msg) {
				t.Fatalf("packet of %d bytes arrived as %d bytes", size, len(p.Buf))
			}
			if cap(p.Buf) != size {
				t.Errorf("packet of %d bytes handed over in a %d-byte buffer", size, cap(p.Buf))
			}
			if p.From.String() != sender.LocalAddr().String() {
				t.Errorf("packet from %v, want %v", p.From, sender.LocalAddr())
			}
			if p.Timestamp.Before(before) {
				t.Errorf("packet timestamp %v is before it was sent (%v)", p.Timestamp, before)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("packet of %d bytes not received", size)
		}
	}

	// WriteTo sends from the transport's own port.
	if _, err := tr.WriteTo([]byte("ping"), sender.LocalAddr().String()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = sender.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := sender.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" || from.String() != addr {
		t.Fatalf("WriteTo: got %q from %v (%v), want ping from %s", buf[:n], from, err, addr)
	}

	// Streams: a dialled TCP connection reaches StreamCh.
	conn, err := tr.DialTimeout(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("stream")); err != nil {
		t.Fatal(err)
	}
	select {
	case in := <-tr.StreamCh():
		got := make([]byte, 6)
		_ = in.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(in, got); err != nil || string(got) != "stream" {
			t.Fatalf("stream read %q, %v", got, err)
		}
		in.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("stream not accepted")
	}

	// Shutdown frees the port for both protocols and may be repeated.
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	again, err := newTransport(netip.AddrPortFrom(loopback, uint16(tr.port)), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("port %d not freed by Shutdown: %v", tr.port, err)
	}
	again.Shutdown()
}

func TestTransportPortTaken(t *testing.T) {
	first, err := newTransport(netip.AddrPortFrom(loopback, 0), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Shutdown()
	_, err = newTransport(netip.AddrPortFrom(loopback, uint16(first.port)), slog.New(slog.DiscardHandler))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("listen on TCP 127.0.0.1:"+strconv.Itoa(first.port))) {
		t.Fatalf("second transport on a taken port: %v, want an error naming the address", err)
	}
}
