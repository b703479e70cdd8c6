package hooks

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Bounds on what OnDefineDomain's input may make the sidecar do. The
// sidecar's container limit is 64 MB and a sidecar killed for exceeding it
// is never restarted (the virt-launcher pod has restartPolicy Never,
// KubeVirt pkg/virt-controller/services/template.go),
// so work and memory must not grow with what an input can make a parser
// keep: nesting (encoding/xml keeps every open element), element count,
// one token's size, and JSON arrays decoded into slices. gRPC already caps
// the whole message at maxHookMessageBytes.
const (
	// maxHookMessageBytes is the largest request the hook server reads:
	// gRPC's default receive limit, stated (a larger one is refused with
	// ResourceExhausted before it is read). virt-launcher's client keeps
	// gRPC's defaults too (4 MiB for the reply); a real domain XML and VMI
	// together are under 100 KB. Receiving one costs about twice its size
	// (the frames and one copy, hookCodec).
	maxHookMessageBytes = 4 << 20

	// maxDomainDepth: a KubeVirt domain nests at most 6 levels
	// (domain/cpu/numa/cell/distances/sibling) and no libvirt domain
	// element nests 20 deep; 64 leaves room for any <metadata> a tool adds.
	maxDomainDepth = 64
	// maxDomainTokens: KubeVirt's own full test domain
	// (pkg/virt-launcher/virtwrap/converter/testdata/domain_x86_64.xml)
	// has 502 tokens (elements, the text between them, comments); one with
	// 512 vCPUs pinned, 64 disks and 32 interfaces, indented, about 3,300
	// (TestScanDomainLimitsFitKubeVirt); 20,000 is six times that. Tokens
	// are what the scan records per <interface> and per child, so this
	// also bounds memory.
	maxDomainTokens = 20_000
	// maxDomainTokenBytes bounds one token: a start tag with all its
	// attributes, a text, a comment. encoding/xml decodes a start tag's
	// attributes (and namespace declarations) all at once, at ~10 times
	// their size in memory; libvirt's longest values (paths, qemu
	// command-line arguments) are a few hundred bytes.
	maxDomainTokenBytes = 64 << 10
	// maxDomainScanTime: a real domain scans in about 0.1 ms, a hostile
	// one is refused by the limits above within 10 ms
	// (BenchmarkScanHostile); this is the backstop for a starved CPU. virt-launcher waits a minute for
	// the callback (pkg/hooks/manager.go).
	maxDomainScanTime = time.Second
	// timeCheckEvery is how many tokens pass between clock readings.
	timeCheckEvery = 1024

	// maxVMIDepth: a VMI nests about 12 levels deep (its managedFields
	// deepest); encoding/json's own limit is 10,000.
	maxVMIDepth = 64
	// maxVMIMembers bounds one JSON array or object: encoding/json decodes
	// an array of interfaces or networks into a slice of structs (~100
	// bytes each, from 3 bytes of input). No list or map in a real VMI
	// (disks, interfaces, volumes, conditions, labels, annotations,
	// managedFields' field sets) comes near.
	maxVMIMembers = 4096
	// maxVMITotalMembers bounds them all together (e.g. 4,096 interfaces
	// each with 4,096 DHCP private options); a real VMI has a few thousand.
	maxVMITotalMembers = 100_000
	// maxObjectNameBytes: Kubernetes object names and namespaces are DNS
	// subdomains or labels (at most 253 bytes) and UIDs are UUIDs; the
	// VMI's identity is repeated in every later log line.
	maxObjectNameBytes = 253
)

// domainLimits are the bounds of one domain XML scan.
type domainLimits struct {
	depth, tokens, tokenBytes int
	scanTime                  time.Duration
	now                       func() time.Time
}

// defaultDomainLimits are the limits OnDefineDomain applies.
func defaultDomainLimits() domainLimits {
	return domainLimits{depth: maxDomainDepth, tokens: maxDomainTokens, tokenBytes: maxDomainTokenBytes,
		scanTime: maxDomainScanTime, now: time.Now}
}

// errTokenTooLong is what tokenReader returns past a token's byte budget.
var errTokenTooLong = errors.New("token too long")

// tokenReader feeds encoding/xml one byte at a time (it implements
// io.ByteReader, so the decoder reads it without buffering) and fails once
// the current token has read more than its budget.
type tokenReader struct {
	src         []byte
	off, stopAt int
	tokenBudget int
}

// startToken gives the next token its budget.
func (r *tokenReader) startToken() { r.stopAt = r.off + r.tokenBudget }

func (r *tokenReader) ReadByte() (byte, error) {
	if r.off >= len(r.src) {
		return 0, io.EOF
	}
	if r.off >= r.stopAt {
		return 0, errTokenTooLong
	}
	r.off++
	return r.src[r.off-1], nil
}

// Read is unused by encoding/xml (it prefers ReadByte) but makes
// tokenReader an io.Reader.
func (r *tokenReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = b
	return 1, nil
}

// scanBudget counts tokens and watches the clock of one scan.
type scanBudget struct {
	limits domainLimits
	start  time.Time
	tokens int
}

func newScanBudget(l domainLimits) *scanBudget {
	return &scanBudget{limits: l, start: l.now()}
}

// next accounts for one more token.
func (b *scanBudget) next() error {
	b.tokens++
	if b.tokens > b.limits.tokens {
		return fmt.Errorf("domain XML has more than %d tokens (token limit)", b.limits.tokens)
	}
	if b.tokens%timeCheckEvery == 0 && b.limits.now().Sub(b.start) > b.limits.scanTime {
		return fmt.Errorf("domain XML took longer than %v to scan (time limit)", b.limits.scanTime)
	}
	return nil
}

// depth checks the nesting after a start element.
func (b *scanBudget) depth(d int) error {
	if d > b.limits.depth {
		return fmt.Errorf("domain XML nests deeper than %d elements (depth limit)", b.limits.depth)
	}
	return nil
}

// tokenError names the token size limit for errTokenTooLong.
func (b *scanBudget) tokenError(err error) error {
	if errors.Is(err, errTokenTooLong) {
		return fmt.Errorf("domain XML has a token longer than %d bytes (token size limit)", b.limits.tokenBytes)
	}
	return fmt.Errorf("invalid domain XML: %w", err)
}

// checkJSONShape rejects JSON nested deeper than maxVMIDepth or holding
// more members than maxVMIMembers in one array or object, or
// maxVMITotalMembers in all, before encoding/json allocates anything for
// it. It only counts: valid JSON is counted exactly (a member is counted
// at the comma after it), and what is not JSON is left to encoding/json to
// reject.
func checkJSONShape(b []byte) error {
	var (
		commas        [maxVMIDepth + 1]int // per open container
		depth, total  int
		inStr, escape bool
	)
	for _, c := range b {
		if inStr {
			switch {
			case escape:
				escape = false
			case c == '\\':
				escape = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '[', '{':
			if depth++; depth > maxVMIDepth {
				return fmt.Errorf("VMI JSON nests deeper than %d arrays or objects (depth limit)", maxVMIDepth)
			}
			commas[depth] = 0
		case ']', '}':
			depth = max(depth-1, 0)
		case ',':
			commas[depth]++
			if total++; commas[depth] >= maxVMIMembers {
				return fmt.Errorf("VMI JSON has an array or object with more than %d members (member limit)", maxVMIMembers)
			}
			if total >= maxVMITotalMembers {
				return fmt.Errorf("VMI JSON has more than %d array and object members in all (member limit)", maxVMITotalMembers)
			}
		}
	}
	return nil
}
