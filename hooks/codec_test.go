package hooks

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dsbridge/dsbridge/hooks/proto/v1alpha2"
	"github.com/dsbridge/dsbridge/hooks/proto/v1alpha3"
)

// wire builds a protobuf message from (field, wire type, value) parts.
func wire(parts ...func([]byte) []byte) []byte {
	var b []byte
	for _, p := range parts {
		b = p(b)
	}
	return b
}

func bytesField(num protowire.Number, v string) func([]byte) []byte {
	return func(b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), []byte(v))
	}
}

func varintField(num protowire.Number, v uint64) func([]byte) []byte {
	return func(b []byte) []byte {
		return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
	}
}

// splitBuffers cuts b into BufferSlice pieces of n bytes, as gRPC's
// transport hands a message over frame by frame.
func splitBuffers(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > n {
		s = append(s, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	return append(s, mem.SliceBuffer(b))
}

// checkCodecAgrees decodes msg with hookCodec and with proto.Unmarshal and
// compares the two fields (and the error, present or not) of both versions.
func checkCodecAgrees(t *testing.T, msg []byte) {
	t.Helper()
	c := newHookCodec()
	for _, pair := range []struct {
		got, want interface {
			proto.Message
			GetDomainXML() []byte
			GetVmi() []byte
		}
	}{
		{&v1alpha3.OnDefineDomainParams{}, &v1alpha3.OnDefineDomainParams{}},
		{&v1alpha2.OnDefineDomainParams{}, &v1alpha2.OnDefineDomainParams{}},
	} {
		gotErr := c.Unmarshal(splitBuffers(msg, 7), pair.got)
		wantErr := proto.Unmarshal(msg, pair.want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%T: error %v, proto.Unmarshal's %v", pair.got, gotErr, wantErr)
		}
		if gotErr != nil {
			continue
		}
		if !bytes.Equal(pair.got.GetDomainXML(), pair.want.GetDomainXML()) || !bytes.Equal(pair.got.GetVmi(), pair.want.GetVmi()) {
			t.Fatalf("%T: got %q/%q, proto.Unmarshal %q/%q", pair.got, pair.got.GetDomainXML(), pair.got.GetVmi(),
				pair.want.GetDomainXML(), pair.want.GetVmi())
		}
	}
}

// TestHookCodec: the aliasing decoder reads OnDefineDomainParams exactly as
// proto.Unmarshal does.
func TestHookCodec(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
	}{
		{"empty", nil},
		{"both fields", wire(bytesField(1, "<domain/>"), bytesField(2, `{"spec":{}}`))},
		{"reversed", wire(bytesField(2, "{}"), bytesField(1, "<domain/>"))},
		{"repeated field: last wins", wire(bytesField(1, "first"), bytesField(1, "second"))},
		{"unknown fields skipped", wire(varintField(7, 300), bytesField(9, "x"), bytesField(1, "<domain/>"))},
		{"wrong wire type for a known field", wire(varintField(1, 5), bytesField(2, "{}"))},
		{"empty bytes", wire(bytesField(1, ""))},
		{"truncated length", wire(bytesField(1, "<domain/>"))[:5]},
		{"bad tag", []byte{0x80}},
		{"field number 0", []byte{0x02, 0x00}},
		// Found by FuzzHookCodec (testdata/fuzz/FuzzHookCodec/db2690ee3bac5fa9).
		{"field number above 2^29-1", []byte("\xad\xad\xad\xad00000")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkCodecAgrees(t, tt.msg) })
	}
}

// FuzzHookCodec: on any bytes, the aliasing decoder and proto.Unmarshal
// agree.
func FuzzHookCodec(f *testing.F) {
	f.Add(wire(bytesField(1, "<domain/>"), bytesField(2, `{"spec":{}}`)))
	f.Add(wire(varintField(7, 300), bytesField(1, "a"), bytesField(1, "b")))
	f.Add([]byte{0x0a, 0x80})
	f.Fuzz(func(t *testing.T, msg []byte) { checkCodecAgrees(t, msg) })
}
