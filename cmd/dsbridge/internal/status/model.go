package status

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dsbridge/dsbridge/netsetup"
)

// Protocols a Model records.
const (
	ProtoDHCPv4 = netsetup.ServiceDHCPv4
	ProtoDHCPv6 = netsetup.ServiceDHCPv6
	ProtoRA     = netsetup.ServiceRA
)

// Outcomes of a received packet: the "outcome" label of
// dsbridge_packets_received_total.
const (
	OutcomeReplied    = "replied"    // an answer was sent
	OutcomeUnanswered = "unanswered" // valid, but the RFC says not to answer (RELEASE, DECLINE, ...)
	OutcomeAccepted   = "accepted"   // a valid RS: the RA schedule answers it
	OutcomeDropped    = "dropped"    // refused; Reason says why
)

// Lease states of the guest.
const (
	LeaseOffered  = "offered"  // OFFER or ADVERTISE sent
	LeaseBound    = "bound"    // ACK or REPLY sent for the address
	LeaseRefused  = "refused"  // NAK sent: the guest asked for another address
	LeaseReleased = "released" // the guest released the address
	LeaseDeclined = "declined" // the guest found the address in use
)

// maxErrors is how many recent errors an interface keeps.
const maxErrors = 16

// Event is one thing a service saw or did: a packet received from the VM
// (Received), or a packet sent on the service's own schedule (an
// unsolicited RA).
type Event struct {
	Protocol string
	Received bool
	Request  string // received message type; "" when it could not be decoded
	Reply    string // sent message type; "" when nothing was sent
	Outcome  string // Outcome*: for received packets, and for failed sends
	Reason   string // a short, bounded label: why it was dropped
	Detail   string // free text for a person: why, in more words
	XID      string // transaction ID, "0x..."; or, unformatted, XIDNum
	Peer     string // the VM's address the packet came from or went to; or PeerAddr
	// XIDNum is the transaction ID as a number, XIDDigits its hex digits
	// (0: none): formatted only when the status is read, so that recording
	// a packet allocates nothing. PeerAddr likewise.
	XIDNum    uint32
	XIDDigits int
	PeerAddr  netip.Addr
	Stale     string // an address the guest still uses and this pod does not serve
	Latency   time.Duration
	Lease     *Lease // the guest's new lease state, or nil; read only
	// Count is how many packets alike the event stands for; 0 means one.
	Count int
}

// Formatted is e with XID and Peer written out from XIDNum and PeerAddr.
func (e Event) Formatted() Event {
	if e.XID == "" && e.XIDDigits > 0 {
		e.XID = formatXID(e.XIDNum, e.XIDDigits)
	}
	if e.Peer == "" && e.PeerAddr.IsValid() {
		e.Peer = e.PeerAddr.String()
	}
	return e
}

// formatXID writes a transaction ID as "0x" and digits hex digits.
func formatXID(x uint32, digits int) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 2+digits)
	b[0], b[1] = '0', 'x'
	for i := len(b) - 1; i >= 2; i-- {
		b[i] = hex[x&0xf]
		x >>= 4
	}
	return string(b)
}

// Model is the status of one dsbridge process. It is safe for concurrent
// use; every service records into it on its own goroutine.
type Model struct {
	now func() time.Time

	mu     sync.Mutex
	doc    Status
	ifaces map[string]*iface
}

// Info is what a Model knows from the start.
type Info struct {
	Version, Commit, Mode string
}

// NewModel returns an empty model started now.
func NewModel(info Info) *Model {
	return newModel(info, time.Now)
}

func newModel(info Info, now func() time.Time) *Model {
	return &Model{now: now, ifaces: map[string]*iface{},
		doc: Status{Version: info.Version, Commit: info.Commit, Mode: info.Mode, StartedAt: now().UTC()}}
}

// SetTier records the deployment tier the privileges allow.
func (m *Model) SetTier(tier string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.doc.Tier = tier
}

// SetVMI records the VMI being served, once known.
func (m *Model) SetVMI(v VMI) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.doc.VMI = &v
}

