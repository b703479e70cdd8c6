package e2e

import (
	"encoding/binary"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/mdlayher/ndp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

// The neighbour of an attack lab: a host on the pod's uplink side with a
// MAC and IPv4 address of its own, and a second link-local address that no
// EUI-64 derivation gives (the address a forged request names).
const (
	neighbourMAC = "0a:58:0a:10:00:99"
	neighbourIP4 = "10.16.0.99"
	chosenLLA    = "fe80::99:1"
)

// TestAttack runs every attack of issue 14 as a named row against a VM
// served in the unprivileged tier (the binding CNI's ADD, the managedTap
// layout, the sidecar as uid 107 with an empty capability set: UDP
// sockets behind the CNI's uplink guard) and in the root gate tier (the
// sidecar as root with NET_RAW: packet sockets on the tap), each row sent
// by the guest and by a neighbour on the uplink side: relayed DISCOVERs
// naming the gateway and an off-link host behind a proxy-ARP gateway as
// giaddr; DISCOVER and INFORM naming the neighbour, the off-link host and
// the VM itself as ciaddr; DHCPv6 Solicits and Relay-forwards from a
// non-EUI-64 link-local address, from a global address and from ports
// other than 546; a Solicit listing 150 IA_TA; and, from the neighbour, a
// 1,000/s flood of DISCOVERs with the VM's chaddr while a real dhclient
// starts in the guest.
//
// Every row asserts, on captures: no frame caused by dsbridge arrives at
// the gateway (lab.CausedFilter: nothing from the pod's bridge but
// KubeVirt's own frames, no server message, no ARP naming the VM's address
// for another MAC); the neighbour and the off-link host receive no server
// message; the guest gets exactly the replies its tier sends it, every
// DHCPv4 one from the server identifier; the gateway's neighbour entries
// for the VM's addresses keep the VM's MAC; the sidecar still runs. The
// flood row also asserts that dhclient got its lease within 2 s.
func TestAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("long end-to-end rows")
	}
	for _, tier := range []tierRow{unprivilegedTier(), rootGateTier()} {
		t.Run(tier.name, func(t *testing.T) {
			a := newAttackLab(t, tier)
			for _, row := range attackRows() {
				for _, from := range []sender{fromGuest, fromNeighbour} {
					if row.only != 0 && row.only != from {
						continue
					}
					t.Run(from.String()+"/"+row.name, func(t *testing.T) { a.run(t, row, from) })
				}
			}
			t.Run("neighbour/DISCOVER flood with the VM's chaddr while dhclient starts", a.flood)
			if tier.cni {
				t.Run("control: the neighbour's DISCOVER leaks once the CNI's programs are gone", a.unguarded)
			}
		})
	}
}

// sender is where a row's frames come from.
type sender int

const (
	fromGuest     sender = iota + 1 // the VM's port, the VM's MAC
	fromNeighbour                   // the uplink side, the neighbour's MAC
)

func (s sender) String() string {
	if s == fromGuest {
		return "guest"
	}
	return "neighbour"
}

// attackRow is one attack: the frames (chaddr and DUID always the VM's;
// Ethernet source the sender's), what to do before the captures start,
// and the DHCP server messages the guest's port gets from the guest's
// frames in each tier (none from the neighbour's).
type attackRow struct {
	name   string
	only   sender // 0: from both
	setup  func(t *testing.T, a *attackLab)
	frames func(a *attackLab, src frame.MAC) [][]byte
	// replies the guest's port gets when the guest sends the frames:
	// unprivileged (UDP transport) and root gate (packet transport).
	udp, packet int
	// check looks at the replies the guest got (tcpdump -n -e -v lines).
	check func(t *testing.T, a *attackLab, replies []string)
}

