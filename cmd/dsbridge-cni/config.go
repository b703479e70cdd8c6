package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/dsbridge/dsbridge/hooks/naming"
	"github.com/dsbridge/dsbridge/netsetup"
)

// Defaults of the network configuration.
const (
	// DefaultPodNetwork is the VMI network name taken to be the pod network
	// (KubeVirt's examples and virtctl name it "default").
	DefaultPodNetwork = "default"
	// DefaultStateDir holds one state file per attachment.
	DefaultStateDir = "/var/lib/cni/dsbridge"
	// primaryPodIface is the pod network's interface (KubeVirt namescheme).
	primaryPodIface = "eth0"
	// maxTapQueues is the kernel's limit on a multi-queue tap
	// (MAX_TAP_QUEUES, drivers/net/tun.c).
	maxTapQueues = 256
)

// netConf is the binding CNI's network configuration, as the
// NetworkAttachmentDefinition gives it and Multus delivers it:
//
//	{
//	  "cniVersion": "1.0.0",
//	  "name": "dsbridge-binding",
//	  "type": "dsbridge-cni",
//	  "podNetwork": "default",
//	  "plumbing": false,
//	  "stateDir": "/var/lib/cni/dsbridge",
//	  "args": {"cni": {"logicNetworkName": "default"}}
//	}
//
// "args.cni" holds the network-selection element's cni-args: KubeVirt sets
// logicNetworkName to the VMI network the binding serves (KubeVirt
// pkg/network/multus/annotation.go newBindingPluginAnnotationData).
type netConf struct {
	types.PluginConf

	// PodNetwork is the VMI network name that means the pod network, whose
	// pod interface is eth0; every other name is a Multus secondary network
	// with pod interface pod<sha256(name)[:11]>.
	PodNetwork string `json:"podNetwork,omitempty"`
	// Plumbing builds the managedTap layout (bridge, tap, dummy) in the pod
	// for KubeVirt older than 1.4, where the binding is registered with
	// domainAttachmentType: tap.
	Plumbing bool `json:"plumbing,omitempty"`
	// TapOwner is the uid and gid owning the tap that plumbing creates;
	// default 107 (KubeVirt's qemu user), 0 for root VMs (KubeVirt's Root
	// feature gate). Only with plumbing.
	TapOwner *int `json:"tapOwner,omitempty"`
	// TapQueues > 1 makes plumbing create a multi-queue tap (match the VMs'
	// networkInterfaceMultiqueue: the vCPU count). Only with plumbing.
	TapQueues int `json:"tapQueues,omitempty"`
	// StateDir holds what ADD changed, for DEL, CHECK and GC.
	StateDir string `json:"stateDir,omitempty"`
	// RAResponder turns the RS->RA responder of the kernel uplink
	// programs (tc BPF) on when the pod has an IPv6 default gateway;
	// default true. It gives the unprivileged tier router advertisements.
	// The uplink guard is attached either way.
	RAResponder *bool `json:"raResponder,omitempty"`

	// RuntimeConfig and Args are set by the runtime and Multus.
	RuntimeConfig json.RawMessage            `json:"runtimeConfig,omitempty"`
	Args          map[string]json.RawMessage `json:"args,omitempty"`

	// CNIArgs is args.cni, decoded.
	CNIArgs cniArgs `json:"-"`
}

// cniArgs are the network-selection element's cni-args.
type cniArgs struct {
	LogicNetworkName string `json:"logicNetworkName,omitempty"`
}

// runtimeArgs are the CNI_ARGS keys a Kubernetes runtime and Multus pass;
// anything else is an error unless IgnoreUnknown is set (CNI conventions).
type runtimeArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString
	K8S_POD_NAME               types.UnmarshallableString
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString
	K8S_POD_UID                types.UnmarshallableString
}

