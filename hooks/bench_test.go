package hooks

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/hooks/hookstest"
	"github.com/dsbridge/dsbridge/hooks/naming"
)

// bench16 is a VMI with 16 interfaces bound to dsbridge (the pod network
// and 15 Multus networks), the base fixture domain and the pod's facts.
func bench16(b *testing.B) ([]byte, []byte, StaticFacts) {
	b.Helper()
	vmi := map[string]any{"metadata": map[string]any{"name": "vmi-16", "namespace": "default"}}
	var ifaces, nets []map[string]any
	facts := StaticFacts{"eth0": {MAC: frame.MAC{0x0a, 0x58, 0, 0, 0, 1}, MTU: 1400}}
	for i := range 16 {
		name := fmt.Sprintf("net%02d", i)
		ifaces = append(ifaces, map[string]any{"name": name, "binding": map[string]any{"name": "dsbridge"}})
		if i == 0 {
			nets = append(nets, map[string]any{"name": name, "pod": map[string]any{}})
			continue
		}
		nets = append(nets, map[string]any{"name": name, "multus": map[string]any{"networkName": "nad-" + name}})
		facts[naming.HashedPodInterface(name)] = IfaceFacts{MAC: frame.MAC{0x0a, 0x58, 0, 0, 1, byte(i)}, MTU: 1450}
	}
	vmi["spec"] = map[string]any{"domain": map[string]any{"devices": map[string]any{"interfaces": ifaces}}, "networks": nets}
	vmiJSON, err := json.Marshal(vmi)
	if err != nil {
		b.Fatal(err)
	}
	return readTestdata(b, "domain.xml"), vmiJSON, facts
}

// BenchmarkOnDefineDomain16 decodes the VMI and inserts 16 interfaces.
func BenchmarkOnDefineDomain16(b *testing.B) {
	domain, vmiJSON, facts := bench16(b)
	b.ReportAllocs()
	for b.Loop() {
		vmi, err := DecodeVMI(vmiJSON)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := EditDomain(domain, vmi, "dsbridge", facts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOnDefineDomain16Again edits a domain that already has all 16
// (the second and third define of a start).
func BenchmarkOnDefineDomain16Again(b *testing.B) {
	domain, vmiJSON, facts := bench16(b)
	vmi, err := DecodeVMI(vmiJSON)
	if err != nil {
		b.Fatal(err)
	}
	edited, _, err := EditDomain(domain, vmi, "dsbridge", facts)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		vmi, err := DecodeVMI(vmiJSON)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := EditDomain(edited, vmi, "dsbridge", facts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScanHostile scans each hostile domain at the size of the
// largest request (refused by a limit) and a real one.
func BenchmarkScanHostile(b *testing.B) {
	for _, in := range hookstest.HostileDomains(hookstest.MaxHostileSize) {
		b.Run(in.Name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := scanDomain(in.DomainXML); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
	real := readTestdata(b, "domain.xml")
	b.Run("real domain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := scanDomain(real); err != nil {
				b.Fatal(err)
			}
		}
	})
}