func attackRows() []attackRow {
	gw := netip.MustParseAddr("10.16.0.1")
	vm := netip.MustParseAddr("10.16.0.5")
	nb := netip.MustParseAddr(neighbourIP4)
	lla := netip.MustParseAddr(chosenLLA)
	// The UDP transport broadcasts every reply; the egress program also
	// gives the VM's port the RFC 2131 §4.1 unicast to ciaddr when the
	// reply carries one (an ACK to an INFORM; an OFFER's ciaddr is 0,
	// RFC 2131 table 3). The packet transport sends the unicast to the
	// VM's MAC.
	return []attackRow{
		{name: "relayed DISCOVER, giaddr the gateway", frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp4Frame(src, a.discover(func(m *dhcpv4.DHCPv4) { m.GatewayIPAddr, m.HopCount = gw.AsSlice(), 1 }))}
		}, udp: 0, packet: 1},
		{name: "relayed DISCOVER, giaddr off-link behind a proxy-ARP gateway", setup: proxyARP, frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp4Frame(src, a.discover(func(m *dhcpv4.DHCPv4) { m.GatewayIPAddr, m.HopCount = a.far.IPv4.AsSlice(), 1 }))}
		}, udp: 0, packet: 1},
		{name: "DISCOVER, ciaddr the neighbour", frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp4Frame(src, a.discover(func(m *dhcpv4.DHCPv4) { m.ClientIPAddr = nb.AsSlice() }))}
		}, udp: 1, packet: 1},
		{name: "DISCOVER, ciaddr off-link behind a proxy-ARP gateway", setup: proxyARP, frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp4Frame(src, a.discover(func(m *dhcpv4.DHCPv4) { m.ClientIPAddr = a.far.IPv4.AsSlice() }))}
		}, udp: 1, packet: 1},
		{name: "DISCOVER, ciaddr the VM's own", frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp4Frame(src, a.discover(func(m *dhcpv4.DHCPv4) { m.ClientIPAddr = vm.AsSlice() }))}
		}, udp: 1, packet: 1},
		{name: "INFORM, ciaddr the neighbour", frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp4Frame(src, a.inform(nb))}
		}, udp: 2, packet: 1},
		{name: "INFORM, ciaddr off-link behind a proxy-ARP gateway", setup: proxyARP, frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp4Frame(src, a.inform(a.far.IPv4))}
		}, udp: 2, packet: 1},
		{name: "INFORM, ciaddr the VM's own", frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp4Frame(src, a.inform(vm))}
		}, udp: 2, packet: 1},
		{name: "DISCOVER", only: fromNeighbour, frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp4Frame(src, a.discover(nil))}
		}},
		// The pod holds a neighbour entry for the chosen address (the
		// neighbour pinged the bridge from it), so a reply to it needs no
		// resolution: it leaves at once unless something stops it. The
		// UDP transport answers a link-local client; the egress program
		// drops the Advertise bound for the uplink, and the bridge also
		// floods it, addressed to the neighbour's MAC (learning is off on
		// the uplink port), to the VM's port, whose NIC drops it.
		{name: "Solicit from a non-EUI-64 link-local address", setup: primeChosenLLA, frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp6From(src, lla, 546, a.solicit(0))}
		}, udp: 1, packet: 1},
		{name: "Solicit from a global address", frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp6From(src, a.far.IPv6, 546, a.solicit(0))}
		}, udp: 0, packet: 1},
		{name: "Solicit from ports 547 and 10546", frames: func(a *attackLab, src frame.MAC) [][]byte {
			from := frame.LinkLocalFromMAC(src)
			return [][]byte{udp6From(src, from, 547, a.solicit(0)), udp6From(src, from, 10546, a.solicit(0))}
		}, udp: 0, packet: 2},
		{name: "Relay-forward from a non-EUI-64 link-local address", setup: primeChosenLLA, frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp6From(src, lla, 547, a.relayForward(lla))}
		}, udp: 0, packet: 1},
		{name: "Relay-forward from a global address", frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp6From(src, a.far.IPv6, 547, a.relayForward(a.far.IPv6))}
		}, udp: 0, packet: 1},
		{name: "Solicit", only: fromNeighbour, frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp6From(src, frame.LinkLocalFromMAC(src), 546, a.solicit(0))}
		}},
		{name: "Solicit with 150 IA_TA", frames: func(a *attackLab, src frame.MAC) [][]byte {
			return [][]byte{udp6From(src, frame.LinkLocalFromMAC(src), 546, a.solicit(150))}
		}, udp: 1, packet: 1, check: noAmplification},
	}
}

