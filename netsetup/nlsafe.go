package netsetup

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// dumpAttempts bounds the retries of a netlink dump that the kernel
// interrupted because the table changed under it (NLM_F_DUMP_INTR). The
// pattern is containernetworking/plugins' pkg/netlinksafe: every dump in
// dsbridge goes through RetryDump, never the raw call (make lint checks).
const dumpAttempts = 10

// RetryDump runs dump again while it reports netlink.ErrDumpInterrupted and
// returns the first complete answer.
func RetryDump[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range dumpAttempts {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

func linkList() ([]netlink.Link, error) {
	return RetryDump(netlink.LinkList)
}

func addrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	return RetryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(link, family) })
}

func routeList(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	return RetryDump(func() ([]netlink.Route, error) { return netlink.RouteListFiltered(family, filter, mask) })
}

func neighList(linkIndex, family int) ([]netlink.Neigh, error) {
	return RetryDump(func() ([]netlink.Neigh, error) { return netlink.NeighList(linkIndex, family) })
}

func linkProtinfo(link netlink.Link) (netlink.Protinfo, error) {
	return RetryDump(func() (netlink.Protinfo, error) { return netlink.LinkGetProtinfo(link) })
}
