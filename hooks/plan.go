package hooks

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/hooks/naming"
)

// PodFacts answers what the pod interfaces looked like before KubeVirt
// moved them: the snapshot taken before the hook socket opens.
type PodFacts interface {
	// Lookup returns the original MAC and MTU of a pod interface (eth0,
	// pod<11hex>, net<i>); ok is false for an interface the pod did not have.
	Lookup(podIface string) (mac frame.MAC, mtu int, ok bool)
}

// BoundInterface is one VMI interface this plugin serves, as it is in the
// domain after OnDefineDomain.
type BoundInterface struct {
	Name        string       // VMI interface name; the domain alias is "ua-" + Name
	Index       int          // position in spec.domain.devices.interfaces
	Network     string       // spec.networks[].name (KubeVirt requires it to equal Name)
	MultusName  string       // networks[].multus.networkName; empty for the pod network
	PodNetwork  bool         // the pod network or a Multus default network (eth0, tap0)
	PodIface    string       // eth0, pod<11hex> or net<i>
	Tap         string       // the domain interface's <target dev>
	MAC         frame.MAC    // the VM's MAC: the domain interface's <mac address>; zero when unknown
	DHCPOptions *DHCPOptions // spec dhcpOptions, nil when unset
}

// wantIface is the <interface> this plugin wants for one VMI interface.
type wantIface struct {
	bound    BoundInterface // Tap and MAC are the wanted ones until edited
	alias    string
	children []wantChild // in the order KubeVirt marshals api.Interface
	// running: the MAC is the one the VMI's status reports, the running
	// VM's; it wins over the domain's <mac> (see fill).
	running bool
}

// wantChild is one child element of a wanted <interface>; err says why it
// could not be computed, reported only if the element has to be written.
type wantChild struct {
	name string
	xml  string
	err  error
}

// pciAddressRe is KubeVirt's PCI_ADDRESS_PATTERN (pkg/util/hardware).
var pciAddressRe = regexp.MustCompile(`^([\da-fA-F]{4}):([\da-fA-F]{2}):([\da-fA-F]{2})\.([0-7])$`)

// planInterfaces returns the wanted <interface> of every VMI interface bound
// to plugin, in spec order, as KubeVirt's converter orders interfaces.
func planInterfaces(vmi *VMI, plugin string, facts PodFacts) ([]wantIface, error) {
	var want []wantIface
	seen := make(map[string]bool)
	for i, iface := range vmi.Spec.Domain.Devices.Interfaces {
		if iface.Binding == nil || iface.Binding.Name != plugin || iface.State == InterfaceStateAbsent {
			continue
		}
		if seen[iface.Name] {
			return nil, fmt.Errorf("interface %q: duplicate name in spec.domain.devices.interfaces", iface.Name)
		}
		seen[iface.Name] = true
		w, err := planInterface(vmi, i, facts)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %w", iface.Name, err)
		}
		want = append(want, w)
	}
	return want, nil
}

func planInterface(vmi *VMI, index int, facts PodFacts) (wantIface, error) {
	iface := vmi.Spec.Domain.Devices.Interfaces[index]
	network, ok := vmi.network(iface.Name)
	if !ok {
		return wantIface{}, fmt.Errorf("no network named %q in spec.networks", iface.Name)
	}
	if network.Pod == nil && network.Multus == nil {
		return wantIface{}, fmt.Errorf("network %q is neither pod nor multus", network.Name)
	}
	b := BoundInterface{
		Name: iface.Name, Index: index, Network: network.Name,
		PodNetwork: !isSecondaryMultus(network), DHCPOptions: iface.DHCPOptions,
	}
	if network.Multus != nil {
		b.MultusName = network.Multus.NetworkName
	}
	podMAC, mtu, known := lookupPodIface(vmi, network, facts, &b)
	b.Tap = naming.Tap(b.PodIface, !b.PodNetwork)
	mac, running, err := vmMAC(vmi, iface, podMAC)
	if err != nil {
		return wantIface{}, err
	}
	b.MAC = mac
	address, err := pciAddressXML(iface.PciAddress)
	if err != nil {
		return wantIface{}, err
	}
	w := wantIface{bound: b, alias: UserAliasPrefix + iface.Name, running: running}
	w.children = interfaceChildren(vmi, iface, b, address, mtu, known)
	return w, nil
}

// lookupPodIface picks the pod interface (the first candidate the facts
// know, else the first candidate) and returns its original MAC and MTU.
func lookupPodIface(vmi *VMI, network Network, facts PodFacts, b *BoundInterface) (frame.MAC, int, bool) {
	candidates := podInterfaceCandidates(vmi, network)
	for _, name := range candidates {
		if mac, mtu, ok := facts.Lookup(name); ok {
			b.PodIface = name
			return mac, mtu, true
		}
	}
	b.PodIface = candidates[0]
	return frame.MAC{}, 0, false
}

