package main

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// netCaps are the capabilities the full tier uses: NET_ADMIN (plumbing,
// port isolation), NET_RAW (packet transport, RA) and NET_BIND_SERVICE
// (UDP 67 and 547). The image gives the binary these as permitted-only file
// capabilities (setcap ...=p, no effective bit) so that exec never fails
// when the pod's bounding set lacks them; raiseNetCaps makes the ones the
// pod granted effective.
const netCaps = 1<<unix.CAP_NET_BIND_SERVICE | 1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_NET_RAW

// raiseNetCaps adds the permitted ones of netCaps to the effective set of
// every thread of the process and returns the capabilities it raised. Call
// it first thing in main: capabilities are per thread, and threads created
// later inherit the creator's. Permitted capabilities outside netCaps stay
// as they are. It needs a static (CGO_ENABLED=0) binary: with cgo, Go
// cannot change every thread and it returns an error.
func raiseNetCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("failed to read capabilities: %w", err)
	}
	eff := uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	perm := uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
	raise := perm & netCaps &^ eff
	if raise == 0 {
		return 0, nil
	}
	eff |= raise
	data[0].Effective, data[1].Effective = uint32(eff), uint32(eff>>32)
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno != 0 {
		return 0, fmt.Errorf("failed to raise capabilities %#x on every thread: %w", raise, errno)
	}
	return raise, nil
}
