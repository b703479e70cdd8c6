package status

import (
	"sort"
	"time"

	"github.com/dsbridge/dsbridge/netsetup"
)

// Status is the /status document.
type Status struct {
	Version    string        `json:"version"`
	Commit     string        `json:"commit,omitempty"`
	Mode       string        `json:"mode"` // sidecar, serve, dhcp
	StartedAt  time.Time     `json:"startedAt"`
	Now        time.Time     `json:"now"`
	Tier       string        `json:"tier,omitempty"`
	VMI        *VMI          `json:"vmi,omitempty"`
	Interfaces []Interface   `json:"interfaces"`
	Errors     []ErrorRecord `json:"errors,omitempty"` // not tied to an interface
}

// VMI names the VirtualMachineInstance served.
type VMI struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// Interface is one VM interface: its plan, what is offered, and per
// protocol what was seen and answered.
type Interface struct {
	Name     string        `json:"name"`
	PodIface string        `json:"podIface,omitempty"`
	Tap      string        `json:"tap,omitempty"`
	Bridge   string        `json:"bridge,omitempty"`
	VMMAC    string        `json:"vmMAC"`
	Plan     netsetup.Plan `json:"plan"`
	Offer    Offer         `json:"offer"`
	Observed []Observed    `json:"observed,omitempty"` // addresses the guest was seen using
	Services []Service     `json:"services,omitempty"`
	Errors   []ErrorRecord `json:"errors,omitempty"`
}

// Offer is what the services hand to the guest.
type Offer struct {
	IPv4       string   `json:"ipv4,omitempty"`
	Gateway4   string   `json:"gateway4,omitempty"`
	ServerID   string   `json:"serverID,omitempty"`
	IPv6       string   `json:"ipv6,omitempty"`
	ServerDUID string   `json:"serverDUID,omitempty"`
	GatewayLLA string   `json:"gatewayLLA,omitempty"` // the RA source: the guest's IPv6 default router
	GatewayMAC string   `json:"gatewayMAC,omitempty"`
	RAMode     string   `json:"raMode,omitempty"`
	DNS        []string `json:"dns,omitempty"`
	Search     []string `json:"search,omitempty"`
	Hostname   string   `json:"hostname,omitempty"`
	MTU        int      `json:"mtu,omitempty"`
}

// Observed is an address the guest was seen using: the one served, or one
// it brought from another pod (after a live migration) and is told to give
// up.
type Observed struct {
	Address   string    `json:"address"`
	Served    bool      `json:"served"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
}

// Service is one protocol of one interface.
type Service struct {
	Protocol    string    `json:"protocol"`
	Running     bool      `json:"running"`
	Lease       *Lease    `json:"lease,omitempty"`
	LastRequest *Message  `json:"lastRequest,omitempty"`
	LastReply   *Message  `json:"lastReply,omitempty"`
	LastDrop    *Message  `json:"lastDrop,omitempty"`
	Received    []Counter `json:"received,omitempty"` // by message type and outcome
	Replies     []Counter `json:"replies,omitempty"`  // by message type
	Dropped     []Counter `json:"dropped,omitempty"`  // by reason
	Errors      uint64    `json:"errors,omitempty"`
}

// Message is one packet received or sent.
type Message struct {
	Time          time.Time `json:"time"`
	Type          string    `json:"type"`
	XID           string    `json:"xid,omitempty"`
	Peer          string    `json:"peer,omitempty"`
	Request       string    `json:"request,omitempty"` // for a reply: what it answered
	Reply         string    `json:"reply,omitempty"`   // for a request: what answered it
	Outcome       string    `json:"outcome,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	Detail        string    `json:"detail,omitempty"`
	LatencyMicros float64   `json:"latencyMicros,omitempty"`
}

// Lease is the guest's lease as the server's replies made it.
type Lease struct {
	State   string     `json:"state"`
	Address string     `json:"address"`
	Since   time.Time  `json:"since"`
	Seconds int64      `json:"seconds,omitempty"` // lease (valid) lifetime handed out
	Expires *time.Time `json:"expires,omitempty"`
}

// Counter is one counted combination of labels.
type Counter struct {
	Type    string `json:"type,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Count   uint64 `json:"count"`
}

// ErrorRecord is one error a service reported.
type ErrorRecord struct {
	Time    time.Time `json:"time"`
	Service string    `json:"service,omitempty"`
	Error   string    `json:"error"`
}

// protoOrder is the order services are listed in.
var protoOrder = map[string]int{ProtoDHCPv4: 0, ProtoDHCPv6: 1, ProtoRA: 2}

// Status returns the current document.
func (m *Model) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	doc := m.doc
	doc.Now = m.now().UTC()
	doc.VMI = clonePtr(m.doc.VMI)
	doc.Errors = append([]ErrorRecord(nil), m.doc.Errors...)
	doc.Interfaces = []Interface{}
	for _, name := range sortedKeys(m.ifaces) {
		doc.Interfaces = append(doc.Interfaces, m.ifaces[name].document())
	}
	return doc
}

func (i *iface) document() Interface {
	d := i.desc
	d.Errors = append([]ErrorRecord(nil), i.errors...)
	for _, a := range sortedKeys(i.observed) {
		d.Observed = append(d.Observed, *i.observed[a])
	}
	d.Services = nil
	names := sortedKeys(i.protos)
	sort.SliceStable(names, func(a, b int) bool { return rank(names[a]) < rank(names[b]) })
	for _, name := range names {
		p := i.protos[name]
		d.Services = append(d.Services, Service{
			Protocol: name, Running: p.running, Lease: p.leaseDocument(),
			LastRequest: message(p.lastRequest), LastReply: message(p.lastReply), LastDrop: message(p.lastDrop),
			Received: receivedCounters(p.received), Replies: labelCounters(p.replies, false),
			Dropped: labelCounters(p.drops, true), Errors: i.errorCount[name],
		})
	}
	return d
}

// leaseDocument is the lease with its expiry, or nil before any.
func (p *proto) leaseDocument() *Lease {
	if p.lease.State == "" {
		return nil
	}
	l := p.lease
	if l.Seconds > 0 && l.State == LeaseBound {
		exp := l.Since.Add(time.Duration(l.Seconds) * time.Second)
		l.Expires = &exp
	}
	return &l
}

// message is r's message with its XID and Peer written out, or nil when
// none was recorded.
func message(r recorded) *Message {
	if r.Time.IsZero() {
		return nil
	}
	m := r.Message
	if m.XID == "" && r.xidDigits > 0 {
		m.XID = formatXID(r.xid, r.xidDigits)
	}
	if m.Peer == "" && r.peer.IsValid() {
		m.Peer = r.peer.String()
	}
	return &m
}

func rank(proto string) int {
	if r, ok := protoOrder[proto]; ok {
		return r
	}
	return len(protoOrder)
}

func receivedCounters(m map[counterKey]uint64) []Counter {
	var out []Counter
	for k, n := range m {
		out = append(out, Counter{Type: k.typ, Outcome: k.outcome, Count: n})
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Type != out[b].Type {
			return out[a].Type < out[b].Type
		}
		return out[a].Outcome < out[b].Outcome
	})
	return out
}

func labelCounters(m map[string]uint64, reason bool) []Counter {
	var out []Counter
	for _, k := range sortedKeys(m) {
		c := Counter{Type: k, Count: m[k]}
		if reason {
			c = Counter{Reason: k, Count: m[k]}
		}
		out = append(out, c)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}