// loadConf decodes and validates stdin. Errors are *types.Error with the
// CNI error code: 6 for malformed JSON, 2 for an unknown field or cni-arg,
// 7 for an invalid value.
func loadConf(stdin []byte, needLogicNetwork bool) (*netConf, error) {
	conf := &netConf{}
	dec := json.NewDecoder(bytes.NewReader(stdin))
	dec.DisallowUnknownFields()
	if err := dec.Decode(conf); err != nil {
		return nil, decodeError("network configuration", err)
	}
	if err := conf.decodeCNIArgs(); err != nil {
		return nil, err
	}
	if err := conf.validate(needLogicNetwork); err != nil {
		return nil, err
	}
	if err := cniversion.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "failed to parse prevResult", err.Error())
	}
	return conf, nil
}

// decodeError maps a JSON error to CNI error 2 (unknown field) or 6.
func decodeError(what string, err error) *types.Error {
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return types.NewError(types.ErrUnsupportedField, fmt.Sprintf("unknown field %s in %s", field, what), "")
	}
	return types.NewError(types.ErrDecodingFailure, "failed to decode "+what, err.Error())
}

func (c *netConf) decodeCNIArgs() error {
	raw, ok := c.Args["cni"]
	if !ok {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.CNIArgs); err != nil {
		if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return types.NewError(types.ErrUnsupportedField,
				fmt.Sprintf("unknown cni-arg %s: dsbridge-cni knows only logicNetworkName", field), "")
		}
		return decodeError("cni-args (args.cni)", err)
	}
	return nil
}

func (c *netConf) validate(needLogicNetwork bool) error {
	if c.PodNetwork == "" {
		c.PodNetwork = DefaultPodNetwork
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if !filepath.IsAbs(c.StateDir) {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("stateDir %q is not an absolute path", c.StateDir), "")
	}
	if c.TapOwner != nil && (!c.Plumbing || *c.TapOwner < 0 || *c.TapOwner > math.MaxUint32) {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("tapOwner %d needs plumbing: true and an id from 0 to %d", *c.TapOwner, uint32(math.MaxUint32)), "")
	}
	if c.TapQueues != 0 && (!c.Plumbing || c.TapQueues < 0) {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("tapQueues %d needs plumbing: true and a positive count", c.TapQueues), "")
	}
	if c.TapQueues > maxTapQueues {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("tapQueues %d is more than a tap can have (%d, MAX_TAP_QUEUES)", c.TapQueues, maxTapQueues), "")
	}
	if needLogicNetwork && c.CNIArgs.LogicNetworkName == "" {
		return types.NewError(types.ErrInvalidNetworkConfig,
			"missing cni-arg logicNetworkName: attach this network through a KubeVirt binding (networkAttachmentDefinition), which sets it", "")
	}
	return nil
}

// plumbOptions turns the tap settings into netsetup's options.
func (c *netConf) plumbOptions() netsetup.PlumbOptions {
	// The legacy tier's sidecar serves DHCPv6 from a UDP socket on the
	// bridge, which needs the bridge's link-local address as the source.
	opts := netsetup.PlumbOptions{TapOwner: netsetup.DefaultTapOwner, Queues: c.TapQueues, BridgeLinkLocal: true}
	if c.TapOwner != nil {
		opts.TapOwner = *c.TapOwner
		opts.RootTap = *c.TapOwner == 0
	}
	return opts
}

// raResponder reports whether ADD attaches the kernel RA responder.
func (c *netConf) raResponder() bool { return c.RAResponder == nil || *c.RAResponder }

// podIface maps the logical (VMI) network to its pod interface: eth0 for
// the pod network, KubeVirt's hashed name for a Multus network.
func (c *netConf) podIface() string {
	if c.CNIArgs.LogicNetworkName == c.PodNetwork {
		return primaryPodIface
	}
	return naming.HashedPodInterface(c.CNIArgs.LogicNetworkName)
}

// loadRuntimeArgs checks CNI_ARGS: Kubernetes keys are known, others are an
// error unless IgnoreUnknown=1.
func loadRuntimeArgs(s string) error {
	var a runtimeArgs
	if err := types.LoadArgs(s, &a); err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "invalid CNI_ARGS", err.Error())
	}
	return nil
}
