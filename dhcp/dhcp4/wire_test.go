package dhcp4

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// withOptionBytes is req's wire form with its options replaced by opts
// (END not included).
func withOptionBytes(t testing.TB, opts ...byte) []byte {
	t.Helper()
	b := newRequest(t, dhcpv4.MessageTypeDiscover).ToBytes()
	return append(append(b[:offCookie+4:offCookie+4], opts...), optEnd)
}

// TestParseOptions: option instances concatenate in order (RFC 3396
// section 7), pads are skipped, bytes after END are ignored, and a message
// without END or with an option running past its end is refused.
func TestParseOptions(t *testing.T) {
	t.Parallel()
	long := bytes.Repeat([]byte{0xab}, 255)
	tests := []struct {
		name string
		in   []byte
		want map[uint8][]byte // nil: refused
	}{
		{"one of each", withOptionBytes(t, 53, 1, 1, 61, 3, 1, 2, 3),
			map[uint8][]byte{53: {1}, 61: {1, 2, 3}}},
		{"split client identifier", withOptionBytes(t, 61, 2, 1, 2, 53, 1, 3, 61, 1, 3),
			map[uint8][]byte{53: {3}, 61: {1, 2, 3}}},
		{"two split options", withOptionBytes(t, append(append(append([]byte{82, 255}, long...), 61, 1, 9, 82, 1, 7, 61, 1, 8), 0, 0)...),
			map[uint8][]byte{61: {9, 8}, 82: append(bytes.Clone(long), 7)}},
		{"empty option", withOptionBytes(t, 55, 0), map[uint8][]byte{55: {}}},
		{"pads", withOptionBytes(t, 0, 0, 53, 1, 1, 0), map[uint8][]byte{53: {1}}},
		{"after END", append(withOptionBytes(t, 53, 1, 1), 61, 200, 1), map[uint8][]byte{53: {1}}},
		{"no END", withOptionBytes(t, 53, 1, 1)[:offCookie+7], nil},
		{"option past the end", withOptionBytes(t, 53, 1, 1, 61, 9, 1)[:offCookie+11], nil},
		{"length byte missing", withOptionBytes(t, 53, 1, 1, 61)[:offCookie+8], nil},
		{"no cookie", withOptionBytes(t)[:offCookie+2], nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m message
			err := m.parse(tt.in)
			if tt.want == nil {
				if err == nil {
					t.Fatal("parse accepted it")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[uint8][]byte{}
			for c := range 255 {
				if v, ok := m.option(uint8(c)); ok {
					got[uint8(c)] = v
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParse: message.parse accepts exactly what insomniacslk/dhcp's
// FromBytes accepts, and reads the same fields and options.
func FuzzParse(f *testing.F) {
	for _, r := range seedRequests(f) {
		f.Add(r.ToBytes())
	}
	f.Add(withOptionBytes(f, 61, 2, 1, 2, 53, 1, 3, 61, 1, 3))
	var m message
	f.Fuzz(func(t *testing.T, b []byte) {
		lib, libErr := dhcpv4.FromBytes(b)
		err := m.parse(b)
		if (err == nil) != (libErr == nil) {
			t.Fatalf("parse error %v, FromBytes error %v", err, libErr)
		}
		if err != nil {
			return
		}
		if m.op() != byte(lib.OpCode) || m.htype() != byte(lib.HWType) || m.xid() != lib.TransactionID ||
			m.flags() != lib.Flags || !bytes.Equal(m.chaddr(), lib.ClientHWAddr) ||
			m.ciaddr() != netip.AddrFrom4([4]byte(lib.ClientIPAddr.To4())) ||
			m.giaddr() != netip.AddrFrom4([4]byte(lib.GatewayIPAddr.To4())) ||
			m.messageType() != byte(lib.MessageType()) {
			t.Fatalf("fields differ from FromBytes': %s", lib.Summary())
		}
		for c := range 255 {
			v, ok := m.option(uint8(c))
			lv, lok := lib.Options[uint8(c)]
			if ok != lok || !bytes.Equal(v, lv) {
				t.Fatalf("option %d: %v %v, FromBytes: %v %v", c, v, ok, lv, lok)
			}
		}
	})
}

// TestSortOptions: a reply's options in code order, options of one code in
// the order they were set.
func TestSortOptions(t *testing.T) {
	t.Parallel()
	v := func(s string) []byte { return []byte(s) }
	tests := []struct{ in, want []kv }{
		{nil, nil},
		{[]kv{{53, v("a")}}, []kv{{53, v("a")}}},
		{[]kv{{1, v("a")}, {3, v("b")}, {6, v("c")}}, []kv{{1, v("a")}, {3, v("b")}, {6, v("c")}}},
		{[]kv{{54, v("a")}, {51, v("b")}, {1, v("c")}, {53, v("d")}}, []kv{{1, v("c")}, {51, v("b")}, {53, v("d")}, {54, v("a")}}},
		{[]kv{{121, v("x")}, {3, v("a")}, {121, v("y")}, {3, v("b")}}, []kv{{3, v("a")}, {3, v("b")}, {121, v("x")}, {121, v("y")}}},
	}
	for _, tt := range tests {
		got := append([]kv(nil), tt.in...)
		sortOptions(got)
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(kv{})); diff != "" {
			t.Errorf("sortOptions(%v) (-want +got):\n%s", tt.in, diff)
		}
	}
}
