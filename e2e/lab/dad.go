package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DuplicateAddressDetection turns the guest's DAD on (accept_dad=1, one
// probe), as a VM's kernel has it by default; the lab's guest has it off
// so that clients need not wait for a tentative link-local address. Call
// it while the guest's link is down (NewLab leaves it down).
func (l *Lab) DuplicateAddressDetection(t T) {
	t.Helper()
	l.Guest.Run(t, "sysctl", "-qw", "net.ipv6.conf."+l.GuestIf+".accept_dad=1", "net.ipv6.conf."+l.GuestIf+".dad_transmits=1")
}

// Dhclient6AfterDAD starts dhclient -6 once the guest has a link-local
// address that is no longer tentative, as Debian's ifupdown does before
// it runs dhclient -6 (/lib/ifupdown/wait-for-ll6.sh): dhclient -6 exits
// at once while the address is tentative.
func (l *Lab) Dhclient6AfterDAD(t T) *Client {
	t.Helper()
	dir := l.clientDir(t, "dhclient", dhclientScript)
	conf := filepath.Join(dir, "dhclient.conf")
	if err := os.WriteFile(conf, []byte(dhclientConf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"dhclient", "-6", "-d", "-v", "-cf", conf, "-sf", filepath.Join(dir, "script"),
		"-lf", filepath.Join(dir, "lease-6"), "-pf", filepath.Join(dir, "pid-6"), l.GuestIf}
	sh := fmt.Sprintf(`until ip -6 addr show dev %[1]s scope link -tentative | grep -q inet6; do sleep 0.01; done; exec %[2]s`,
		l.GuestIf, strings.Join(args, " "))
	return l.start(t, "dhclient-6", dir, "sh", "-c", sh)
}
