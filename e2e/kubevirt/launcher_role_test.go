package kubevirt

// The virt-launcher side, run by this test binary re-executed as uid 107 in
// the pod's network namespace and a private mount namespace (pod_test.go):
// it starts libvirtd (session mode) and drives KubeVirt's own launcher code
// on commands read from stdin, one JSON object a line, answering each with
// one JSON line on stdout. KubeVirt's logs go to stderr.

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"libvirt.org/go/libvirt"

	v1 "kubevirt.io/api/core/v1"

	"kubevirt.io/kubevirt/pkg/defaults"
	cmdv1 "kubevirt.io/kubevirt/pkg/handler-launcher-com/cmd/v1"
	"kubevirt.io/kubevirt/pkg/hooks"
	"kubevirt.io/kubevirt/pkg/network/cache"
	netlauncher "kubevirt.io/kubevirt/pkg/network/setup/launcher"
	"kubevirt.io/kubevirt/pkg/network/vmispec"
	"kubevirt.io/kubevirt/pkg/virt-launcher/metadata"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap"
	agentpoller "kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/agent-poller"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/api"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/cli"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/converter"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/converter/arch"
	convertertypes "kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/converter/types"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/network"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/util"
)

// launcherRequest is one command to the launcher.
type launcherRequest struct {
	Op          string            `json:"op"`
	VMI         json.RawMessage   `json:"vmi,omitempty"`
	Attachments map[string]string `json:"attachments,omitempty"`
	// DestURI and MigrateURI: the target's libvirt and QEMU's migration
	// stream (unix sockets).
	DestURI    string `json:"destURI,omitempty"`
	MigrateURI string `json:"migrateURI,omitempty"`
	// Migration is what virt-handler passes as
	// VirtualMachineOptions.InterfaceMigration (link-refresh).
	Migration map[string]*cmdv1.InterfaceBindingMigration `json:"migration,omitempty"`
	// DomainOnly: build the domain (converter, defaults, phase 2) and run
	// every hook pass, but define nothing.
	DomainOnly bool `json:"domainOnly,omitempty"`
}

// hookPass is one OnDefineDomain pass as virt-launcher made it: In is the
// domain it sent (xml.MarshalIndent of its api.DomainSpec, as the hooks
// manager encodes it), Raw what the sidecar answered (the string libvirt
// received), Decoded KubeVirt's decode of Raw into api.DomainSpec encoded
// again.
type hookPass struct {
	In, Raw, Decoded string
}

type launcherReply struct {
	Err    string     `json:"err,omitempty"`
	Passes []hookPass `json:"passes,omitempty"`
	XML    string     `json:"xml,omitempty"` // the domain: built, or live
	PID    int        `json:"pid,omitempty"`
}

// Paths of the launcher's environment (set by pod_test.go).
const (
	envLibvirtSock  = "DSB_KV_LIBVIRT_SOCK"
	envLibvirtdConf = "DSB_KV_LIBVIRTD_CONF" // set for a root launcher (Root gate)
	launcherRole    = "launcher"
)

func runRole(role string) int {
	if role != launcherRole {
		fmt.Fprintf(os.Stderr, "unknown role %q\n", role)
		return 2
	}
	l := &launcherProc{sock: os.Getenv(envLibvirtSock)}
	if err := l.startLibvirt(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.stopLibvirt()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req launcherRequest
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			_ = out.Encode(launcherReply{Err: err.Error()})
			continue
		}
		if req.Op == "exit" {
			_ = out.Encode(launcherReply{})
			return 0
		}
		rep, err := l.handle(req)
		if err != nil {
			rep.Err = err.Error()
		}
		if err := out.Encode(rep); err != nil {
			return 1
		}
	}
	return 0
}

// launcherProc is virt-launcher's state: its libvirtd, its connection and
// the VMI it runs.
type launcherProc struct {
	sock    string
	libvirt *exec.Cmd
	conn    cli.Connection
	vmi     *v1.VirtualMachineInstance
}

// startLibvirt runs libvirtd as virt-launcher does for a non-root VMI
// (session mode, this uid), and connects.
func (l *launcherProc) startLibvirt() error {
	if err := os.MkdirAll(filepath.Dir(l.sock), 0o700); err != nil {
		return err
	}
	uri := "qemu+unix:///session?socket=" + l.sock
	l.libvirt = exec.Command("libvirtd")
	if conf := os.Getenv(envLibvirtdConf); conf != "" {
		// As root, libvirtd is the system daemon (virt-launcher's root mode).
		uri = "qemu+unix:///system?socket=" + l.sock
		l.libvirt = exec.Command("libvirtd", "--config", conf)
	}
	l.libvirt.Stdout, l.libvirt.Stderr = os.Stderr, os.Stderr
	if err := l.libvirt.Start(); err != nil {
		return fmt.Errorf("failed to start libvirtd: %w", err)
	}
	conn, err := cli.NewConnectionWithTimeout(uri, "", "", 10*time.Second, 100*time.Millisecond, 30*time.Second)
	if err != nil {
		return fmt.Errorf("failed to connect to libvirtd at %s: %w", l.sock, err)
	}
	l.conn = conn
	return nil
}

