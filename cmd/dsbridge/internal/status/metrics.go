package status

import (
	"bufio"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// ContentType is the Prometheus text exposition format served on /metrics.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// latencyBuckets are the upper bounds, in seconds, of the handler latency
// histogram: a reply is due in well under a millisecond.
var latencyBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1}

// histogram counts observations in cumulative buckets.
type histogram struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	count  uint64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v: le is inclusive
	h.counts[i]++
	h.sum += v
	h.count++
}

// Metric families, with their help text. Every name starts with dsbridge_.
const (
	helpInfo = "Build of the running dsbridge: always 1, the version and commit are labels."
	helpUp   = "Unix time in seconds at which this dsbridge process started."
	helpSvc  = "Whether a service of a VM interface is running (1) or not (0). " +
		"A service the plan does not allow is absent; see dsbridge status for why."
	helpRecv = "Packets dsbridge received from the VM, by interface, protocol (dhcpv4, dhcpv6, ra), " +
		"message type (DISCOVER, REQUEST, SOLICIT, RS, ARP, ...; unparsed when it could not be decoded) and outcome: " +
		"replied (an answer was sent), unanswered (valid, but the RFC says not to answer, e.g. RELEASE), " +
		"accepted (a valid router solicitation; the RA it causes is counted in dsbridge_replies_sent_total), " +
		"dropped (refused; dsbridge_packets_dropped_total says why)."
	helpSent = "Packets dsbridge sent to the VM, by interface, protocol and message type " +
		"(OFFER, ACK, NAK, ADVERTISE, REPLY, ARP reply, RA; RAs include the unsolicited ones)."
	helpDrop = "Packets from the VM dsbridge did not answer, and replies it failed to send, by interface, protocol and reason " +
		"(foreign-client: not the VM; rate-limited: the guest floods; malformed; not-for-server; other-server: " +
		"the guest chose another DHCP server; send-failed: the write to the tap failed; ...)."
	helpLat = "Time from reading a request to writing its reply (or deciding not to), in seconds, by interface and protocol. " +
		"Router advertisements are scheduled, not timed here."
	helpLease = "Whether the guest holds the address the server handed out (1: the last reply bound it; 0: offered, " +
		"refused, released or declined), by interface and protocol."
	helpErr   = "Errors a service reported (a stopped service, a failed send), by interface and service."
	helpStale = "Addresses the guest was seen using that this pod does not serve (brought from another pod by a live migration, " +
		"not yet given up), by interface."
	helpRenum = "Times the guest took the served address after being seen using one this pod does not serve, by interface and family."
)

