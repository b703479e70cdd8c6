package hooks

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dsbridge/dsbridge/hooks/proto/v1alpha2"
	"github.com/dsbridge/dsbridge/hooks/proto/v1alpha3"
)

// Field numbers of OnDefineDomainParams (v1alpha2 and v1alpha3 alike).
const (
	fieldDomainXML protowire.Number = 1
	fieldVMI       protowire.Number = 2
)

// hookCodec is gRPC's protobuf codec, except that an OnDefineDomainParams
// keeps its two byte fields inside one copy of the message. gRPC's codec
// copies the received frames into one buffer and proto.Unmarshal copies
// each bytes field again: three copies of a message of up to
// maxHookMessageBytes alive at once, where this keeps two.
type hookCodec struct {
	encoding.CodecV2 // gRPC's "proto" codec, for everything else
}

func newHookCodec() hookCodec {
	return hookCodec{CodecV2: encoding.GetCodecV2("proto")}
}

// Unmarshal implements encoding.CodecV2.
func (c hookCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *v1alpha3.OnDefineDomainParams:
		proto.Reset(m)
		return aliasBytesFields(data.Materialize(), &m.DomainXML, &m.Vmi)
	case *v1alpha2.OnDefineDomainParams:
		proto.Reset(m)
		return aliasBytesFields(data.Materialize(), &m.DomainXML, &m.Vmi)
	}
	return c.CodecV2.Unmarshal(data, v)
}

// aliasBytesFields decodes a message whose fields are domainXML (1) and vmi
// (2), both bytes, pointing them into b (which must not be reused) as
// proto.Unmarshal would fill them: the last occurrence wins; unknown fields
// and fields of another wire type are skipped.
func aliasBytesFields(b []byte, domainXML, vmi *[]byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("failed to decode OnDefineDomainParams: %w", protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber {
			return fmt.Errorf("failed to decode OnDefineDomainParams: field number %d out of range", num)
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldDomainXML || num == fieldVMI) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("failed to decode OnDefineDomainParams field %d: %w", num, protowire.ParseError(n))
			}
			if num == fieldDomainXML {
				*domainXML = v[:len(v):len(v)]
			} else {
				*vmi = v[:len(v):len(v)]
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("failed to decode OnDefineDomainParams field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}