func (l *launcherProc) stopLibvirt() {
	if l.conn != nil {
		l.conn.Close()
	}
	if l.libvirt != nil && l.libvirt.Process != nil {
		_ = l.libvirt.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = l.libvirt.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = l.libvirt.Process.Kill()
		}
	}
}

func (l *launcherProc) handle(req launcherRequest) (launcherReply, error) {
	if len(req.VMI) > 0 {
		l.vmi = &v1.VirtualMachineInstance{}
		if err := json.Unmarshal(req.VMI, l.vmi); err != nil {
			return launcherReply{}, err
		}
	}
	switch req.Op {
	case "pid":
		return launcherReply{PID: os.Getpid()}, nil
	case "collect":
		// cmd/virt-launcher/virt-launcher.go: one sidecar, before anything else.
		return launcherReply{}, hooks.GetManager().Collect(1, time.Minute)
	case "start":
		return l.start(req.Attachments, req.DomainOnly)
	case "prepare-target":
		return launcherReply{}, l.prepareTarget(req.Attachments)
	case "link-refresh":
		return launcherReply{}, l.linkRefresh(req.Migration)
	case "migrate":
		return launcherReply{}, l.migrate(req.DestURI, req.MigrateURI)
	case "xml":
		x, err := l.liveXML()
		return launcherReply{XML: x}, err
	case "stop":
		return launcherReply{}, l.stop()
	}
	return launcherReply{}, fmt.Errorf("unknown op %q", req.Op)
}

// domain builds the domain as SyncVMI does (pkg/virt-launcher/virtwrap/
// manager.go): converter, then the defaulter, then preStartHook's network
// phase 2 (pkg/network/setup/launcher) with virt-handler's domain
// attachments. No KVM here: emulation allowed, the converter picks TCG.
func (l *launcherProc) domain(attach map[string]string, target bool) (*api.Domain, error) {
	c := &convertertypes.ConverterContext{
		Architecture:                    arch.NewConverter(runtime.GOARCH),
		VirtualMachine:                  l.vmi,
		AllowEmulation:                  true,
		HostArchitecture:                runtime.GOARCH,
		HypervisorDeviceAvailable:       false,
		UseVirtioTransitional:           l.vmi.Spec.Domain.Devices.UseVirtioTransitional != nil && *l.vmi.Spec.Domain.Devices.UseVirtioTransitional,
		PermanentVolumes:                map[string]v1.VolumeStatus{},
		IsBlockPVC:                      map[string]bool{},
		IsBlockDV:                       map[string]bool{},
		SMBios:                          &cmdv1.SMBios{},
		DomainAttachmentByInterfaceName: attach,
	}
	domain := &api.Domain{}
	if err := converter.Convert_v1_VirtualMachineInstance_To_api_Domain(l.vmi, domain, c); err != nil {
		return nil, fmt.Errorf("converter: %w", err)
	}
	if !target {
		api.NewDefaulter(c.Architecture.GetArchitecture()).SetObjectDefaults_Domain(domain)
	}
	ifaces := vmispec.FilterInterfacesSpec(l.vmi.Spec.Domain.Devices.Interfaces, func(i v1.Interface) bool {
		return i.State != v1.InterfaceStateAbsent
	})
	nets := vmispec.FilterNetworksByInterfaces(l.vmi.Spec.Networks, ifaces)
	err := netlauncher.NewVMNetworkConfigurator(l.vmi, cache.CacheCreator{}, netlauncher.WithDomainAttachments(attach)).
		SetupPodNetworkPhase2(domain, nets)
	if err != nil {
		return nil, fmt.Errorf("network phase 2: %w", err)
	}
	return domain, nil
}

// recordingConn is the libvirt connection with DomainDefineXML recorded:
// util.SetDomainSpecStrWithHooks hands it the sidecars' raw answer.
type recordingConn struct {
	cli.Connection
	defined []string
	define  bool
}

var errNotDefined = errors.New("domain not defined (domainOnly)")

func (c *recordingConn) DomainDefineXML(x string) (cli.VirDomain, error) {
	c.defined = append(c.defined, x)
	if !c.define {
		return nil, errNotDefined
	}
	return c.Connection.DomainDefineXML(x)
}

