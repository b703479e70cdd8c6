// Command demo is the README's main job: it builds the standard lab (a
// Kube-OVN-like dual-stack pod, its gateway and a guest), runs `dsbridge
// serve` in the pod, boots the guest's real DHCP client, and prints what the
// pod had, what the guest got, how long each family took, whether both
// gateways and the addresses beyond them answered, and whether anything
// leaked onto the uplink. Everything it creates is removed before it exits.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

func main() {
	bin := flag.String("dsbridge", "bin/dsbridge", "path to the dsbridge binary")
	flag.Parse()
	d := &demo{}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "interrupted: cleaning up")
		d.cleanup()
		os.Exit(130)
	}()
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(fatal); !ok {
					panic(r)
				}
				code = 1
			}
		}()
		d.run(*bin)
	}()
	d.cleanup()
	if code == 0 && d.Failed() {
		code = 1
	}
	os.Exit(code)
}

func (d *demo) run(bin string) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		d.Fatal(err)
	}
	spec := lab.KubeOVN
	l := lab.NewLab(d, spec)
	fmt.Printf("dsbridge demo: a guest behind a %s-like dual-stack pod\n\n", spec.Name)
	fmt.Printf("pod %s as the CNI left it:\n  %s and %s, default via %s and %s, MTU %d\n  DNS %s, search %s\n\n",
		spec.PodIface, spec.IPv4, spec.IPv6, spec.Gateway4, spec.Gateway6, spec.MTU,
		strings.Join(spec.DNS, " "), strings.Join(spec.Search, " "))

	leak := lab.StartCapture(d, l.Node, l.NodeIf, lab.LeakFilter)
	state := d.TempDir()
	srv := l.Pod.Start(d, abs, "serve", "--pod-iface", spec.PodIface, "--tap", l.Tap,
		"--resolv-conf", l.ResolvConf, "--hostname", l.Hostname, "--state-dir", state)
	d.waitServing(l, srv, abs, filepath.Join(state, "status.sock"))

	start := time.Now()
	client := l.Dhcpcd(d)
	v4, v6 := d.waitConfigured(l, start)
	env := client.Env(d, 5*time.Second, "BOUND", "REBOOT")
	env6 := client.Env(d, 5*time.Second, "BOUND6", "REBOOT6")
	d.report(l, v4, v6, env, env6)
	d.pings(l)
	client.Stop()
	pkts := leak.Stop(d)
	if len(pkts) == 0 {
		fmt.Println("\nuplink capture (gateway side, whole run): no DHCPv4 reply, no DHCPv6 reply, no RA from dsbridge")
	} else {
		d.Errorf("uplink capture holds %d packets dsbridge must never send there:\n  %s", len(pkts), strings.Join(pkts, "\n  "))
	}
	if !d.Failed() {
		fmt.Println("\nresult: PASS")
	}
}

// waitServing waits until dsbridge serve's status says every service of the
// interface runs (it opens their sockets after the plumbing).
func (d *demo) waitServing(l *lab.Lab, srv *exec.Cmd, bin, socket string) {
	lab.WaitFor(d, 20*time.Second, "dsbridge serve to run its services", func() bool {
		if srv.ProcessState != nil {
			d.Fatalf("dsbridge serve exited: %v", srv.ProcessState)
		}
		out, err := l.Pod.Exec(bin, "status", "--socket", socket, "--json")
		if err != nil {
			return false
		}
		var doc struct {
			Interfaces []struct {
				Services []struct{ Running bool }
			}
		}
		if json.Unmarshal([]byte(out), &doc) != nil || len(doc.Interfaces) == 0 || len(doc.Interfaces[0].Services) == 0 {
			return false
		}
		return !slices.ContainsFunc(doc.Interfaces[0].Services, func(s struct{ Running bool }) bool { return !s.Running })
	})
}

// waitConfigured polls the guest until both families have an address and a
// default route, and returns how long each took from link up.
func (d *demo) waitConfigured(l *lab.Lab, start time.Time) (v4, v6 time.Duration) {
	want4, want6 := l.Spec.IPv4, hostAddr(l.Spec.IPv6)
	lab.WaitFor(d, 30*time.Second, "the guest to configure both families", func() bool {
		addrs := strings.Join(lab.Addrs(d, l.Guest, l.GuestIf), " ")
		if v4 == 0 && strings.Contains(addrs, want4) && lab.DefaultVia(d, l.Guest, "-4") != "" {
			v4 = time.Since(start)
		}
		if v6 == 0 && strings.Contains(addrs, want6) && lab.DefaultVia(d, l.Guest, "-6") != "" {
			v6 = time.Since(start)
		}
		return v4 != 0 && v6 != 0
	})
	return v4, v6
}

// onLinkPrefix is the masked prefix of a pod address.
func onLinkPrefix(addr string) string { return netip.MustParsePrefix(addr).Masked().String() }

func hostAddr(prefix string) string { return prefix[:strings.IndexByte(prefix, '/')] }

func (d *demo) report(l *lab.Lab, v4, v6 time.Duration, env, env6 map[string]string) {
	g := l.Guest
	fmt.Printf("guest %s (dhcpcd, link up to configured):\n", l.GuestIf)
	fmt.Printf("  IPv4 %-22s default via %-26s %6.2f s\n", l.Spec.IPv4, lab.DefaultVia(d, g, "-4"), v4.Seconds())
	var v6addrs []string
	for _, a := range lab.Addrs(d, g, l.GuestIf) {
		if strings.Contains(a, ":") {
			v6addrs = append(v6addrs, a)
		}
	}
	fmt.Printf("  IPv6 %-22s default via %-26s %6.2f s\n", strings.Join(v6addrs, " "), lab.DefaultVia(d, g, "-6"), v6.Seconds())
	for _, r := range lab.Routes(d, g, "-6") {
		if r.Dst == onLinkPrefix(l.Spec.IPv6) && r.Gateway == "" {
			fmt.Printf("  IPv6 %-22s on-link (router advertisement, no SLAAC address)\n", r.Dst)
		}
	}
	fmt.Printf("  MTU %s (dhcpcd applies it to its routes), hostname %s\n", env["new_interface_mtu"], env["new_host_name"])
	fmt.Printf("  DNS %s and %s, search %s\n", env["new_domain_name_servers"], env6["new_dhcp6_name_servers"],
		env["new_domain_search"])
	fmt.Println("  (dhcpcd probes its IPv4 address by ARP for several seconds before using it, RFC 5227)")
	if got := lab.DefaultVia(d, g, "-6"); got != l.GatewayLLA() {
		d.Errorf("guest IPv6 default router %q, want the gateway's link-local %s", got, l.GatewayLLA())
	}
}

// pings checks both gateways and the off-link targets beyond them answer.
func (d *demo) pings(l *lab.Lab) {
	fmt.Println("\npings from the guest:")
	for _, dst := range []struct{ addr, what string }{
		{l.Spec.Gateway4, "IPv4 gateway"}, {l.Spec.Gateway6, "IPv6 gateway"},
		{lab.OffLink4, "beyond the IPv4 gateway"}, {lab.OffLink6, "beyond the IPv6 gateway"},
	} {
		out, err := l.Guest.Exec("ping", "-c", "5", "-i", "0.2", "-W", "2", dst.addr)
		status := "5/5 answered"
		if err != nil || !strings.Contains(out, " 0% packet loss") {
			status = "FAILED"
			d.Errorf("ping %s (%s) from the guest failed:\n%s", dst.addr, dst.what, out)
		}
		fmt.Printf("  %-16s %-26s %s\n", dst.addr, dst.what, status)
	}
}
