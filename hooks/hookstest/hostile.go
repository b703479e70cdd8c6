package hookstest

import (
	"bytes"
	"fmt"
	"strings"
)

// HostileInput is one OnDefineDomain request built to exhaust a sidecar.
type HostileInput struct {
	Name      string
	DomainXML []byte
	VMIJSON   []byte
	// Refusal is the error the hooks package answers it with, naming the
	// limit it exceeds (hooks/limits.go); empty when it is accepted.
	Refusal string
}

// The refusals, one per limit.
const (
	domainDepth   = "domain XML nests deeper than 64 elements (depth limit)"
	domainTokens  = "domain XML has more than 20000 tokens (token limit)"
	domainToken   = "domain XML has a token longer than 65536 bytes (token size limit)"
	vmiMembers    = "VMI JSON has an array or object with more than 4096 members (member limit)"
	vmiDepth      = "VMI JSON nests deeper than 64 arrays or objects (depth limit)"
	vmiNameLength = "VMI metadata.name is longer than 253 bytes (Kubernetes' limit)"
)

// MaxHostileSize keeps a request, with its protobuf framing, under gRPC's
// default maximum receive size (4 MiB), which the hook server keeps.
const MaxHostileSize = 3_900_000

// PodVMI is a minimal VMI binding its pod network to plugin "dsbridge".
const PodVMI = `{"metadata":{"name":"vm","namespace":"default","uid":"u1"},` +
	`"spec":{"domain":{"devices":{"interfaces":[{"name":"default","binding":{"name":"dsbridge"}}]}},` +
	`"networks":[{"name":"default","pod":{}}]}}`

// repeatTo repeats unit between prefix and suffix until the whole is about
// size bytes.
func repeatTo(prefix, unit, suffix string, size int) []byte {
	n := (size - len(prefix) - len(suffix)) / len(unit)
	var b bytes.Buffer
	b.Grow(len(prefix) + n*len(unit) + len(suffix))
	b.WriteString(prefix)
	for range n {
		b.WriteString(unit)
	}
	b.WriteString(suffix)
	return b.Bytes()
}

// numbered writes unit with %d replaced by 0, 1, ... (unique attribute and
// namespace names) until the whole is about size bytes.
func numbered(prefix, unit, suffix string, size int) []byte {
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(prefix)
	for i := 0; b.Len()+len(unit)+8+len(suffix) < size; i++ {
		fmt.Fprintf(&b, unit, i)
	}
	b.WriteString(suffix)
	return b.Bytes()
}

// nested is n open elements followed by their n end tags, inside <domain>.
func nested(n int) []byte {
	return []byte("<domain>" + strings.Repeat("<a>", n) + strings.Repeat("</a>", n) + "</domain>")
}

// HostileDomains are requests of about size bytes whose domain XML makes an
// unbounded XML scanner use time and memory in proportion to their size
// (the VMI is a valid one). At MaxHostileSize the nested document has 540k
// levels, the unclosed one 1.3M.
func HostileDomains(size int) []HostileInput {
	depth := 540_000 * size / MaxHostileSize
	size -= len(PodVMI)
	in := []HostileInput{
		{Name: "540k nested elements", DomainXML: nested(depth), Refusal: domainDepth},
		{Name: "1.3M unclosed elements", DomainXML: repeatTo("<domain>", "<a>", "", size), Refusal: domainDepth},
		{Name: "flat elements", DomainXML: repeatTo("<domain>", "<a/>", "</domain>", size), Refusal: domainTokens},
		{Name: "flat interfaces", DomainXML: repeatTo("<domain><devices>", "<interface/>", "</devices></domain>", size), Refusal: domainTokens},
		{Name: "interface children", DomainXML: repeatTo(`<domain><devices><interface type="ethernet">`, "<a/>", "</interface></devices></domain>", size), Refusal: domainTokens},
		{Name: "long attribute value", DomainXML: repeatTo(`<domain><devices><interface><alias name="`, "x", `"/></interface></devices></domain>`, size), Refusal: domainToken},
		{Name: "many attributes", DomainXML: numbered("<domain", ` a%d=""`, "/>", size), Refusal: domainToken},
		{Name: "many namespaces", DomainXML: numbered("<domain", ` xmlns:n%d="u"`, "/>", size), Refusal: domainToken},
		{Name: "long text", DomainXML: repeatTo("<domain>", "x", "</domain>", size), Refusal: domainToken},
		{Name: "long comment", DomainXML: repeatTo("<domain><!--", "x", "--></domain>", size), Refusal: domainToken},
	}
	for i := range in {
		in[i].VMIJSON = []byte(PodVMI)
	}
	return in
}

// HostileVMIs are requests of about size bytes whose VMI JSON makes an
// unbounded JSON decoder allocate far more than its size (the domain is
// domainXML).
func HostileVMIs(domainXML []byte, size int) []HostileInput {
	size -= len(domainXML)
	in := []HostileInput{
		{Name: "interfaces array", VMIJSON: repeatTo(`{"spec":{"domain":{"devices":{"interfaces":[{}`, `,{}`, `]}}}}`, size), Refusal: vmiMembers},
		{Name: "networks array", VMIJSON: repeatTo(`{"spec":{"networks":[{}`, `,{}`, `]}}`, size), Refusal: vmiMembers},
		{Name: "status interfaces array", VMIJSON: repeatTo(`{"status":{"interfaces":[{}`, `,{}`, `]}}`, size), Refusal: vmiMembers},
		{Name: "private options array", VMIJSON: repeatTo(`{"spec":{"domain":{"devices":{"interfaces":[{"dhcpOptions":{"privateOptions":[{}`, `,{}`, `]}}]}}}}`, size), Refusal: vmiMembers},
		{Name: "resource requests map", VMIJSON: numbered(`{"spec":{"domain":{"resources":{"requests":{"x":0`, `,"%d":0`, `}}}}}`, size), Refusal: vmiMembers},
		{Name: "deep arrays", VMIJSON: repeatTo(`{"x":`, `[`, ``, size), Refusal: vmiDepth},
		{Name: "long string", VMIJSON: repeatTo(`{"metadata":{"name":"`, `x`, `"}}`, size), Refusal: vmiNameLength},
	}
	for i := range in {
		in[i].DomainXML = domainXML
	}
	return in
}

// LargestAccepted is a request of about size bytes within every limit of
// the hook server: a domain of 60,000-byte <metadata> texts that a sidecar
// must scan, edit and send back whole.
func LargestAccepted(size int) HostileInput {
	const text = 60_000
	var b strings.Builder
	b.WriteString("<domain>\n  <metadata>\n")
	for b.Len()+text+200+len(PodVMI) < size {
		b.WriteString("    <x:note xmlns:x=\"urn:x\">" + strings.Repeat("n", text) + "</x:note>\n")
	}
	b.WriteString("  </metadata>\n  <devices>\n  </devices>\n</domain>\n")
	return HostileInput{Name: "largest accepted", DomainXML: []byte(b.String()), VMIJSON: []byte(PodVMI)}
}