// start defines and starts the domain as lookupOrCreateVirDomain and
// allocateHotplugPorts do: network.WithNetworkIfacesResources with the
// placeholder count of calculateHotplugPortCountV1 (4 minus the VMI's
// interfaces), each pass through util.SetDomainSpecStrWithHooks; then
// Create. With domainOnly the first define is refused, so only the first
// hook pass (with placeholders) runs.
func (l *launcherProc) start(attach map[string]string, domainOnly bool) (launcherReply, error) {
	domain, err := l.domain(attach, false)
	if err != nil {
		return launcherReply{}, err
	}
	rc := &recordingConn{Connection: l.conn, define: !domainOnly}
	var passes []hookPass
	setDomain := func(v *v1.VirtualMachineInstance, s *api.DomainSpec) (cli.VirDomain, error) {
		in, err := xml.MarshalIndent(s, "", "\t")
		if err != nil {
			return nil, err
		}
		dom, err := util.SetDomainSpecStrWithHooks(rc, v, s)
		if len(rc.defined) > len(passes) {
			decoded, merr := xml.MarshalIndent(s, "", "\t")
			if merr != nil {
				return nil, merr
			}
			passes = append(passes, hookPass{In: string(in), Raw: rc.defined[len(rc.defined)-1], Decoded: string(decoded)})
		}
		return dom, err
	}
	count := 0
	if defaults.SupportsPCIeHotplug(&l.vmi.Spec) {
		count = max(0, 4-len(l.vmi.Spec.Domain.Devices.Interfaces))
	}
	dom, err := network.WithNetworkIfacesResources(l.vmi, &domain.Spec, count, setDomain)
	if domainOnly && errors.Is(err, errNotDefined) {
		return launcherReply{Passes: passes}, nil
	}
	if err != nil {
		return launcherReply{Passes: passes}, err
	}
	defer dom.Free()
	// getDomainCreateFlags (manager.go): no start-paused, no dedicated CPUs.
	if err := dom.CreateWithFlags(libvirt.DOMAIN_NONE); err != nil {
		return launcherReply{Passes: passes}, fmt.Errorf("failed to start the domain: %w", err)
	}
	x, err := dom.GetXMLDesc(0)
	return launcherReply{Passes: passes, XML: x}, err
}

// prepareTarget is prepareMigrationTarget (pkg/virt-launcher/virtwrap/
// live-migration-target.go): the converter and phase 2 for the target,
// then OnDefineDomain, its result discarded: the sidecar's only call on a
// migration target.
func (l *launcherProc) prepareTarget(attach map[string]string) error {
	domain, err := l.domain(attach, true)
	if err != nil {
		return err
	}
	_, err = hooks.GetManager().OnDefineDomain(&domain.Spec, l.vmi)
	return err
}

// linkRefresh is what the target's virt-handler asks of virt-launcher
// after a migration: FinalizeVirtualMachineMigration with each interface's
// binding migration method (domainspec.BindingMigrationByInterfaceName);
// for link-refresh, reconnectGuestNics sets the link down, waits 100 ms and
// sets it up with UpdateDeviceFlags. KubeVirt's own LibvirtDomainManager
// does it, on this launcher's libvirt connection.
func (l *launcherProc) linkRefresh(migration map[string]*cmdv1.InterfaceBindingMigration) error {
	store := agentpoller.NewAsyncAgentStore()
	mgr, err := virtwrap.NewLibvirtDomainManager(l.conn, "/var/run/kubevirt", "/var/run/kubevirt-ephemeral-disks", &store,
		"", nil, metadata.NewCache(), nil, 0, func() ([]int, error) { return nil, nil }, false, false, nil, "", nil,
		api.VMINamespaceKeyFunc(l.vmi), false, false, false)
	if err != nil {
		return err
	}
	return mgr.FinalizeVirtualMachineMigration(l.vmi, &cmdv1.VirtualMachineOptions{InterfaceMigration: migration})
}

// migrate live-migrates the domain peer to peer with the flags KubeVirt
// uses (generateMigrationFlags in live-migration-source.go: live,
// peer-to-peer, persist on the destination), QEMU's stream over a unix
// socket, then, as virt-launcher does once QEMU has gone, calls the
// sidecars' Shutdown.
func (l *launcherProc) migrate(destURI, migrateURI string) error {
	dom, err := l.conn.LookupDomainByName(api.VMINamespaceKeyFunc(l.vmi))
	if err != nil {
		return err
	}
	defer dom.Free()
	params := &libvirt.DomainMigrateParameters{URISet: true, URI: migrateURI}
	flags := libvirt.MIGRATE_LIVE | libvirt.MIGRATE_PEER2PEER | libvirt.MIGRATE_PERSIST_DEST
	if err := dom.MigrateToURI3(destURI, params, flags); err != nil {
		return fmt.Errorf("migration to %s over %s: %w", destURI, migrateURI, err)
	}
	return hooks.GetManager().Shutdown()
}

func (l *launcherProc) liveXML() (string, error) {
	dom, err := l.conn.LookupDomainByName(api.VMINamespaceKeyFunc(l.vmi))
	if err != nil {
		return "", err
	}
	defer dom.Free()
	return dom.GetXMLDesc(0)
}

// stop ends QEMU, then calls the sidecars' Shutdown as virt-launcher's main
// does after QEMU exits.
func (l *launcherProc) stop() error {
	if l.vmi != nil {
		if dom, err := l.conn.LookupDomainByName(api.VMINamespaceKeyFunc(l.vmi)); err == nil {
			_ = dom.DestroyFlags(libvirt.DOMAIN_DESTROY_DEFAULT) // may already be gone
			dom.Free()
		}
	}
	return hooks.GetManager().Shutdown()
}