// AddInterface registers an interface about to be served; a second call for
// the same name replaces its description and keeps its counters.
func (m *Model) AddInterface(in Interface) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i, ok := m.ifaces[in.Name]; ok {
		i.desc = in
		return
	}
	m.ifaces[in.Name] = &iface{desc: in, protos: map[string]*proto{}}
	if m.doc.Tier == "" {
		m.doc.Tier = string(in.Plan.Tier)
	}
}

// RemoveInterface forgets an interface that is no longer served.
func (m *Model) RemoveInterface(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ifaces, name)
}

// SetRunning records whether a service of an interface runs.
func (m *Model) SetRunning(ifname, protocol string, running bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.proto(ifname, protocol).running = running
}

// Error records an error of a service of an interface (ifname "" for the
// process as a whole).
func (m *Model) Error(ifname, service string, err error) {
	if err == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := ErrorRecord{Time: m.now().UTC(), Service: service, Error: err.Error()}
	if ifname == "" {
		m.doc.Errors = appendRing(m.doc.Errors, rec)
		return
	}
	i := m.iface(ifname)
	i.errors = appendRing(i.errors, rec)
	i.errorCount[service]++
}

func appendRing(recs []ErrorRecord, r ErrorRecord) []ErrorRecord {
	if len(recs) == maxErrors {
		recs = slices.Delete(recs, 0, 1)
	}
	return append(recs, r)
}

// Record counts one event of an interface. It reports a Renumbering when
// the event changes the guest's renumbering state (it was first seen using
// an address not served here, or it took the served one after that), for
// the caller to log.
func (m *Model) Record(ifname string, ev Event) Renumbering {
	now := m.now().UTC()
	m.mu.Lock()
	defer m.mu.Unlock()
	i := m.iface(ifname)
	p := m.proto(ifname, ev.Protocol)
	p.record(now, ev)
	return i.observe(now, ev)
}

// iface returns the interface, registering an unknown one: events are never
// lost to a missing AddInterface.
func (m *Model) iface(name string) *iface {
	i, ok := m.ifaces[name]
	if !ok {
		i = &iface{desc: Interface{Name: name}, protos: map[string]*proto{}}
		m.ifaces[name] = i
	}
	if i.errorCount == nil {
		i.errorCount = map[string]uint64{}
		i.observed, i.staleSince, i.renumbered = map[string]*Observed{}, map[string]time.Time{}, map[string]uint64{}
	}
	return i
}

func (m *Model) proto(ifname, protocol string) *proto {
	i := m.iface(ifname)
	p, ok := i.protos[protocol]
	if !ok {
		p = newProto()
		i.protos[protocol] = p
	}
	return p
}

// iface is one interface's state.
type iface struct {
	desc       Interface
	protos     map[string]*proto
	errors     []ErrorRecord
	errorCount map[string]uint64
	// observed are the addresses the guest was seen using; staleSince, by
	// family ("4", "6"), when it was first seen using one not served here
	// and has not taken the served one since.
	observed   map[string]*Observed
	staleSince map[string]time.Time
	renumbered map[string]uint64 // by family
	lastBound  time.Time         // the last time the guest took a served address
}

// maxObserved bounds the addresses remembered per interface: the oldest
// seen goes first (a guest choosing its addresses at will cannot grow it).
const maxObserved = 16

// Renumbering is a change of a guest's renumbering state, for a log line:
// Stale is set when the guest is first seen using an address this pod does
// not serve; Converged when it took the served address after that, Took
// long after the first stale sighting.
type Renumbering struct {
	Family, Stale, Served string
	Converged             bool
	Took                  time.Duration
}