// vmMAC is the VM's MAC: spec macAddress, else the status MAC (running
// reports that one), else the pod interface's original MAC, as KubeVirt's
// bridge binding resolves it (pkg/network/setup/netpod/discoverbridge.go
// resolveMacAddress); zero when none is known. This is where the VM MAC is
// parsed: everything after it carries the typed value.
func vmMAC(vmi *VMI, iface Interface, podMAC frame.MAC) (mac frame.MAC, running bool, err error) {
	if iface.MacAddress != "" {
		mac, err := frame.ParseMAC(iface.MacAddress)
		if err != nil {
			return frame.MAC{}, false, fmt.Errorf("invalid macAddress: %w", err)
		}
		return mac, false, nil
	}
	if st, ok := vmi.interfaceStatus(iface.Name); ok && st.MAC != "" {
		if mac, err := frame.ParseMAC(st.MAC); err == nil {
			return mac, true, nil
		}
	}
	return podMAC, false, nil
}

// pciAddressXML renders spec pciAddress ("0000:81:01.0") as libvirt's
// <address>, the way KubeVirt's device.NewPciAddressField does.
func pciAddressXML(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	m := pciAddressRe.FindStringSubmatch(addr)
	if m == nil {
		return "", fmt.Errorf("invalid pciAddress %q", addr)
	}
	return fmt.Sprintf(`<address type="pci" domain="0x%s" bus="0x%s" slot="0x%s" function="0x%s"/>`,
		m[1], m[2], m[3], m[4]), nil
}

// interfaceChildren lists the wanted children in KubeVirt's element order:
// address, source, target, model, mac, mtu, boot, link, alias, driver, rom,
// acpi (converter/network/configurator.go, domainspec/generators.go).
func interfaceChildren(vmi *VMI, iface Interface, b BoundInterface, address string, mtu int, mtuKnown bool) []wantChild {
	virtio := iface.Model == "" || iface.Model == "virtio"
	model := iface.Model
	if virtio {
		model = virtioModel(vmi)
	}
	launchSecurity := len(vmi.Spec.Domain.LaunchSecurity) > 0 && string(vmi.Spec.Domain.LaunchSecurity) != "null"
	var c []wantChild
	add := func(name, xml string) { c = append(c, wantChild{name: name, xml: xml}) }
	if address != "" {
		add("address", address)
	}
	add("source", "<source/>")
	add("target", `<target dev="`+escapeAttr(b.Tap)+`" managed="no"/>`)
	add("model", `<model type="`+escapeAttr(model)+`"/>`)
	if !b.MAC.IsZero() {
		add("mac", `<mac address="`+b.MAC.String()+`"/>`)
	} else {
		c = append(c, wantChild{name: "mac", err: fmt.Errorf("no MAC: no spec or status MAC and pod interface %q not found", b.PodIface)})
	}
	if mtuKnown {
		add("mtu", `<mtu size="`+strconv.Itoa(mtu)+`"/>`)
	} else {
		c = append(c, wantChild{name: "mtu", err: fmt.Errorf("no MTU: pod interface %q not found", b.PodIface)})
	}
	if iface.BootOrder != nil {
		add("boot", `<boot order="`+strconv.FormatUint(uint64(*iface.BootOrder), 10)+`"/>`)
	}
	if iface.State == InterfaceStateDown {
		add("link", `<link state="down"/>`)
	}
	add("alias", `<alias name="`+escapeAttr(UserAliasPrefix+iface.Name)+`"/>`)
	if d := driverXML(vmi, virtio, launchSecurity); d != "" {
		add("driver", d)
	}
	if romTuningSupported(vmi) && (iface.BootOrder == nil || launchSecurity) {
		add("rom", `<rom enabled="no"/>`)
	}
	if iface.ACPIIndex > 0 {
		add("acpi", `<acpi index="`+strconv.Itoa(iface.ACPIIndex)+`"/>`)
	}
	return c
}

// driverXML is the vhost <driver>: queues for a multi-queue virtio NIC,
// iommu for a virtio NIC of a confidential VM; empty when neither applies.
func driverXML(vmi *VMI, virtio, launchSecurity bool) string {
	if !virtio {
		return ""
	}
	queues := networkQueues(vmi)
	if queues == 0 && !launchSecurity {
		return ""
	}
	s := `<driver name="vhost"`
	if queues > 0 {
		s += ` queues="` + strconv.FormatUint(uint64(queues), 10) + `"`
	}
	if launchSecurity {
		s += ` iommu="on"`
	}
	return s + "/>"
}
