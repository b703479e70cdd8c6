package main

import (
	"flag"

	"github.com/dsbridge/dsbridge/cmd/internal/binding"
)

// registerTimers adds the lease and advertisement timing flags; zero keeps
// the servers' defaults (README "Migration" says why they are what they
// are).
func registerTimers(fs *flag.FlagSet, t *binding.Timers) {
	fs.DurationVar(&t.Lease, "lease-time", 0, "DHCPv4 lease and DHCPv6 valid and preferred lifetime (default 999 days)")
	fs.DurationVar(&t.Renew, "renew-time", 0, "DHCPv4 and DHCPv6 renewal time T1; the rebinding time T2 is twice it (default 1m)")
	fs.DurationVar(&t.RouterLifetime, "router-lifetime", 0, "router advertisement router lifetime (default 30m)")
	fs.DurationVar(&t.PrefixLifetime, "prefix-lifetime", 0, "router advertisement on-link prefix lifetime (default 1h)")
}
