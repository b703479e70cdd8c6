package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/mdlayher/ndp"
)

// TestUpstreamRADifferentFlags: when the cluster's own router advertises
// from the gateway's link-local address with flags that differ from
// dsbridge's (here SLAAC: M=0, A=1, as OVN's "slaac" mode), dsbridge warns
// once, however many such RAs arrive.
func TestUpstreamRADifferentFlags(t *testing.T) {
	l := lab.NewLab(t, lab.KubeOVN)
	s := serve(t, l, "")
	gwMAC := frame.MustParseMAC(l.Spec.NodeMAC)
	var tx *frame.PacketConn
	if err := l.Node.Do(func() (err error) {
		tx, err = frame.Listen(l.NodeIf, frame.Filter{SrcMAC: gwMAC, Kind: frame.KindICMPv6})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	ra := &ndp.RouterAdvertisement{CurrentHopLimit: 64, RouterLifetime: 1800 * time.Second, Options: []ndp.Option{
		&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: gwMAC.HardwareAddr()},
		&ndp.PrefixInformation{PrefixLength: 112, OnLink: true, AutonomousAddressConfiguration: true,
			ValidLifetime: time.Hour, PreferredLifetime: time.Hour, Prefix: netip.MustParseAddr("fd00:10:16::")},
	}}
	msg, err := ndp.MarshalMessage(ra)
	if err != nil {
		t.Fatal(err)
	}
	all := netip.MustParseAddr("ff02::1")
	f := frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(all), Src: gwMAC},
		Src: netip.MustParseAddr(l.GatewayLLA()), Dst: all, HopLimit: 255, Payload: msg})
	for range 3 {
		if err := tx.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	const warning = "the gateway's own router advertisements differ from dsbridge's"
	lab.WaitFor(t, 5*time.Second, "dsbridge to warn about the upstream RA", func() bool {
		return strings.Contains(s.out.String(), warning)
	})
	time.Sleep(300 * time.Millisecond)
	if n := strings.Count(s.out.String(), warning); n != 1 {
		t.Errorf("warned %d times about 3 differing upstream RAs, want once", n)
	}
}
