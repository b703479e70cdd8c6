package ra

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/ndp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

func TestNewAdvertiserWithoutTransport(t *testing.T) {
	_, err := NewAdvertiser(kubeOVN112(), nil, nil)
	if !errors.Is(err, ErrNoTransport) {
		t.Fatalf("NewAdvertiser(gateway, nil conn) error = %v, want ErrNoTransport", err)
	}
	want := "failed to start router advertisements in mode gateway: router advertisements need a packet socket on the VM's tap (CAP_NET_RAW)"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestModeOffWaitsForCancel(t *testing.T) {
	a, err := NewAdvertiser(Config{Mode: ModeOff}, nil, nil)
	if err != nil {
		t.Fatalf("NewAdvertiser(off): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil on cancel", err)
	}
}

// The multicast frame, pinned to its wire bytes: Ethernet from the gateway
// MAC to all-nodes, IPv6 from the gateway's link-local with hop limit 255,
// and the RA body with its checksum.
func TestMulticastFrameBytes(t *testing.T) {
	cfg := kubeOVN112()
	cfg.DNS, cfg.Search = nil, nil
	a, err := NewAdvertiser(cfg, nopConn{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, `
		333300000001 0a580a100001 86dd          # Ethernet: all-nodes <- gateway MAC, IPv6
		60000000 0040 3a ff                     # IPv6: payload 64, ICMPv6, hop limit 255
		fe800000000000000858 0afffe100001       # src fe80::858:aff:fe10:1
		ff020000000000000000000000000001        # dst ff02::1
		86 00 7620                              # RA, checksum (computed independently in Python)
		40 c0 0708 00000000 00000000`+kubeOVNSLLA+mtu1400+pio112)
	if diff := cmp.Diff(want, a.multicast); diff != "" {
		t.Errorf("frame (-want +got):\n%s\nwant %x\ngot  %x", diff, want, a.multicast)
	}
	if _, err := frame.ParseICMP6(a.multicast); err != nil {
		t.Errorf("ParseICMP6 of our own frame: %v", err)
	}
}

type nopConn struct{}

func (nopConn) ReadFrame([]byte) (int, error)   { return 0, net.ErrClosed }
func (nopConn) WriteFrame([]byte) error         { return nil }
func (nopConn) SetReadDeadline(time.Time) error { return nil }
func (nopConn) Close() error                    { return nil }

// readRA reads frames on the guest side until an RA arrives, and checks it
// is the advertisement from the gateway: Ethernet and IPv6 sources, hop
// limit 255, the checksum, the body Build gives. It returns the frame.
func readRA(t *testing.T, guest frame.Conn, cfg Config, within time.Duration) (frame.ICMP6, bool) {
	t.Helper()
	buf := make([]byte, 1<<16)
	deadline := time.Now().Add(within)
	if err := guest.SetReadDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := guest.ReadFrame(buf)
		if err != nil {
			return frame.ICMP6{}, false
		}
		p, err := frame.ParseICMP6(append([]byte(nil), buf[:n]...))
		if err != nil || len(p.Payload) == 0 || p.Payload[0] != frame.ICMPv6RouterAdvertisement {
			continue
		}
		want, err := Build(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ndp.ParseMessage(p.Payload)
		if err != nil {
			t.Fatalf("ParseMessage(RA): %v", err)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Errorf("RA (-want +got):\n%s", diff)
		}
		if p.Eth.Src != cfg.GatewayMAC || p.Src != Source(cfg) || p.HopLimit != 255 {
			t.Errorf("RA from %v/%v hop limit %d, want %v/%v 255", p.Eth.Src, p.Src, p.HopLimit, cfg.GatewayMAC, Source(cfg))
		}
		return p, true
	}
}

// exerciseAdvertiser is the behaviour every transport must show: quiet
// until the guest speaks, a multicast RA at its first frame, a unicast
// reply to an RS from its link-local address, a clean exit on cancel.
func exerciseAdvertiser(t *testing.T, cfg Config, tap, guest frame.Conn, guestMAC frame.MAC) {
	t.Helper()
	a, err := NewAdvertiser(cfg, tap, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	a.rnd = rndMax // solicited replies 500 ms late, so the two RAs arrive in a known order
	// The schedule must hold the unicast reply back by the drawn delay,
	// counted from when the advertiser took the RS. The test stamps the RS
	// before it writes it (no later than the advertiser takes it) and the
	// advertiser's clock stamps the reply after it is sent (no earlier than
	// it was due): timers never fire early, so this cannot flake on a slow
	// host. (Stamping the RS in the observer could not: the observer runs
	// after the schedule took its time, and was seen 0.1 ms late.)
	var mu sync.Mutex
	stamps := map[string]time.Time{}
	a.Observer = func(ev serve.Event) {
		if ev.Reply == "RA" && ev.Peer == guestLLA {
			mu.Lock()
			defer mu.Unlock()
			stamps["unicast"] = a.now()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil on cancel", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("Run did not return within 2 s of cancel")
		}
	})

	if p, ok := readRA(t, guest, cfg, 300*time.Millisecond); ok {
		t.Fatalf("RA to %v before the guest spoke", p.Dst)
	}
	mu.Lock()
	stamps["rs"] = time.Now()
	mu.Unlock()
	if err := guest.WriteFrame(rsFrame(t, guestLLA, 255, nil)); err != nil {
		t.Fatalf("guest RS: %v", err)
	}
	p, ok := readRA(t, guest, cfg, time.Second)
	if !ok || p.Dst != allNodes || p.Eth.Dst != allNodesMAC {
		t.Fatalf("first RA: got %v (to %v, %v), want multicast at the guest's first frame", ok, p.Dst, p.Eth.Dst)
	}
	p, ok = readRA(t, guest, cfg, time.Second)
	if !ok || p.Dst != guestLLA || p.Eth.Dst != guestMAC {
		t.Fatalf("second RA: got %v (to %v, %v), want unicast to %v, %v", ok, p.Dst, p.Eth.Dst, guestLLA, guestMAC)
	}
	// The observer runs after the write returns, so the guest may read the
	// frame first: wait for the stamp briefly.
	stamped := func() (time.Duration, bool) {
		mu.Lock()
		defer mu.Unlock()
		u, ok := stamps["unicast"]
		return u.Sub(stamps["rs"]), ok
	}
	delay, ok := stamped()
	for deadline := time.Now().Add(time.Second); !ok && time.Now().Before(deadline); delay, ok = stamped() {
		time.Sleep(5 * time.Millisecond)
	}
	if !ok || delay < maxRADelayTime {
		t.Errorf("unicast reply %v after the RS, want at least the drawn delay %v", delay, maxRADelayTime)
	}
	// The counter moves after the write returns, so the guest may read the
	// frame first: wait for it briefly.
	want := Stats{Solicitations: 1, Multicast: 1, Unicast: 1}
	deadline := time.Now().Add(time.Second)
	for a.Stats() != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := a.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(b)))
	return len(b), nil
}

func TestAdvertiserPipe(t *testing.T) {
	tap, guest := frame.Pipe()
	t.Cleanup(func() { tap.Close(); guest.Close() })
	exerciseAdvertiser(t, kubeOVN112(), tap, guest, vmMAC)
}

func TestAdvertiserFlagsOnlyPipe(t *testing.T) {
	tap, guest := frame.Pipe()
	t.Cleanup(func() { tap.Close(); guest.Close() })
	cfg := kubeOVN112()
	cfg.Mode = ModeFlagsOnly
	exerciseAdvertiser(t, cfg, tap, guest, vmMAC)
}

// A transport that fails is an error from Run, not a silent stop.
func TestAdvertiserTransportFailure(t *testing.T) {
	tap, guest := frame.Pipe()
	defer guest.Close()
	a, err := NewAdvertiser(kubeOVN112(), tap, nil)
	if err != nil {
		t.Fatal(err)
	}
	tap.Close()
	err = a.Run(context.Background())
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("Run = %v, want net.ErrClosed", err)
	}
}
