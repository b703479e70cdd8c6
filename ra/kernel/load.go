package kernel

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// object is bpf/responder.c compiled by `make generate`.
//
//go:embed responder.o
var object []byte

// The programs' function names in bpf/responder.c.
const (
	egressProgram  = "dsbridge_egress"
	ingressProgram = "dsbridge_ingress"
)

// minKernel is the oldest Linux the programs load on: they keep their
// configuration in global data whose read-only part the kernel freezes, so
// that the verifier sees the frame length as a constant (Linux 5.2). Every
// helper they call is older (bpf_skb_change_tail, the newest, is 4.9), and
// so is writing skb->mark from tc.
var minKernel = kernelVersion{5, 2}

type kernelVersion struct{ major, minor int }

func (v kernelVersion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func (v kernelVersion) less(o kernelVersion) bool {
	return v.major < o.major || v.major == o.major && v.minor < o.minor
}

// parseRelease reads "major.minor" from a kernel release ("6.18.44-fc").
func parseRelease(release string) (kernelVersion, error) {
	f := strings.FieldsFunc(release, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		return kernelVersion{}, fmt.Errorf("unrecognised kernel release %q", release)
	}
	major, err1 := strconv.Atoi(f[0])
	minor, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil {
		return kernelVersion{}, fmt.Errorf("unrecognised kernel release %q: %w", release, err)
	}
	return kernelVersion{major, minor}, nil
}

// checkKernel fails on a kernel older than minKernel, naming both.
func checkKernel(release string) error {
	v, err := parseRelease(release)
	if err != nil {
		return err
	}
	if v.less(minKernel) {
		return fmt.Errorf("the kernel uplink programs need Linux %v or later, this is %s", minKernel, release)
	}
	return nil
}

// kernelRelease is uname -r.
func kernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("failed to read the kernel release: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// spec parses the embedded object and sets its read-only globals.
func spec(v vars) (*ebpf.CollectionSpec, error) {
	s, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(object))
	if err != nil {
		return nil, fmt.Errorf("failed to parse the uplink program object: %w", err)
	}
	buf := make([]byte, maxFrame)
	copy(buf, v.frame)
	for name, val := range map[string]any{
		"vm_mac":     v.vmMAC,
		"gw_lla":     v.gwLLA,
		"refresh_ns": v.refreshNS,
		"frame_len":  uint32(len(v.frame)),
		"ra_frame":   buf,
		"sid_net":    v.sidNet,
		"sid_mask":   v.sidMask,
	} {
		vs, ok := s.Variables[name]
		if !ok {
			return nil, fmt.Errorf("uplink program object has no variable %q", name)
		}
		if err := vs.Set(val); err != nil {
			return nil, fmt.Errorf("failed to set uplink program variable %q: %w", name, err)
		}
	}
	return s, nil
}

// load verifies and loads the programs for v. The caller closes the
// collection; its programs are Programs[egressProgram] and
// Programs[ingressProgram], sharing the learned state.
func load(v vars, opts ebpf.ProgramOptions) (*ebpf.Collection, error) {
	release, err := kernelRelease()
	if err != nil {
		return nil, err
	}
	if err := checkKernel(release); err != nil {
		return nil, err
	}
	s, err := spec(v)
	if err != nil {
		return nil, err
	}
	coll, err := ebpf.NewCollectionWithOptions(s, ebpf.CollectionOptions{Programs: opts})
	if err != nil {
		return nil, fmt.Errorf("failed to load the uplink programs (needs Linux %v or later, this is %s): %w", minKernel, release, err)
	}
	for _, name := range []string{egressProgram, ingressProgram} {
		if coll.Programs[name] == nil {
			coll.Close()
			return nil, fmt.Errorf("uplink program object has no program %q", name)
		}
	}
	return coll, nil
}
