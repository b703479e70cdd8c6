package hooks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"
)

// blueIface is KubeVirt's pod interface for the Multus network "blue".
const blueIface = "pod16477688c0e"

func mustMAC(t testing.TB, s string) frame.MAC {
	t.Helper()
	mac, err := frame.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// testFacts is the pod as the CNI left it: eth0 and the "blue" network.
func testFacts(t testing.TB) StaticFacts {
	t.Helper()
	return StaticFacts{
		"lo":      {MTU: 65536},
		"eth0":    {MAC: mustMAC(t, "0a:58:0a:f4:00:0c"), MTU: 1400},
		blueIface: {MAC: mustMAC(t, "0a:58:c0:a8:07:05"), MTU: 1450},
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeTestVMI(t testing.TB, b []byte) *VMI {
	t.Helper()
	vmi, err := DecodeVMI(b)
	if err != nil {
		t.Fatal(err)
	}
	return vmi
}

// interfaceXML returns the <interface> with the given alias, as bytes.
func interfaceXML(t testing.TB, doc []byte, alias string) string {
	t.Helper()
	s, err := scanDomain(doc)
	if err != nil {
		t.Fatalf("result does not parse: %v", err)
	}
	var found []string
	for _, f := range s.ifaces {
		if f.alias == alias {
			found = append(found, string(doc[f.start:f.end]))
		}
	}
	if len(found) != 1 {
		t.Fatalf("found %d interfaces with alias %q, want 1", len(found), alias)
	}
	return found[0]
}

// withoutInterfaces removes the interfaces with the given aliases, so that
// what is left can be compared byte for byte.
func withoutInterfaces(t testing.TB, doc []byte, aliases ...string) string {
	t.Helper()
	s, err := scanDomain(doc)
	if err != nil {
		t.Fatalf("result does not parse: %v", err)
	}
	var cut []splice
	for _, f := range s.ifaces {
		for _, a := range aliases {
			if f.alias == a {
				cut = append(cut, splice{start: lineStart(doc, f.start), end: f.end})
			}
		}
	}
	return string(applySplices(doc, cut))
}

// tabbed turns the "|"-margined literal into tab-indented lines.
func tabbed(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		l = strings.TrimPrefix(l, "|")
		lines[i] = strings.ReplaceAll(l, "  ", "\t")
	}
	return strings.Join(lines, "\n")
}

func TestEditDomainFixtures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		domain    string
		vmi       string
		alias     string
		wantIface string // "" when the domain must come back unchanged
		wantBound []BoundInterface
	}{
		{
			name: "pod network, MAC from the pod interface", domain: "domain.xml", vmi: "vmi-pod.json", alias: "ua-default",
			wantIface: tabbed(`
				|<interface type="ethernet">
				|      <source/>
				|      <target dev="tap0" managed="no"/>
				|      <model type="virtio-non-transitional"/>
				|      <mac address="0a:58:0a:f4:00:0c"/>
				|      <mtu size="1400"/>
				|      <alias name="ua-default"/>
				|      <rom enabled="no"/>
				|    </interface>`),
			wantBound: []BoundInterface{{Name: "default", Index: 0, Network: "default", PodNetwork: true,
				PodIface: "eth0", Tap: "tap0", MAC: mustMAC(t, "0a:58:0a:f4:00:0c")}},
		},
		{
			name: "spec MAC wins over status MAC", domain: "domain.xml", vmi: "vmi-pod-specmac.json", alias: "ua-default",
			wantIface: tabbed(`
				|<interface type="ethernet">
				|      <source/>
				|      <target dev="tap0" managed="no"/>
				|      <model type="virtio-non-transitional"/>
				|      <mac address="02:00:00:aa:bb:cc"/>
				|      <mtu size="1400"/>
				|      <alias name="ua-default"/>
				|      <rom enabled="no"/>
				|    </interface>`),
			wantBound: []BoundInterface{{Name: "default", Index: 0, Network: "default", PodNetwork: true,
				PodIface: "eth0", Tap: "tap0", MAC: mustMAC(t, "02:00:00:aa:bb:cc")}},
		},
		{
			name: "every optional child", domain: "domain.xml", vmi: "vmi-pod-options.json", alias: "ua-default",
			wantIface: tabbed(`
				|<interface type="ethernet">
				|      <address type="pci" domain="0x0000" bus="0x81" slot="0x01" function="0x0"/>
				|      <source/>
				|      <target dev="tap0" managed="no"/>
				|      <model type="virtio-transitional"/>
				|      <mac address="02:00:00:aa:bb:cd"/>
				|      <mtu size="1400"/>
				|      <boot order="2"/>
				|      <link state="down"/>
				|      <alias name="ua-default"/>
				|      <driver name="vhost" queues="4"/>
				|      <acpi index="3"/>
				|    </interface>`),
			wantBound: []BoundInterface{{Name: "default", Index: 0, Network: "default", PodNetwork: true,
				PodIface: "eth0", Tap: "tap0", MAC: mustMAC(t, "02:00:00:aa:bb:cd"),
				DHCPOptions: &DHCPOptions{BootFileName: "pxelinux.0", NTPServers: []string{"192.0.2.123"},
					PrivateOptions: []DHCPPrivateOption{{Option: 240, Value: "extra"}}}}},
		},
		{
			name: "Multus secondary network after a masquerade interface", domain: "domain-multus.xml", vmi: "vmi-multus.json", alias: "ua-blue",
			wantIface: tabbed(`
				|<interface type="ethernet">
				|      <source/>
				|      <target dev="tap16477688c0e" managed="no"/>
				|      <model type="virtio-non-transitional"/>
				|      <mac address="02:b1:00:00:00:07"/>
				|      <mtu size="1450"/>
				|      <alias name="ua-blue"/>
				|      <rom enabled="no"/>
				|    </interface>`),
			wantBound: []BoundInterface{{Name: "blue", Index: 1, Network: "blue", MultusName: "vlan-tenants/blue",
				PodIface: blueIface, Tap: "tap16477688c0e", MAC: mustMAC(t, "02:b1:00:00:00:07")}},
		},
		{
			name: "managedTap already wrote it", domain: "domain-managedtap.xml", vmi: "vmi-managedtap.json", alias: "ua-default",
			wantBound: []BoundInterface{{Name: "default", Index: 0, Network: "default", PodNetwork: true,
				PodIface: "eth0", Tap: "tap0", MAC: mustMAC(t, "0a:58:0a:f4:00:0c")}},
		},
		{
			name: "interface of another binding", domain: "domain.xml", vmi: "vmi-other-binding.json",
			wantBound: []BoundInterface{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := readTestdata(t, tt.domain)
			vmi := decodeTestVMI(t, readTestdata(t, tt.vmi))
			out, bound, err := EditDomain(in, vmi, "dsbridge", testFacts(t))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantBound, bound); diff != "" {
				t.Errorf("bound interfaces (-want +got):\n%s", diff)
			}
			if tt.wantIface == "" {
				if diff := cmp.Diff(string(in), string(out)); diff != "" {
					t.Fatalf("domain changed (-want +got):\n%s", diff)
				}
				return
			}
			if diff := cmp.Diff(tt.wantIface, interfaceXML(t, out, tt.alias)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.alias, diff)
			}
			if diff := cmp.Diff(string(in), withoutInterfaces(t, out, tt.alias)); diff != "" {
				t.Errorf("rest of the domain changed (-want +got):\n%s", diff)
			}
			again, _, err := EditDomain(out, vmi, "dsbridge", testFacts(t))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(out), string(again)); diff != "" {
				t.Errorf("second call changed its own output (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEditDomainOrder checks that new interfaces take their VMI spec place
// among KubeVirt's "ua-" interfaces, before the placeholders.
func TestEditDomainOrder(t *testing.T) {
	t.Parallel()
	in := tabbed(`
		|<domain type="kvm">
		|  <devices>
		|    <emulator>/usr/libexec/qemu-kvm</emulator>
		|    <interface type="ethernet">
		|      <target dev="tap0" managed="no"></target>
		|      <alias name="ua-b"></alias>
		|    </interface>
		|    <interface type="ethernet">
		|      <target dev="placeholder-0" managed="no"></target>
		|    </interface>
		|  </devices>
		|</domain>`)
	vmiJSON := `{"spec":{"domain":{"devices":{"interfaces":[
		{"name":"a","binding":{"name":"dsbridge"},"bootOrder":1},
		{"name":"b","bridge":{}},
		{"name":"c","binding":{"name":"dsbridge"},"macAddress":"02:00:00:00:00:0c","model":"e1000e"}]}},
		"architecture":"s390x",
		"networks":[{"name":"a","pod":{}},{"name":"b","multus":{"networkName":"b"}},{"name":"c","multus":{"networkName":"net-c"}}]},
		"status":{"interfaces":[{"name":"c","podInterfaceName":"net2"}]}}`
	facts := StaticFacts{
		"eth0": {MAC: mustMAC(t, "0a:58:00:00:00:0a"), MTU: 1500},
		"net2": {MAC: mustMAC(t, "0a:58:00:00:00:0b"), MTU: 9000},
	}
	want := tabbed(`
		|<domain type="kvm">
		|  <devices>
		|    <emulator>/usr/libexec/qemu-kvm</emulator>
		|    <interface type="ethernet">
		|      <source/>
		|      <target dev="tap0" managed="no"/>
		|      <model type="virtio"/>
		|      <mac address="0a:58:00:00:00:0a"/>
		|      <mtu size="1500"/>
		|      <boot order="1"/>
		|      <alias name="ua-a"/>
		|    </interface>
		|    <interface type="ethernet">
		|      <target dev="tap0" managed="no"></target>
		|      <alias name="ua-b"></alias>
		|    </interface>
		|    <interface type="ethernet">
		|      <source/>
		|      <target dev="tap2" managed="no"/>
		|      <model type="e1000e"/>
		|      <mac address="02:00:00:00:00:0c"/>
		|      <mtu size="9000"/>
		|      <alias name="ua-c"/>
		|    </interface>
		|    <interface type="ethernet">
		|      <target dev="placeholder-0" managed="no"></target>
		|    </interface>
		|  </devices>
		|</domain>`)
	vmi := decodeTestVMI(t, []byte(vmiJSON))
	out, _, err := EditDomain([]byte(in), vmi, "dsbridge", facts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("domain (-want +got):\n%s", diff)
	}
}

// TestEditDomainFillsPartial checks that an interface KubeVirt wrote keeps
// what it has (its model too) and gets only what it lacks.
func TestEditDomainFillsPartial(t *testing.T) {
	t.Parallel()
	in := tabbed(`
		|<domain type="kvm">
		|  <devices>
		|    <interface type="ethernet">
		|      <source></source>
		|      <target dev="tap0" managed="no"></target>
		|      <model type="e1000"></model>
		|      <alias name="ua-default"></alias>
		|    </interface>
		|    <interface type="ethernet">
		|      <alias name="ua-default"></alias>
		|    </interface>
		|  </devices>
		|</domain>`)
	want := tabbed(`
		|<domain type="kvm">
		|  <devices>
		|    <interface type="ethernet">
		|      <source></source>
		|      <target dev="tap0" managed="no"></target>
		|      <model type="e1000"></model>
		|      <alias name="ua-default"></alias>
		|      <mac address="0a:58:0a:f4:00:0c"/>
		|      <mtu size="1400"/>
		|      <rom enabled="no"/>
		|    </interface>
		|  </devices>
		|</domain>`)
	vmi := decodeTestVMI(t, readTestdata(t, "vmi-pod.json"))
	out, _, err := EditDomain([]byte(in), vmi, "dsbridge", testFacts(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("domain (-want +got):\n%s", diff)
	}
}

// TestEditDomainRich checks that a domain full of things no Go struct
// models (declaration, comments, CDATA, foreign namespaces, unknown
// devices, qemu:commandline) survives byte for byte apart from the one
// element, and that libvirtxml reads the element back as intended.
func TestEditDomainRich(t *testing.T) {
	t.Parallel()
	in := readTestdata(t, "domain-rich.xml")
	vmiJSON := `{"spec":{"domain":{"devices":{"interfaces":[
		{"name":"default","masquerade":{}},
		{"name":"blue","binding":{"name":"dsbridge"},"pciAddress":"0000:02:00.0"}]}},
		"networks":[{"name":"default","pod":{}},{"name":"blue","multus":{"networkName":"blue"}}]}}`
	out, _, err := EditDomain(in, decodeTestVMI(t, []byte(vmiJSON)), "dsbridge", testFacts(t))
	if err != nil {
		t.Fatal(err)
	}
	want := `<interface type="ethernet">
      <address type="pci" domain="0x0000" bus="0x02" slot="0x00" function="0x0"/>
      <source/>
      <target dev="tap16477688c0e" managed="no"/>
      <model type="virtio-non-transitional"/>
      <mac address="0a:58:c0:a8:07:05"/>
      <mtu size="1450"/>
      <alias name="ua-blue"/>
      <rom enabled="no"/>
    </interface>`
	if diff := cmp.Diff(want, interfaceXML(t, out, "ua-blue")); diff != "" {
		t.Errorf("ua-blue (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(string(in), withoutInterfaces(t, out, "ua-blue")); diff != "" {
		t.Errorf("rest of the domain changed (-want +got):\n%s", diff)
	}

	var dom libvirtxml.Domain
	if err := dom.Unmarshal(string(out)); err != nil {
		t.Fatalf("libvirtxml cannot read the result: %v", err)
	}
	got := dom.Devices.Interfaces[1]
	wantIface := libvirtxml.DomainInterface{
		XMLName: got.XMLName,
		Source:  &libvirtxml.DomainInterfaceSource{Ethernet: &libvirtxml.DomainInterfaceSourceEthernet{}},
		Target:  &libvirtxml.DomainInterfaceTarget{Dev: "tap16477688c0e", Managed: "no"},
		Model:   &libvirtxml.DomainInterfaceModel{Type: "virtio-non-transitional"},
		MAC:     &libvirtxml.DomainInterfaceMAC{Address: "0a:58:c0:a8:07:05"},
		MTU:     &libvirtxml.DomainInterfaceMTU{Size: 1450},
		ROM:     &libvirtxml.DomainROM{Enabled: "no"},
		Alias:   &libvirtxml.DomainAlias{Name: "ua-blue"},
		Address: got.Address,
	}
	if diff := cmp.Diff(wantIface, got); diff != "" {
		t.Errorf("ua-blue through libvirtxml (-want +got):\n%s", diff)
	}
	if pci := got.Address.PCI; pci == nil || *pci.Bus != 2 || *pci.Slot != 0 {
		t.Errorf("ua-blue PCI address = %+v, want bus 2 slot 0", got.Address)
	}
}

// TestLibvirtxmlWouldLoseElements records why the editor splices bytes: a
// round trip through libvirtxml.Domain drops what it does not model.
func TestLibvirtxmlWouldLoseElements(t *testing.T) {
	t.Parallel()
	in := readTestdata(t, "domain-rich.xml")
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(string(in)); err != nil {
		t.Fatal(err)
	}
	out, err := dom.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var lost []string
	for _, s := range []string{"futurefeature", "shinynewdevice", "acme:probe", "<!--", "qemu:commandline"} {
		if strings.Contains(string(in), s) && !strings.Contains(out, s) {
			lost = append(lost, s)
		}
	}
	if len(lost) == 0 {
		t.Log("libvirtxml now keeps everything; the byte splice is still correct")
	}
	t.Logf("a libvirtxml round trip loses: %v", lost)
}

func TestEditDomainErrors(t *testing.T) {
	t.Parallel()
	domain := readTestdata(t, "domain.xml")
	podVMI := string(readTestdata(t, "vmi-pod.json"))
	tests := []struct {
		name    string
		domain  string
		vmi     string
		facts   StaticFacts
		wantErr string
	}{
		{name: "empty domain", domain: "", vmi: podVMI, wantErr: "invalid domain XML: no <domain> element"},
		{name: "truncated domain", domain: string(domain[:len(domain)/2]), vmi: podVMI, wantErr: "invalid domain XML: XML syntax error"},
		{name: "wrong root", domain: "<network/>", vmi: podVMI, wantErr: "root element is <network>, want <domain>"},
		{name: "two roots", domain: "<domain/><domain/>", vmi: podVMI, wantErr: "more than one root element"},
		{name: "mismatched tags", domain: "<domain><devices></domain>", vmi: podVMI, wantErr: "invalid domain XML"},
		{name: "network missing", vmi: `{"spec":{"domain":{"devices":{"interfaces":[{"name":"x","binding":{"name":"dsbridge"}}]}}}}`,
			wantErr: `interface "x": no network named "x" in spec.networks`},
		{name: "bad spec MAC", vmi: `{"spec":{"domain":{"devices":{"interfaces":[{"name":"x","binding":{"name":"dsbridge"},"macAddress":"zz"}]}},"networks":[{"name":"x","pod":{}}]}}`,
			wantErr: `interface "x": invalid macAddress`},
		{name: "bad PCI address", vmi: `{"spec":{"domain":{"devices":{"interfaces":[{"name":"x","binding":{"name":"dsbridge"},"pciAddress":"81:01.0"}]}},"networks":[{"name":"x","pod":{}}]}}`,
			wantErr: `interface "x": invalid pciAddress "81:01.0"`},
		{name: "pod interface gone", vmi: podVMI, facts: StaticFacts{},
			wantErr: `interface "default": no MAC: no spec or status MAC and pod interface "eth0" not found`},
		{name: "duplicate interface", vmi: `{"spec":{"domain":{"devices":{"interfaces":[{"name":"x","binding":{"name":"dsbridge"}},{"name":"x","binding":{"name":"dsbridge"}}]}},"networks":[{"name":"x","pod":{}}]}}`,
			wantErr: `interface "x": duplicate name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.domain == "" && !strings.HasPrefix(tt.name, "empty") {
				tt.domain = string(domain)
			}
			if tt.facts == nil {
				tt.facts = testFacts(t)
			}
			_, _, err := EditDomain([]byte(tt.domain), decodeTestVMI(t, []byte(tt.vmi)), "dsbridge", tt.facts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeVMIErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, wantErr string
	}{
		{"not JSON", `<vmi/>`, "invalid VMI JSON: invalid character '<'"},
		{"truncated", `{"spec":`, "invalid VMI JSON: unexpected end of JSON input"},
		{"interfaces not a list", `{"spec":{"domain":{"devices":{"interfaces":"eth0"}}}}`,
			`invalid VMI JSON: field "spec.domain.devices.interfaces" is string, want []hooks.Interface`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeVMI([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestEditDomainRunningVMMAC: on a live-migration target the domain
// KubeVirt prepares carries the target pod's MAC while the VMI's status
// reports the running VM's; the VM's is the one bound (and served), and
// the domain comes back unchanged.
func TestEditDomainRunningVMMAC(t *testing.T) {
	t.Parallel()
	in := readTestdata(t, "domain-managedtap.xml") // <mac address="0a:58:0a:f4:00:0c">: the target pod's
	vmi := decodeTestVMI(t, readTestdata(t, "vmi-managedtap.json"))
	vmi.Status.Interfaces[0].MAC = "02:00:00:11:22:33" // the running VM's
	out, bound, err := EditDomain(in, vmi, "dsbridge", testFacts(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []BoundInterface{{Name: "default", Index: 0, Network: "default", PodNetwork: true,
		PodIface: "eth0", Tap: "tap0", MAC: mustMAC(t, "02:00:00:11:22:33")}}
	if diff := cmp.Diff(want, bound); diff != "" {
		t.Errorf("bound interfaces (-want +got):\n%s", diff)
	}
	if string(out) != string(in) {
		t.Errorf("the domain changed:\n%s", out)
	}
}
