package netsetup

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtool commands (linux/ethtool.h).
const (
	ethtoolGTXCSUM = 0x16
	ethtoolSTXCSUM = 0x17
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data (a pointer) as its union member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// txChecksumOff turns TX checksum offload off on ifname, as KubeVirt does for
// its bridges (ethtool -K <br> tx off). A device that does not support the
// setting is left alone.
func txChecksumOff(ifname string) error {
	on, err := ethtoolValueOf(ifname, ethtoolGTXCSUM)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return nil
		}
		return fmt.Errorf("failed to read TX checksumming of %q: %w", ifname, err)
	}
	if on == 0 {
		return nil
	}
	if err := ethtoolSet(ifname, ethtoolSTXCSUM, 0); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("failed to turn TX checksumming off on %q: %w", ifname, err)
	}
	return nil
}

func ethtoolValueOf(ifname string, cmd uint32) (uint32, error) {
	v := ethtoolValue{cmd: cmd}
	err := ethtoolIoctl(ifname, &v)
	return v.data, err
}

func ethtoolSet(ifname string, cmd, data uint32) error {
	v := ethtoolValue{cmd: cmd, data: data}
	return ethtoolIoctl(ifname, &v)
}

// ethtoolIoctl issues SIOCETHTOOL on a datagram socket opened on the
// caller's thread (hence in the caller's network namespace).
func ethtoolIoctl(ifname string, v *ethtoolValue) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("failed to open ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	var req ifreqData
	copy(req.name[:unix.IFNAMSIZ-1], ifname)
	req.data = uintptr(unsafe.Pointer(v))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req)))
	if errno != 0 {
		return errno
	}
	return nil
}
