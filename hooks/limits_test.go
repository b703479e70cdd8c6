package hooks

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/hooks/hookstest"
)

// fakeClock advances by step on every reading.
func fakeClock(step time.Duration) func() time.Time {
	now := time.Unix(0, 0)
	return func() time.Time {
		now = now.Add(step)
		return now
	}
}

// TestScanDomainLimits: each limit accepts a document at the limit and
// rejects one just beyond it, naming the limit.
func TestScanDomainLimits(t *testing.T) {
	small := domainLimits{depth: 4, tokens: 10, tokenBytes: 32, scanTime: time.Second, now: fakeClock(0)}
	longAttr := func(n int) string { return `<domain a="` + strings.Repeat("x", n) + `"/>` }
	tests := []struct {
		name    string
		limits  domainLimits
		doc     string
		wantErr string // "" for success
	}{
		{"depth at the limit", small, "<domain><a><b><c/></b></a></domain>", ""},
		{"depth over the limit", small, "<domain><a><b><c><d/></c></b></a></domain>", "domain XML nests deeper than 4 elements (depth limit)"},
		{"unclosed over the depth limit", small, "<domain><a><b><c><d>", "domain XML nests deeper than 4 elements (depth limit)"},
		{"tokens at the limit", small, "<domain><a/><b/><c/><d/></domain>", ""},
		{"tokens over the limit", small, "<domain><a/><b/><c/><d/>x</domain>", "domain XML has more than 10 tokens (token limit)"},
		{"tag at the byte limit", small, longAttr(32 - len(`<domain a=""/>`)), ""},
		{"tag over the byte limit", small, longAttr(33 - len(`<domain a=""/>`)), "domain XML has a token longer than 32 bytes (token size limit)"},
		// A text is read up to and including the "<" after it.
		{"text at the byte limit", small, "<domain>" + strings.Repeat(" ", 31) + "</domain>", ""},
		{"text over the byte limit", small, "<domain>" + strings.Repeat(" ", 32) + "</domain>", "domain XML has a token longer than 32 bytes (token size limit)"},
		{"time over the limit", domainLimits{depth: 4, tokens: 3000, tokenBytes: 32, scanTime: time.Second, now: fakeClock(600 * time.Millisecond)},
			"<domain>" + strings.Repeat("<a/>", 1024) + "</domain>", "domain XML took longer than 1s to scan (time limit)"},
		{"time within the limit", domainLimits{depth: 4, tokens: 3000, tokenBytes: 32, scanTime: time.Second, now: fakeClock(400 * time.Millisecond)},
			"<domain>" + strings.Repeat("<a/>", 1024) + "</domain>", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := scanDomainWithin([]byte(tt.doc), tt.limits)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestScanDomainLimitsFitKubeVirt: the default limits leave a real domain
// (and a much larger one) alone.
func TestScanDomainLimitsFitKubeVirt(t *testing.T) {
	for _, name := range []string{"domain.xml", "domain-rich.xml", "domain-multus.xml", "domain-managedtap.xml"} {
		if _, err := scanDomain(readTestdata(t, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// 512 pinned vCPUs, 64 disks and 32 interfaces, indented: about
	// 3,300 tokens.
	var b strings.Builder
	b.WriteString("<domain type=\"kvm\">\n  <cputune>\n")
	for i := range 512 {
		b.WriteString("    <vcpupin vcpu=\"" + strconv.Itoa(i) + "\" cpuset=\"" + strconv.Itoa(i) + "\"/>\n")
	}
	b.WriteString("  </cputune>\n  <devices>\n")
	for i := range 64 {
		b.WriteString("    <disk type=\"file\" device=\"disk\">\n      <driver name=\"qemu\" type=\"raw\" cache=\"none\" error_policy=\"stop\" discard=\"unmap\"/>\n" +
			"      <source file=\"/var/run/kubevirt-private/vmi-disks/disk" + strconv.Itoa(i) + "/disk.img\"/>\n      <target bus=\"virtio\" dev=\"vd" + strconv.Itoa(i) + "\"/>\n" +
			"      <alias name=\"ua-disk" + strconv.Itoa(i) + "\"/>\n    </disk>\n")
	}
	for i := range 32 {
		b.WriteString("    <interface type=\"ethernet\">\n      <target dev=\"tap" + strconv.Itoa(i) + "\" managed=\"no\"/>\n      <model type=\"virtio-non-transitional\"/>\n" +
			"      <mac address=\"02:00:00:00:00:01\"/>\n      <mtu size=\"1400\"/>\n      <alias name=\"ua-net" + strconv.Itoa(i) + "\"/>\n      <rom enabled=\"no\"/>\n    </interface>\n")
	}
	b.WriteString("  </devices>\n</domain>\n")
	s, err := scanDomain([]byte(b.String()))
	if err != nil {
		t.Fatalf("large domain: %v", err)
	}
	if len(s.ifaces) != 32 {
		t.Errorf("large domain: %d interfaces, want 32", len(s.ifaces))
	}
}

// rejectSize is large enough for every hostile input to pass its limit
// (more than 20,000 tokens of <interface/>, a token over 64 KiB, an array
// over 4,096 members).
const rejectSize = 150_000

// TestHostileDomainsRejected: every hostile document is refused by its
// limit.
func TestHostileDomainsRejected(t *testing.T) {
	for _, in := range hookstest.HostileDomains(rejectSize) {
		t.Run(in.Name, func(t *testing.T) {
			_, err := scanDomain(in.DomainXML)
			if err == nil || err.Error() != in.Refusal {
				t.Errorf("error %v, want %q", err, in.Refusal)
			}
		})
	}
}

// TestDecodeVMILimits: each JSON limit accepts a VMI at the limit and
// rejects one just beyond it; brackets and commas inside strings are text.
func TestDecodeVMILimits(t *testing.T) {
	members := func(n int) string {
		return `{"spec":{"networks":[` + strings.TrimSuffix(strings.Repeat(`{"name":"a,[{"},`, n), ",") + `]}}`
	}
	deep := func(n int) string { return `{"x":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + "}" }
	spread := func(arrays, each int) string { // many arrays of many members
		inner := `{"dhcpOptions":{"privateOptions":[` + strings.TrimSuffix(strings.Repeat(`{},`, each), ",") + `]}}`
		return `{"spec":{"domain":{"devices":{"interfaces":[` + strings.TrimSuffix(strings.Repeat(inner+",", arrays), ",") + `]}}}}`
	}
	name := func(field string, n int) string {
		return `{"metadata":{"` + field + `":"` + strings.Repeat("a", n) + `"}}`
	}
	tests := []struct {
		name, in, wantErr string
	}{
		{"members at the limit", members(4096), ""},
		{"members over the limit", members(4097), "VMI JSON has an array or object with more than 4096 members (member limit)"},
		{"depth at the limit", deep(64), ""},
		{"depth over the limit", deep(65), "VMI JSON nests deeper than 64 arrays or objects (depth limit)"},
		{"brackets in strings", `{"metadata":{"name":"` + strings.Repeat(`[{,\"`, 5000) + `"}}`, "VMI metadata.name is longer than 253 bytes (Kubernetes' limit)"},
		{"total members within the limit", spread(24, 4000), ""},
		{"total members over the limit", spread(26, 4000), "VMI JSON has more than 100000 array and object members in all (member limit)"},
		{"name at the limit", name("name", 253), ""},
		{"name over the limit", name("name", 254), "VMI metadata.name is longer than 253 bytes (Kubernetes' limit)"},
		{"namespace over the limit", name("namespace", 254), "VMI metadata.namespace is longer than 253 bytes (Kubernetes' limit)"},
		{"uid over the limit", name("uid", 254), "VMI metadata.uid is longer than 253 bytes (Kubernetes' limit)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeVMI([]byte(tt.in))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestHostileVMIsRejected: every hostile VMI is refused by a limit.
func TestHostileVMIsRejected(t *testing.T) {
	for _, in := range hookstest.HostileVMIs(nil, rejectSize) {
		t.Run(in.Name, func(t *testing.T) {
			_, err := DecodeVMI(in.VMIJSON)
			if err == nil || err.Error() != in.Refusal {
				t.Errorf("error %v, want %q", err, in.Refusal)
			}
		})
	}
}
