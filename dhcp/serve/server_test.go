package serve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeTransport hands over the packets sent on in, records what is sent,
// and fails the reads and sends it is told to.
type fakeTransport struct {
	in       chan Packet
	readErrs chan error
	sendErr  error

	mu     sync.Mutex
	sent   []Reply
	closed int
	wake   chan struct{}
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{in: make(chan Packet), readErrs: make(chan error, 4), wake: make(chan struct{})}
}

func (f *fakeTransport) Receive([]byte) (Packet, error) {
	select {
	case p := <-f.in:
		return p, nil
	case err := <-f.readErrs:
		return Packet{}, err
	case <-f.wake:
		return Packet{}, errors.New("i/o timeout")
	}
}

func (f *fakeTransport) Send(_ Packet, r Reply) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, r)
	return f.sendErr
}

func (f *fakeTransport) SetReadDeadline(t time.Time) error {
	if t.Before(time.Now()) {
		close(f.wake)
	}
	return nil
}

func (f *fakeTransport) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

// fakeClock advances by step at every reading.
type fakeClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.now
	c.now = c.now.Add(c.step)
	return t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// echo answers every packet with its own data, as "PONG".
func echo(p Packet) (Reply, Event) {
	return Reply{Data: p.Data, To: p.Src}, Event{Request: "PING", Reply: "PONG", Outcome: Replied, Peer: p.Src.Addr()}
}

// start runs a server over a fake transport until the test ends. It
// naps not at all after a rate-limited packet unless nap says so.
func start(t *testing.T, handle HandleFunc, limit Limit, clock *fakeClock, nap ...time.Duration) (*fakeTransport, <-chan Event) {
	t.Helper()
	ft := newFakeTransport()
	events := make(chan Event, 64)
	s := New("test", ft, handle, limit, nil)
	s.Nap, s.NapAfter = 0, 1
	if len(nap) > 0 {
		s.Nap = nap[0]
	}
	s.Observer = func(ev Event) { events <- ev }
	if clock != nil {
		s.Now = clock.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v after cancel, want nil", err)
		}
		if ft.closed != 1 {
			t.Errorf("transport closed %d times, want once", ft.closed)
		}
	})
	return ft, events
}

var peer = netip.MustParseAddrPort("10.16.0.5:68")

func TestServerEvents(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1000, 0), step: 3 * time.Microsecond}
	ft, events := start(t, echo, Limit{}, clock)
	ft.in <- Packet{Data: []byte("x"), Src: peer}
	ft.in <- Packet{Src: peer, Drop: NotVM, Detail: "Ethernet source is not the VM"}
	want := []Event{
		{Request: "PING", Reply: "PONG", Outcome: Replied, Peer: peer.Addr(), Latency: 3 * time.Microsecond},
		{Outcome: Dropped, Reason: NotVM, Detail: "Ethernet source is not the VM", Latency: 3 * time.Microsecond},
	}
	got := []Event{<-events, <-events}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if len(ft.sent) != 1 || string(ft.sent[0].Data) != "x" || ft.sent[0].To != peer {
		t.Errorf("sent %+v, want one reply to %v", ft.sent, peer)
	}
}

// TestServerRateLimit: a flood gets Burst answers, the rest is dropped
// without calling the handler, and the bucket refills at Rate.
func TestServerRateLimit(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1000, 0)}
	calls := 0
	handle := func(p Packet) (Reply, Event) { calls++; return echo(p) }
	ft, events := start(t, handle, Limit{Rate: 20, Burst: 5}, clock)
	outcomes := func(n int) (replied, limited int) {
		for range n {
			ft.in <- Packet{Data: []byte("x"), Src: peer}
			switch ev := <-events; {
			case ev.Outcome == Replied:
				replied++
			case ev.Reason == RateLimited:
				limited++
			default:
				t.Fatalf("unexpected event %+v", ev)
			}
		}
		return replied, limited
	}
	if r, l := outcomes(30); r != 5 || l != 25 || calls != 5 {
		t.Errorf("a burst of 30: replied %d, limited %d, handler called %d times; want 5, 25, 5", r, l, calls)
	}
	clock.advance(100 * time.Millisecond) // 2 tokens at 20/s
	if r, l := outcomes(3); r != 2 || l != 1 {
		t.Errorf("after 100 ms: replied %d, limited %d; want 2, 1", r, l)
	}
	clock.advance(time.Hour)
	if r, _ := outcomes(10); r != 5 {
		t.Errorf("after an hour: replied %d, want the burst of 5", r)
	}
}