// attackLab is the standard lab served in one tier, with a neighbour on
// the uplink side and a host behind the gateway; the guest holds both
// leases and has reached both gateways, so the gateway has neighbour
// entries for the VM's addresses.
type attackLab struct {
	tier      tierRow
	l         *lab.Lab
	tr        *tierRun
	podMACs   []frame.MAC // the bridge's and the uplink's
	bridgeLLA netip.Addr
	nb        *lab.Lab // the neighbour, as newStranger makes it
	far       *lab.FarHost
	guest     *injector // frames out of the guest's NIC
	neighbour *injector // frames out of the neighbour's NIC
	dhclient4 *lab.Client
	xid       uint32
}

func newAttackLab(t *testing.T, tier tierRow) *attackLab {
	t.Helper()
	l := lab.NewLab(t, lab.KubeOVN)
	// T1 of an hour: no renewal adds a reply to a row's captures.
	tier.args = append(tier.args, "--renew-time", "1h")
	a := &attackLab{tier: tier, l: l, tr: startTier(t, l, tier), far: lab.NewFarHost(t, l)}
	bridge, uplink := "k6t-"+l.Spec.PodIface, l.Spec.PodIface+"-nic"
	a.podMACs = []frame.MAC{lab.LinkMAC(t, l.Pod, bridge)}
	if m := lab.LinkMAC(t, l.Pod, uplink); m != a.podMACs[0] {
		a.podMACs = append(a.podMACs, m)
	}
	a.bridgeLLA = lab.LinkLocal(t, l.Pod, bridge)
	a.nb = newStranger(t, l, neighbourMAC)
	a.nb.Guest.Run(t, "ip", "addr", "add", neighbourIP4+"/16", "dev", a.nb.GuestIf)
	a.nb.Guest.Run(t, "ip", "addr", "add", chosenLLA+"/64", "dev", a.nb.GuestIf, "nodad")
	a.nb.Guest.Run(t, "ip", "link", "set", a.nb.GuestIf, "up")
	a.neighbour = injectorIn(t, a.nb.Guest, a.nb.GuestIf)

	a.dhclient4 = l.Dhclient(t, "-4", "")
	l.Dhclient(t, "-6", "")
	waitAddrs(t, l, []string{"10.16.0.5/16", "fd00:10:16::5/128"}, 15*time.Second)
	waitDefault(t, l, "-6", l.GatewayLLA(), 10*time.Second)
	pingAll(t, l, 2, gatewayPings(l.Spec)...)
	a.guest = injectorIn(t, l.Guest, l.GuestIf)
	a.vmEntries(t) // the precondition every row keeps
	return a
}

