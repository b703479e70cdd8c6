package hooks

import (
	"encoding/json"
	"errors"
	"fmt"
)

// VMI is the part of a KubeVirt VirtualMachineInstance that OnDefineDomain
// reads. Unknown fields are ignored; absent ones keep their zero value.
type VMI struct {
	Metadata VMIMeta   `json:"metadata"`
	Spec     VMISpec   `json:"spec"`
	Status   VMIStatus `json:"status"`
}

// VMIMeta is the VMI's object metadata.
type VMIMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	UID         string            `json:"uid"`
	Annotations map[string]string `json:"annotations"`
}

// VMISpec is spec of a VMI.
type VMISpec struct {
	Domain       DomainSpec `json:"domain"`
	Networks     []Network  `json:"networks"`
	Architecture string     `json:"architecture"`
}

// DomainSpec is spec.domain.
type DomainSpec struct {
	CPU       *CPU      `json:"cpu"`
	Resources Resources `json:"resources"`
	Devices   Devices   `json:"devices"`
	// LaunchSecurity is present (SEV, SNP, TDX, ...) for confidential VMs.
	LaunchSecurity json.RawMessage `json:"launchSecurity"`
}

// CPU is spec.domain.cpu.
type CPU struct {
	Cores   uint32 `json:"cores"`
	Sockets uint32 `json:"sockets"`
	Threads uint32 `json:"threads"`
}

// Resources is spec.domain.resources; quantities stay raw (string or number).
type Resources struct {
	Requests map[string]json.RawMessage `json:"requests"`
	Limits   map[string]json.RawMessage `json:"limits"`
}

// Devices is spec.domain.devices.
type Devices struct {
	Interfaces                 []Interface `json:"interfaces"`
	NetworkInterfaceMultiqueue *bool       `json:"networkInterfaceMultiqueue"`
	UseVirtioTransitional      *bool       `json:"useVirtioTransitional"`
}

// Interface states (spec.domain.devices.interfaces[].state).
const (
	InterfaceStateUp     = "up"
	InterfaceStateDown   = "down"
	InterfaceStateAbsent = "absent"
)

// Interface is one spec.domain.devices.interfaces[] entry.
type Interface struct {
	Name        string         `json:"name"`
	Binding     *PluginBinding `json:"binding"`
	MacAddress  string         `json:"macAddress"`
	Model       string         `json:"model"`
	PciAddress  string         `json:"pciAddress"`
	BootOrder   *uint          `json:"bootOrder"`
	ACPIIndex   int            `json:"acpiIndex"`
	DHCPOptions *DHCPOptions   `json:"dhcpOptions"`
	State       string         `json:"state"`
}

// PluginBinding is interfaces[].binding: the network binding plugin's name.
type PluginBinding struct {
	Name string `json:"name"`
}

// DHCPOptions is interfaces[].dhcpOptions, handed to the DHCP servers as is.
type DHCPOptions struct {
	BootFileName   string              `json:"bootFileName,omitempty"`
	TFTPServerName string              `json:"tftpServerName,omitempty"`
	NTPServers     []string            `json:"ntpServers,omitempty"`
	PrivateOptions []DHCPPrivateOption `json:"privateOptions,omitempty"`
}

// DHCPPrivateOption is one DHCPv4 private option (224-254) and its value.
type DHCPPrivateOption struct {
	Option int    `json:"option"`
	Value  string `json:"value"`
}

// Network is one spec.networks[] entry.
type Network struct {
	Name   string         `json:"name"`
	Pod    *PodNetwork    `json:"pod"`
	Multus *MultusNetwork `json:"multus"`
}

// PodNetwork is networks[].pod.
type PodNetwork struct {
	VMNetworkCIDR     string `json:"vmNetworkCIDR,omitempty"`
	VMIPv6NetworkCIDR string `json:"vmIPv6NetworkCIDR,omitempty"`
}

// MultusNetwork is networks[].multus.
type MultusNetwork struct {
	NetworkName string `json:"networkName"`
	Default     bool   `json:"default"`
}

// VMIStatus is status of a VMI.
type VMIStatus struct {
	Interfaces []InterfaceStatus `json:"interfaces"`
}

// InterfaceStatus is one status.interfaces[] entry.
type InterfaceStatus struct {
	Name             string `json:"name"`
	MAC              string `json:"mac"`
	PodInterfaceName string `json:"podInterfaceName"`
}

// VMIIdentity names the VMI a request is about, with its annotations (a
// VM's settings for the binding, e.g. its lease timers).
type VMIIdentity struct {
	Namespace   string
	Name        string
	UID         string
	Annotations map[string]string
}

// Identity returns the VMI's namespace, name, UID and annotations.
func (v *VMI) Identity() VMIIdentity {
	return VMIIdentity{Namespace: v.Metadata.Namespace, Name: v.Metadata.Name, UID: v.Metadata.UID, Annotations: v.Metadata.Annotations}
}

// DecodeVMI parses the VMI JSON virt-launcher sends with OnDefineDomain.
// Unknown fields are ignored; a syntax error or a field of the wrong type is
// an error naming the offset or the field, and JSON beyond the limits of
// limits.go an error naming the limit.
func DecodeVMI(b []byte) (*VMI, error) {
	if err := checkJSONShape(b); err != nil {
		return nil, err
	}
	var vmi VMI
	if err := json.Unmarshal(b, &vmi); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, fmt.Errorf("invalid VMI JSON: field %q is %s, want %s", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return nil, fmt.Errorf("invalid VMI JSON: %w", err)
	}
	if err := vmi.Metadata.check(); err != nil {
		return nil, err
	}
	return &vmi, nil
}

// check bounds the identity that every later log line repeats.
func (m VMIMeta) check() error {
	for _, f := range []struct{ name, value string }{{"name", m.Name}, {"namespace", m.Namespace}, {"uid", m.UID}} {
		if len(f.value) > maxObjectNameBytes {
			return fmt.Errorf("VMI metadata.%s is longer than %d bytes (Kubernetes' limit)", f.name, maxObjectNameBytes)
		}
	}
	return nil
}

// network returns the spec.networks entry named name.
func (v *VMI) network(name string) (Network, bool) {
	for _, n := range v.Spec.Networks {
		if n.Name == name {
			return n, true
		}
	}
	return Network{}, false
}

// interfaceStatus returns the status.interfaces entry named name.
func (v *VMI) interfaceStatus(name string) (InterfaceStatus, bool) {
	for _, s := range v.Status.Interfaces {
		if s.Name == name {
			return s, true
		}
	}
	return InterfaceStatus{}, false
}