// TestServerNaps: after NapAfter packets over the rate limit in a row (1
// here) the server reads nothing for Nap (a flood queues meanwhile), and
// after one within it reads at once.
func TestServerNaps(t *testing.T) {
	t.Parallel()
	const nap = 100 * time.Millisecond
	ft, events := start(t, echo, Limit{Rate: 1, Burst: 1}, nil, nap)
	send := func() (Event, time.Duration) {
		start := time.Now()
		ft.in <- Packet{Data: []byte("x"), Src: peer} // blocks until the server reads
		return <-events, time.Since(start)
	}
	if ev, _ := send(); ev.Outcome != Replied {
		t.Fatalf("first packet: %+v, want a reply", ev)
	}
	if ev, took := send(); ev.Reason != RateLimited || took >= nap {
		t.Fatalf("second packet: %+v read after %v, want rate-limited at once", ev, took)
	}
	// The nap starts as the event is observed: most of it is left when
	// the test sends; without one the read would take microseconds.
	if _, took := send(); took < nap/2 {
		t.Errorf("the packet after a rate-limited one was read after %v, want the %v nap first", took, nap)
	}
}

// TestServerRecoversPanic: a panicking handler drops that packet, and the
// next one is served.
func TestServerRecoversPanic(t *testing.T) {
	t.Parallel()
	handle := func(p Packet) (Reply, Event) {
		if string(p.Data) == "boom" {
			var none []byte
			_ = none[len(p.Data)] // index out of range: a runtime panic
		}
		return echo(p)
	}
	ft, events := start(t, handle, Limit{}, nil)
	ft.in <- Packet{Data: []byte("boom"), Src: peer}
	if ev := <-events; ev.Outcome != Dropped || ev.Reason != Panic {
		t.Errorf("event after a panic = %+v, want dropped for %q", ev, Panic)
	}
	ft.in <- Packet{Data: []byte("x"), Src: peer}
	if ev := <-events; ev.Outcome != Replied {
		t.Errorf("event after recovering = %+v, want replied", ev)
	}
}

// TestServerSendFailed: a failed send turns the reply into a drop.
func TestServerSendFailed(t *testing.T) {
	t.Parallel()
	ft, events := start(t, echo, Limit{}, nil)
	ft.sendErr = errors.New("network is down")
	ft.in <- Packet{Data: []byte("x"), Src: peer}
	ev := <-events
	if ev.Outcome != Dropped || ev.Reason != SendFailed || ev.Detail != "network is down" || ev.Reply != "PONG" {
		t.Errorf("event = %+v, want the PONG dropped for %q", ev, SendFailed)
	}
}

// TestServerReadErrors: a transient read error is retried after a pause a
// cancel cuts short; a closed transport ends Run with an error.
func TestServerReadErrors(t *testing.T) {
	t.Parallel()
	ft := newFakeTransport()
	s := New("test", ft, echo, Limit{}, nil)
	ft.readErrs <- errors.New("network is down")
	ft.readErrs <- net.ErrClosed
	start := time.Now()
	err := s.Run(context.Background())
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("Run() = %v, want net.ErrClosed", err)
	}
	if el := time.Since(start); el < readBackoff {
		t.Errorf("Run() retried after %v, want a pause of %v", el, readBackoff)
	}
	if ft.closed != 1 {
		t.Errorf("transport closed %d times, want once", ft.closed)
	}

	ft = newFakeTransport()
	s = New("test", ft, echo, Limit{}, nil)
	ft.readErrs <- errors.New("network is down")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run() did not return after cancel during a backoff")
	}
}

// TestServerClose: Close releases a transport Run never used, once.
func TestServerClose(t *testing.T) {
	t.Parallel()
	ft := newFakeTransport()
	s := New("test", ft, echo, Limit{}, nil)
	for range 2 {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	}
	if ft.closed != 1 {
		t.Errorf("transport closed %d times, want once", ft.closed)
	}
}

// sizedTransport is a fakeTransport whose receive buffer can be resized.
type sizedTransport struct {
	*fakeTransport
	sized chan int
}

func (s sizedTransport) SetReadBuffer(bytes int) error { s.sized <- bytes; return nil }

// TestServerShrinksReadBuffer: a rate-limited server that naps shrinks its
// transport's receive buffer to NapReadBuffer; one without a limit keeps
// the kernel's default.
func TestServerShrinksReadBuffer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		limit Limit
		want  []int
	}{{Limit{Rate: 200, Burst: 20}, []int{NapReadBuffer}}, {Limit{}, nil}} {
		st := sizedTransport{newFakeTransport(), make(chan int, 1)}
		s := New("test", st, echo, tt.limit, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		st.in <- Packet{Data: []byte("x"), Src: peer} // Run is past its start
		cancel()
		<-done
		var got []int
		select {
		case n := <-st.sized:
			got = append(got, n)
		default:
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("limit %+v: receive buffer set to (-want +got):\n%s", tt.limit, diff)
		}
	}
}