// injectorIn opens a packet socket on dev in ns that only sends.
func injectorIn(t *testing.T, ns *lab.NS, dev string) *injector {
	t.Helper()
	var c *frame.PacketConn
	err := ns.Do(func() error {
		var err error
		c, err = frame.Listen(dev, frame.Filter{SrcMAC: frame.MAC{2, 0, 0, 0, 0, 0x99}, Kind: frame.KindDHCPv4})
		return err
	})
	if err != nil {
		t.Fatalf("packet socket on %s in %s: %v", dev, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &injector{c: c}
}

// captures are the row's views: the gateway's end of the uplink, the
// neighbour, the off-link host, and the VM's port (what the guest gets).
type captures struct {
	gateway, neighbour, far, toGuest *lab.Capture
}

func (a *attackLab) startCaptures(t *testing.T) captures {
	t.Helper()
	return captures{
		gateway:   lab.StartCapture(t, a.l.Node, a.l.NodeIf, lab.CausedFilter(a.podMACs, a.l.VMMAC(), netip.MustParseAddr("10.16.0.5"))),
		neighbour: lab.StartCapture(t, a.nb.Guest, a.nb.GuestIf, lab.ServerMessages),
		far:       lab.StartCapture(t, a.far.NS, a.far.If, lab.ServerMessages),
		// The guest sends no server message and no fragment: whatever
		// matches went to it. (No "outbound": on this bridge port it
		// misses the broadcasts the bridge floods out of it, tcpdump
		// 4.99.3 with libpcap 1.10.3 on Linux 6.18.)
		toGuest: lab.StartCapture(t, a.l.Pod, a.l.Tap, lab.DHCPReplies+" or "+lab.Fragments),
	}
}

// run sends row's frames from from and checks every view.
func (a *attackLab) run(t *testing.T, row attackRow, from sender) {
	if row.setup != nil {
		row.setup(t, a)
	}
	c := a.startCaptures(t)
	inj, src := a.guest, a.l.VMMAC()
	if from == fromNeighbour {
		inj, src = a.neighbour, frame.MustParseMAC(neighbourMAC)
	}
	for _, f := range row.frames(a, src) {
		inj.send(t, f)
	}
	// Long enough for the pod to resolve a chosen address (the first ARP
	// or NS leaves at once, proxy ARP answers at once) and send to it.
	time.Sleep(1500 * time.Millisecond)
	want := 0
	if from == fromGuest {
		want = map[bool]int{true: row.udp, false: row.packet}[a.tier.cni]
	}
	replies := a.check(t, c, want)
	if row.check != nil && from == fromGuest {
		row.check(t, a, replies)
	}
	if from == fromGuest {
		a.speak(t)
	}
}

// speak has the guest send from its own link-local address, as a VM
// does all the time: the CNI's egress program learns the VM's link-local
// address from whatever the VM's MAC sends from fe80::/64, and until then
// drops what a neighbour sends the pod from the address a row chose.
func (a *attackLab) speak(t *testing.T) {
	t.Helper()
	if out, err := a.l.Guest.Exec("ping", "-6", "-n", "-c", "1", "-W", "2", a.l.GatewayLLA()+"%"+a.l.GuestIf); err != nil {
		t.Fatalf("guest ping %s: %v\n%s", a.l.GatewayLLA(), err, out)
	}
}

// check stops the captures and asserts every view: nothing dsbridge
// caused at the gateway, nothing at the neighbour or the off-link host,
// want server messages at the guest's port (each DHCPv4 one from the
// server identifier), the gateway's entries for the VM, the sidecar up.
// It returns the guest's replies, decoded.
func (a *attackLab) check(t *testing.T, c captures, want int) []string {
	t.Helper()
	c.gateway.Stop(t)
	for _, p := range c.gateway.Packets(t) {
		// "time src > dst, ...": KubeVirt's bridge sends from its own MAC.
		if f := strings.Fields(p); len(f) < 2 || f[1] != a.podMACs[0].String() || !lab.BridgeOwn(p, a.bridgeLLA) {
			t.Errorf("reached the gateway: %s", p)
		}
	}
	for name, cap := range map[string]*lab.Capture{"neighbour": c.neighbour, "off-link host": c.far} {
		for _, p := range cap.Stop(t) {
			t.Errorf("the %s received: %s", name, p)
		}
	}
	replies := c.toGuest.Stop(t)
	if len(replies) != want {
		t.Errorf("the guest's port got %d server messages, want %d:\n%s", len(replies), want, strings.Join(replies, "\n"))
	}
	for _, p := range c.toGuest.Read(t, "-n") {
		if strings.Contains(p, "BOOTP/DHCP") && !strings.Contains(p, " "+serverID4+".67 > ") {
			t.Errorf("a DHCPv4 reply to the guest not from %s: %s", serverID4, p)
		}
	}
	a.vmEntries(t)
	select {
	case <-a.tr.proc.exited:
		t.Fatalf("the sidecar exited: %v", a.tr.proc.cmd.ProcessState)
	default:
	}
	return replies
}

// vmEntries checks the gateway's neighbour entries for the VM's addresses
// hold the VM's MAC.
func (a *attackLab) vmEntries(t *testing.T) {
	t.Helper()
	for _, addr := range []string{"10.16.0.5", "fd00:10:16::5"} {
		n, ok := lab.Neigh(t, a.l.Node, a.l.NodeIf, netip.MustParseAddr(addr))
		if !ok || n.LLAddr != a.l.Spec.MAC {
			t.Errorf("the gateway's neighbour entry for %s is %+v (present %t), want lladdr %s", addr, n, ok, a.l.Spec.MAC)
		}
	}
}

// proxyARP is a row's setup: the gateway answers ARP for the off-link
// host, as Calico's node does for every address it routes.
func proxyARP(t *testing.T, a *attackLab) { lab.ProxyARP(t, a.l.Node, a.l.NodeIf) }

// primeChosenLLA is a row's setup: the neighbour pings the bridge's
// link-local address from the chosen one, so the pod's stack holds a
// neighbour entry for it (from the neighbour's NS), and confirms it with a
// solicited NA, so the entry is REACHABLE: a reply to the chosen address
// leaves without resolution, and no NUD probe follows the ping into a
// later row's captures.
func primeChosenLLA(t *testing.T, a *attackLab) {
	t.Helper()
	dst := a.bridgeLLA.String() + "%" + a.nb.GuestIf
	if out, err := a.nb.Guest.Exec("ping", "-6", "-n", "-c", "1", "-W", "2", "-I", chosenLLA+"%"+a.nb.GuestIf, dst); err != nil {
		t.Fatalf("the neighbour cannot reach the bridge from %s: %v\n%s", chosenLLA, err, out)
	}
	nbMAC, lla := frame.MustParseMAC(neighbourMAC), netip.MustParseAddr(chosenLLA)
	na, err := ndp.MarshalMessage(&ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: lla,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: nbMAC.HardwareAddr()}}})
	if err != nil {
		t.Fatal(err)
	}
	a.neighbour.send(t, frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: a.podMACs[0], Src: nbMAC},
		Src: lla, Dst: a.bridgeLLA, HopLimit: 255, Payload: na}))
	lab.WaitFor(t, 2*time.Second, "the pod's REACHABLE entry for "+chosenLLA, func() bool {
		out := a.l.Pod.Run(t, "ip", "neigh", "show", chosenLLA)
		return strings.Contains(out, "lladdr "+neighbourMAC) && strings.Contains(out, "REACHABLE")
	})
}

