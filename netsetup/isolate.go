package netsetup

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// AddServicePort attaches port (e.g. the host end of a veth dsbridge serves
// from) to the layout's bridge and marks both it and the uplink isolated, so
// nothing the services send reaches the uplink and nothing from the uplink
// reaches the services (bridge port flag "isolated", Linux 4.18+): isolated ports talk only to
// non-isolated ones, i.e. the VM's tap. The default packet transport on the
// tap adds no service port and needs none of this. Needs NET_ADMIN.
func AddServicePort(l Layout, port string) error {
	link, err := linkByName(port)
	if err != nil {
		return err
	}
	if err := setMaster(link, l.Bridge); err != nil {
		return err
	}
	if err := setIsolated(link); err != nil {
		return err
	}
	up, err := linkByName(l.Uplink)
	if err != nil {
		return err
	}
	if err := setIsolated(up); err != nil {
		return err
	}
	return setUp(link)
}

func setIsolated(link netlink.Link) error {
	if err := netlink.LinkSetIsolated(link, true); err != nil {
		return fmt.Errorf("failed to isolate bridge port %q: %w", link.Attrs().Name, err)
	}
	return nil
}

// Isolated reports whether a bridge port has the isolated flag.
func Isolated(name string) (bool, error) {
	link, err := linkByName(name)
	if err != nil {
		return false, err
	}
	pi, err := linkProtinfo(link)
	if err != nil {
		return false, fmt.Errorf("failed to read bridge port flags of %q: %w", name, err)
	}
	return pi.Isolated, nil
}
