package dhcp6

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// duidNamespace is the name-based UUID namespace (RFC 9562 §5.5) of dsbridge
// server DUIDs. Changing it changes every server's identity.
var duidNamespace = [16]byte{
	0x6b, 0x0e, 0x2c, 0x5a, 0x8f, 0x41, 0x4d, 0x3b,
	0x9a, 0x77, 0x1c, 0xd5, 0x02, 0xe8, 0x6f, 0x14,
}

// ServerDUID is the server DUID for the VMI with UID vmiUID on network (the
// VMI's network name): a DUID-UUID (RFC 6355) holding the version 5 UUID of
// "vmiUID/network". It depends on nothing of the pod, so the VM sees the same
// server after a sidecar restart and after live migration (RFC 8415 §16:
// clients address Request, Renew, Release and Decline to one server DUID).
func ServerDUID(vmiUID, network string) dhcpv6.DUID {
	h := sha1.New()
	h.Write(duidNamespace[:])
	h.Write([]byte(vmiUID + "/" + network))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return &dhcpv6.DUIDUUID{UUID: u}
}

// ParseDUID parses a DUID written as hex bytes, with or without ':' or '-'
// separators (as dhclient and dnsmasq print them), e.g. for a flag.
func ParseDUID(s string) (dhcpv6.DUID, error) {
	clean := strings.NewReplacer(":", "", "-", "").Replace(strings.TrimSpace(s))
	b, err := hex.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("failed to parse DUID %q: %w", s, err)
	}
	if len(b) < 3 || len(b) > 130 {
		return nil, fmt.Errorf("DUID %q is %d bytes long, not 3 to 130 (RFC 8415 §11.1)", s, len(b))
	}
	d, err := dhcpv6.DUIDFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("failed to parse DUID %q: %w", s, err)
	}
	return d, nil
}