// nextXID is a fresh transaction ID.
func (a *attackLab) nextXID() uint32 {
	a.xid++
	return 0xa7000000 | a.xid
}

// discover is a DISCOVER with the VM's chaddr, edited by edit.
func (a *attackLab) discover(edit func(*dhcpv4.DHCPv4)) []byte {
	m, err := dhcpv4.FromBytes(discoverPayload(a.l.VMMAC(), a.nextXID()))
	if err != nil {
		panic(err) // programmer invariant: discoverPayload is valid
	}
	if edit != nil {
		edit(m)
	}
	return m.ToBytes()
}

// inform is an INFORM with the VM's chaddr and ciaddr.
func (a *attackLab) inform(ciaddr netip.Addr) []byte {
	var id dhcpv4.TransactionID
	binary.BigEndian.PutUint32(id[:], a.nextXID())
	m, err := dhcpv4.NewInform(a.l.VMMAC().HardwareAddr(), net.IP(ciaddr.AsSlice()), dhcpv4.WithTransactionID(id))
	if err != nil {
		panic(err) // programmer invariant: constant, valid input
	}
	return m.ToBytes()
}

// solicit is a Solicit with the VM's DUID and n IA_TA besides its IA_NA.
func (a *attackLab) solicit(n int) []byte {
	m, err := dhcpv6.FromBytes(solicitPayload(a.l.VMMAC(), a.nextXID()))
	if err != nil {
		panic(err) // programmer invariant: solicitPayload is valid
	}
	for i := range n {
		m.AddOption(&dhcpv6.OptIATA{IaId: [4]byte{0, 0, byte(i >> 8), byte(i)}})
	}
	return m.ToBytes()
}

// relayForward is the VM's Solicit relayed by a relay agent at peer.
func (a *attackLab) relayForward(peer netip.Addr) []byte {
	m, err := dhcpv6.FromBytes(a.solicit(0))
	if err != nil {
		panic(err) // programmer invariant: solicit is valid
	}
	r, err := dhcpv6.EncapsulateRelay(m, dhcpv6.MessageTypeRelayForward, net.ParseIP("fd00:10:16::1"), net.IP(peer.AsSlice()))
	if err != nil {
		panic(err) // programmer invariant: a valid message encapsulates
	}
	return r.ToBytes()
}

// udp6From is a DHCPv6 client or relay message to ff02::1:2:547 from any
// source address and port.
func udp6From(mac frame.MAC, src netip.Addr, port uint16, payload []byte) []byte {
	return frame.AppendUDP6(nil, frame.UDP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(allDHCP6), Src: mac},
		Src: src, Dst: allDHCP6, SrcPort: port, DstPort: 547, HopLimit: 1, Payload: payload})
}

var frameLength = regexp.MustCompile(`, length (\d+):`)

