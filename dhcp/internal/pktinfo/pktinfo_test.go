package pktinfo

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// loopback opens a server socket with packet information on and a client
// socket, both on loopback (network "udp4" or "udp6").
func loopback(t *testing.T, network string) (srv, cli *net.UDPConn, lo *net.Interface) {
	t.Helper()
	host := "127.0.0.1"
	if network == "udp6" {
		host = "::1"
	}
	srv, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(host), 0)))
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	t.Cleanup(func() { srv.Close() })
	if network == "udp4" {
		err = ipv4.NewPacketConn(srv).SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true)
	} else {
		err = ipv6.NewPacketConn(srv).SetControlMessage(ipv6.FlagInterface|ipv6.FlagDst, true)
	}
	if err != nil {
		t.Fatal(err)
	}
	cli, err = net.DialUDP(network, nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			return srv, cli, &ifi
		}
	}
	t.Fatal("no loopback interface")
	return nil, nil, nil
}

// TestReader: a datagram on loopback is read with its source, ingress
// interface and destination, and a reply written with Out4 or Out6 leaves
// through the interface it names, neither allocating.
func TestReader(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			srv, cli, lo := loopback(t, network)
			r, err := NewReader(srv)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			read := func() {
				if _, err := cli.Write([]byte("request")); err != nil {
					t.Fatal(err)
				}
				n, src, ifindex, dst, err := r.Read(buf)
				switch {
				case err != nil:
					t.Fatal(err)
				case string(buf[:n]) != "request" || src != cli.LocalAddr().(*net.UDPAddr).AddrPort() || ifindex != lo.Index ||
					dst != srv.LocalAddr().(*net.UDPAddr).AddrPort().Addr():
					t.Fatalf("read %q from %v on %d to %v, want request from %v on %d to %v", buf[:n], src, ifindex, dst,
						cli.LocalAddr(), lo.Index, srv.LocalAddr())
				}
			}
			if n := testing.AllocsPerRun(100, read); n != 0 {
				t.Errorf("%v allocations per datagram read, want 0", n)
			}
			family, out := uint16(unix.AF_INET), Out4(lo.Index, netip.Addr{})
			if network == "udp6" {
				family, out = unix.AF_INET6, Out6(lo.Index)
			}
			w, err := NewWriter(srv, family, out)
			if err != nil {
				t.Fatal(err)
			}
			to := cli.LocalAddr().(*net.UDPAddr).AddrPort()
			reply := []byte("reply")
			cli.SetReadDeadline(time.Now().Add(5 * time.Second))
			write := func() {
				if err := w.Write(reply, to); err != nil {
					t.Fatalf("send out of %s: %v", lo.Name, err)
				}
				if n, err := cli.Read(buf); err != nil || string(buf[:n]) != "reply" {
					t.Fatalf("client read %q, %v", buf[:n], err)
				}
			}
			if n := testing.AllocsPerRun(100, write); n != 0 {
				t.Errorf("%v allocations per reply sent with %s, want 0", n, map[string]string{"udp4": "Out4", "udp6": "Out6"}[network])
			}
		})
	}
}

// TestReaderDeadline: a deadline in the past interrupts a blocked read.
func TestReaderDeadline(t *testing.T) {
	srv, _, _ := loopback(t, "udp4")
	r, err := NewReader(srv)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		srv.SetReadDeadline(time.Unix(1, 0))
	}()
	if _, _, _, _, err := r.Read(make([]byte, 8)); err == nil {
		t.Fatal("Read returned without a datagram or an error")
	}
}