// WriteMetrics writes every metric in the Prometheus text format 0.0.4.
func (m *Model) WriteMetrics(w io.Writer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	bw := bufio.NewWriter(w)
	e := &expo{w: bw}
	e.family("dsbridge_build_info", "gauge", helpInfo)
	e.sample("dsbridge_build_info", labels{{"version", m.doc.Version}, {"commit", m.doc.Commit}, {"mode", m.doc.Mode}}, 1)
	e.family("dsbridge_start_time_seconds", "gauge", helpUp)
	e.sample("dsbridge_start_time_seconds", nil, float64(m.doc.StartedAt.UnixNano())/1e9)
	names := sortedKeys(m.ifaces)
	m.each(e, names, "dsbridge_service_up", "gauge", helpSvc, func(l labels, p *proto, _ *iface) {
		e.sample("dsbridge_service_up", serviceLabels(l), b2f(p.running))
	})
	m.each(e, names, "dsbridge_packets_received_total", "counter", helpRecv, func(l labels, p *proto, _ *iface) {
		keys := make([]counterKey, 0, len(p.received))
		for k := range p.received {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(a, b int) bool {
			return keys[a].typ < keys[b].typ || keys[a].typ == keys[b].typ && keys[a].outcome < keys[b].outcome
		})
		for _, k := range keys {
			e.sample("dsbridge_packets_received_total", l.with("type", k.typ).with("outcome", k.outcome), float64(p.received[k]))
		}
	})
	m.each(e, names, "dsbridge_replies_sent_total", "counter", helpSent, func(l labels, p *proto, _ *iface) {
		for _, k := range sortedKeys(p.replies) {
			e.sample("dsbridge_replies_sent_total", l.with("type", k), float64(p.replies[k]))
		}
	})
	m.each(e, names, "dsbridge_packets_dropped_total", "counter", helpDrop, func(l labels, p *proto, _ *iface) {
		for _, k := range sortedKeys(p.drops) {
			e.sample("dsbridge_packets_dropped_total", l.with("reason", k), float64(p.drops[k]))
		}
	})
	m.each(e, names, "dsbridge_handler_latency_seconds", "histogram", helpLat, func(l labels, p *proto, _ *iface) {
		if p.latency.count > 0 {
			e.histogram("dsbridge_handler_latency_seconds", l, &p.latency)
		}
	})
	m.each(e, names, "dsbridge_lease_bound", "gauge", helpLease, func(l labels, p *proto, _ *iface) {
		if p.lease.State != "" {
			e.sample("dsbridge_lease_bound", l, b2f(p.lease.State == LeaseBound))
		}
	})
	m.each(e, names, "dsbridge_service_errors_total", "counter", helpErr, func(l labels, p *proto, i *iface) {
		e.sample("dsbridge_service_errors_total", serviceLabels(l), float64(i.errorCount[l[1].v]))
	})
	e.family("dsbridge_stale_addresses", "gauge", helpStale)
	for _, n := range names {
		stale := 0
		for _, o := range m.ifaces[n].observed {
			if !o.Served && o.LastSeen.After(m.ifaces[n].lastBound) {
				stale++
			}
		}
		e.sample("dsbridge_stale_addresses", labels{{"interface", n}}, float64(stale))
	}
	e.family("dsbridge_renumbered_total", "counter", helpRenum)
	for _, n := range names {
		for _, f := range []string{"4", "6"} {
			e.sample("dsbridge_renumbered_total", labels{{"interface", n}, {"family", f}}, float64(m.ifaces[n].renumbered[f]))
		}
	}
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

// each writes one family's header and calls fn for every interface and
// protocol, with the labels interface and protocol.
func (m *Model) each(e *expo, names []string, name, typ, help string, fn func(labels, *proto, *iface)) {
	e.family(name, typ, help)
	for _, n := range names {
		i := m.ifaces[n]
		protos := sortedKeys(i.protos)
		sort.SliceStable(protos, func(a, b int) bool { return rank(protos[a]) < rank(protos[b]) })
		for _, pn := range protos {
			fn(labels{{"interface", n}, {"protocol", pn}}, i.protos[pn], i)
		}
	}
}

// serviceLabels turns the labels interface, protocol into interface, service.
func serviceLabels(l labels) labels { return labels{{"interface", l[0].v}, {"service", l[1].v}} }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type label struct{ k, v string }

type labels []label

// with returns a copy of l with k=v appended.
func (l labels) with(k, v string) labels {
	return append(append(labels(nil), l...), label{k, v})
}

// expo writes the text format; the first write error sticks.
type expo struct {
	w   *bufio.Writer
	err error
}

func (e *expo) write(parts ...string) {
	for _, s := range parts {
		if e.err == nil {
			_, e.err = e.w.WriteString(s)
		}
	}
}

func (e *expo) family(name, typ, help string) {
	e.write("# HELP ", name, " ", escapeHelp(help), "\n# TYPE ", name, " ", typ, "\n")
}

func (e *expo) sample(name string, l labels, v float64) {
	e.write(name)
	if len(l) > 0 {
		e.write("{")
		for i, lb := range l {
			if i > 0 {
				e.write(",")
			}
			e.write(lb.k, `="`, escapeLabel(lb.v), `"`)
		}
		e.write("}")
	}
	e.write(" ", formatFloat(v), "\n")
}

func (e *expo) histogram(name string, l labels, h *histogram) {
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		e.sample(name+"_bucket", l.with("le", formatFloat(b)), float64(cum))
	}
	e.sample(name+"_bucket", l.with("le", "+Inf"), float64(h.count))
	e.sample(name+"_sum", l, h.sum)
	e.sample(name+"_count", l, float64(h.count))
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }
