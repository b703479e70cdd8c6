package hooks

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/dsbridge/dsbridge/hooks/hookstest"
)

// fuzzSeedSize is the size of the hostile seeds: each bomb's shape, small
// enough for the fuzzer to mutate quickly (it slows to a halt on inputs of
// 100 KB and more). TestHostileDomainsRejected and TestHostileVMIsRejected
// run them at rejectSize, past every limit.
const fuzzSeedSize = 4 << 10

// FuzzOnDefineDomain feeds arbitrary domain XML and VMI JSON to the
// OnDefineDomain handler: it must never panic, a successful result must
// parse, and editing that result again must change nothing.
func FuzzOnDefineDomain(f *testing.F) {
	seeds := []struct{ domain, vmi string }{
		{"domain.xml", "vmi-pod.json"},
		{"domain.xml", "vmi-pod-options.json"},
		{"domain.xml", "vmi-pod-specmac.json"},
		{"domain-multus.xml", "vmi-multus.json"},
		{"domain-managedtap.xml", "vmi-managedtap.json"},
		{"domain.xml", "vmi-other-binding.json"},
		{"domain-rich.xml", "vmi-multus.json"},
	}
	for _, s := range seeds {
		f.Add(readTestdata(f, s.domain), readTestdata(f, s.vmi))
	}
	pod := readTestdata(f, "vmi-pod.json")
	f.Add([]byte(`<domain/>`), pod)
	f.Add([]byte(`<domain><devices/></domain>`), pod)
	f.Add([]byte(`<domain><devices><interface><alias name="ua-default"/></interface><interface><alias name="ua-default"/></interface></devices></domain>`), pod)
	small := []byte(`{"spec":{"domain":{"devices":{"interfaces":[{"name":"a","binding":{"name":"dsbridge"},"macAddress":"02:00:00:00:00:01"},` +
		`{"name":"b","binding":{"name":"dsbridge"},"pciAddress":"0000:01:02.3"}]}},` +
		`"networks":[{"name":"a","pod":{}},{"name":"b","multus":{"networkName":"blue"}}]},"status":{"interfaces":[{"name":"b","podInterfaceName":"pod16477688c0e"}]}}`)
	f.Add([]byte("<domain>\n  <devices>\n    <interface type='ethernet'>\n      <alias name='ua-b'/>\n    </interface>\n  </devices>\n</domain>"), small)
	f.Add([]byte(`<domain><devices><disk/><interface><target dev="placeholder-0"/></interface></devices></domain>`), small)
	for _, in := range slices.Concat(hookstest.HostileDomains(fuzzSeedSize), hookstest.HostileVMIs(readTestdata(f, "domain.xml"), fuzzSeedSize)) {
		f.Add(in.DomainXML, in.VMIJSON)
	}
	srv, err := NewServer(Config{PluginName: "dsbridge", Facts: testFacts(f),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, domainXML, vmiJSON []byte) {
		out, err := srv.OnDefineDomain(context.Background(), domainXML, vmiJSON)
		if err != nil {
			return
		}
		if _, err := scanDomain(out); err != nil {
			t.Fatalf("result does not parse: %v\n%s", err, out)
		}
		again, err := srv.OnDefineDomain(context.Background(), out, vmiJSON)
		if err != nil {
			t.Fatalf("second call failed: %v\n%s", err, out)
		}
		if !bytes.Equal(out, again) {
			t.Fatalf("second call changed the result:\nfirst:\n%s\nsecond:\n%s", out, again)
		}
	})
}