// noAmplification checks the guest's one reply to the 150-IA_TA Solicit:
// at most 4 IA_TA answered, smaller than the Solicit, in one frame.
func noAmplification(t *testing.T, a *attackLab, replies []string) {
	t.Helper()
	request := len(udp6From(a.l.VMMAC(), frame.LinkLocalFromMAC(a.l.VMMAC()), 546, a.solicit(150)))
	for _, p := range replies {
		m := frameLength.FindStringSubmatch(p)
		if m == nil {
			t.Fatalf("no frame length in %q", p)
		}
		if n, _ := strconv.Atoi(m[1]); n >= request {
			t.Errorf("a %d-byte reply to a %d-byte Solicit: %s", n, request, p)
		}
		if n := strings.Count(p, "(IA_TA "); n > 4 {
			t.Errorf("the reply answers %d IA_TA, want at most 4: %s", n, p)
		}
	}
}

// flood: a neighbour sends 1,000 DISCOVERs a second with the VM's chaddr
// (each its own xid) while the guest's dhclient starts afresh; dhclient
// is bound within 2 s, and every view stays clean.
func (a *attackLab) flood(t *testing.T) {
	a.dhclient4.Kill()
	a.l.Guest.Run(t, "ip", "-4", "addr", "flush", "dev", a.l.GuestIf)
	c := a.startCaptures(t)
	frames := make([][]byte, 1000)
	for i := range frames {
		frames[i] = udp4Frame(frame.MustParseMAC(neighbourMAC), discoverPayload(a.l.VMMAC(), 0xf1000000|uint32(i)))
	}
	stop, done := make(chan struct{}), make(chan lab.PaceResult, 1)
	go func() { done <- lab.Pace(1000, frames, a.neighbour.c.WriteFrame, stop) }()
	time.Sleep(500 * time.Millisecond) // the flood is on before the client starts
	start := time.Now()
	cl := a.l.Dhclient(t, "-4", "")
	cl.Env(t, 10*time.Second, "BOUND")
	took := recordedAt(t, cl, "BOUND").Sub(start)
	time.Sleep(time.Second) // the flood goes on after the lease
	close(stop)
	res := <-done
	t.Logf("dhclient bound in %v during a flood of %d DISCOVERs in %v (%.0f/s, %d refused by the kernel)",
		took.Round(time.Millisecond), res.Attempted, res.Took.Round(time.Millisecond), res.Rate(), res.Failed)
	if took > 2*time.Second {
		t.Errorf("dhclient bound %v after it started, want within 2 s", took.Round(time.Millisecond))
	}
	if res.Rate() < 900 {
		t.Errorf("the flood ran at %.0f DISCOVERs/s, want 1,000", res.Rate())
	}
	a.check(t, c, 2) // OFFER and ACK
	waitAddrs(t, a.l, []string{"10.16.0.5/16", "fd00:10:16::5/128"}, 2*time.Second)
}

// unguarded is the control of the unprivileged tier's rows: with the
// CNI's uplink programs detached (as without the binding CNI), the
// neighbour's DISCOVER with the VM's chaddr reaches the sidecar, which
// takes every request on the bridge as the VM's, and its broadcast OFFER
// reaches the gateway and the neighbour: the captures see a leak when
// there is one.
func (a *attackLab) unguarded(t *testing.T) {
	for _, dir := range []string{"egress", "ingress"} {
		a.l.Pod.Run(t, "tc", "filter", "del", "dev", a.l.Spec.PodIface+"-nic", dir)
	}
	c := a.startCaptures(t)
	a.neighbour.send(t, udp4Frame(frame.MustParseMAC(neighbourMAC), a.discover(nil)))
	time.Sleep(1500 * time.Millisecond)
	for name, cp := range map[string]*lab.Capture{"gateway": c.gateway, "neighbour": c.neighbour} {
		cp.Stop(t)
		if got := cp.Read(t, "-n"); len(got) != 1 || !strings.Contains(got[0], serverID4+".67 > 255.255.255.255.68: BOOTP/DHCP, Reply") {
			t.Errorf("without the guard the %s got %q, want the OFFER from %s", name, got, serverID4)
		}
	}
	c.far.Stop(t)
	c.toGuest.Stop(t)
}
