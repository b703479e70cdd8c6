package serve

import (
	"fmt"
	"net/netip"
	"time"
)

// Outcome is what became of a packet.
type Outcome uint8

// Outcomes.
const (
	// Replied: an answer was sent (or, with no request, a packet on the
	// service's own schedule, such as an unsolicited RA).
	Replied Outcome = iota + 1
	// Unanswered: a valid request the protocol says not to answer
	// (RELEASE, DECLINE, a REQUEST for another server).
	Unanswered
	// Accepted: a valid request answered on the service's own schedule (an
	// RS: the RA follows after a random delay, RFC 4861 §6.2.6).
	Accepted
	// Dropped: refused; Reason says why.
	Dropped
)

func (o Outcome) String() string {
	switch o {
	case Replied:
		return "replied"
	case Unanswered:
		return "unanswered"
	case Accepted:
		return "accepted"
	case Dropped:
		return "dropped"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Reason is why a packet got no answer: a short, bounded label (a metrics
// label value). Event.Detail says more for a person.
type Reason string

// Reasons.
const (
	// NotVM: the sender is not the VM, or not provably.
	NotVM Reason = "not-vm"
	// NotForServer: addressed to another host, port or interface, or a
	// reply to it would have to go where the packet chose.
	NotForServer Reason = "not-for-server"
	// OtherServer: for another server identifier (the guest chose another
	// server's offer, RFC 2131 §4.3.2; RFC 8415 §16).
	OtherServer Reason = "other-server"
	// Malformed: not a parsable request of the protocol.
	Malformed Reason = "malformed"
	// NotRequest: a valid message that is not a client's request.
	NotRequest Reason = "not-request"
	// RateLimited: over the server's rate limit.
	RateLimited Reason = "rate-limited"
	// Panic: handling it panicked (recovered).
	Panic Reason = "panic"
	// SendFailed: the reply could not be sent.
	SendFailed Reason = "send-failed"
)

// Event is what a service reports for one packet.
type Event struct {
	// Request is the received message's type ("DISCOVER", "SOLICIT", "RS",
	// "ARP"); "" when nothing was received or it could not be decoded.
	Request string
	// Reply is the sent message's type; "" when nothing was sent.
	Reply string
	// XID is the request's transaction ID (24 bits in DHCPv6).
	XID uint32
	// Outcome and, for Dropped and Unanswered, Reason and Detail.
	Outcome Outcome
	Reason  Reason
	Detail  string
	// Peer is the VM's address the packet came from or went to.
	Peer netip.Addr
	// Stale is an address the packet shows the guest still uses and this
	// server does not serve (after a live migration to a pod with other
	// addresses); invalid when there is none.
	Stale netip.Addr
	// Latency is the time from the end of the read to the end of the write
	// (or to the decision not to answer).
	Latency time.Duration
	// Count is how many packets alike the event stands for (rate-limited
	// ones counted together); 0 means one.
	Count int
}

// Drop is the Event of a refused packet.
func Drop(r Reason, detail string) Event {
	return Event{Outcome: Dropped, Reason: r, Detail: detail}
}