// observe notes the addresses ev shows the guest using.
func (i *iface) observe(now time.Time, ev Event) Renumbering {
	family := "6"
	if ev.Protocol == ProtoDHCPv4 {
		family = "4"
	}
	var r Renumbering
	if ev.Stale != "" {
		if i.note(now, ev.Stale, false) {
			r = Renumbering{Family: family, Stale: ev.Stale, Served: i.served(family)}
		}
		if _, ok := i.staleSince[family]; !ok {
			i.staleSince[family] = now
		}
	}
	if ev.Lease != nil && ev.Lease.State == LeaseBound {
		addr, _, _ := strings.Cut(ev.Lease.Address, "/")
		i.note(now, addr, true)
		i.lastBound = now
		if since, ok := i.staleSince[family]; ok {
			delete(i.staleSince, family)
			i.renumbered[family]++
			r = Renumbering{Family: family, Served: addr, Converged: true, Took: now.Sub(since)}
		}
	}
	return r
}

// note records addr as seen now; it reports whether addr is new.
func (i *iface) note(now time.Time, addr string, served bool) bool {
	if o, ok := i.observed[addr]; ok {
		o.LastSeen, o.Served = now, served
		return false
	}
	if len(i.observed) >= maxObserved {
		oldest := ""
		for a, o := range i.observed {
			if oldest == "" || o.LastSeen.Before(i.observed[oldest].LastSeen) {
				oldest = a
			}
		}
		delete(i.observed, oldest)
	}
	i.observed[addr] = &Observed{Address: addr, Served: served, FirstSeen: now, LastSeen: now}
	return true
}

// served is the address of family the interface offers.
func (i *iface) served(family string) string {
	if family == "4" {
		return i.desc.Offer.IPv4
	}
	return i.desc.Offer.IPv6
}

// counterKey labels dsbridge_packets_received_total.
type counterKey struct{ typ, outcome string }

// proto is one protocol's state on one interface.
type proto struct {
	running                bool
	lastRequest, lastReply recorded // zero Time: none yet
	lastDrop               recorded
	lease                  Lease // empty State: none yet
	received               map[counterKey]uint64
	replies                map[string]uint64
	drops                  map[string]uint64
	latency                histogram
}

// recorded is a Message as recorded, its XID and Peer perhaps not yet
// written out (Event.XIDNum, PeerAddr): message does it when the status is
// read.
type recorded struct {
	Message
	xid       uint32
	xidDigits int
	peer      netip.Addr
}

func newProto() *proto {
	return &proto{received: map[counterKey]uint64{}, replies: map[string]uint64{}, drops: map[string]uint64{},
		latency: newHistogram(latencyBuckets)}
}

func (p *proto) record(now time.Time, ev Event) {
	n := uint64(max(ev.Count, 1))
	msg := recorded{Message: Message{Time: now, XID: ev.XID, Peer: ev.Peer, Outcome: ev.Outcome, Reason: ev.Reason, Detail: ev.Detail},
		xid: ev.XIDNum, xidDigits: ev.XIDDigits, peer: ev.PeerAddr}
	if ev.Received {
		typ := ev.Request
		if typ == "" {
			typ = "unparsed"
		}
		p.received[counterKey{typ, ev.Outcome}] += n
		req := msg
		req.Type, req.Reply = typ, ev.Reply
		if ev.Latency > 0 {
			req.LatencyMicros = float64(ev.Latency.Nanoseconds()) / 1e3
			p.latency.observe(ev.Latency.Seconds())
		}
		p.lastRequest = req
	}
	if ev.Outcome == OutcomeDropped {
		p.drops[ev.Reason] += n
		d := msg
		d.Type = ev.Request
		if !ev.Received {
			d.Type = ev.Reply
		}
		p.lastDrop = d
	}
	if ev.Reply != "" && ev.Outcome != OutcomeDropped {
		p.replies[ev.Reply]++
		r := msg
		r.Type, r.Outcome, r.Request = ev.Reply, "", ev.Request
		p.lastReply = r
	}
	if ev.Lease != nil {
		l := *ev.Lease
		l.Since, l.Expires = now, nil
		if p.lease.State == l.State && p.lease.Address == l.Address && l.State != LeaseBound {
			l.Since = p.lease.Since // a repeated OFFER does not restart the state
		}
		p.lease = l
	}
}
