package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

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

// annotationPrefix starts the VMI annotations that set one VM's timers, the
// flags' names after it (dsbridge.io/lease-time: 20m): KubeVirt starts the
// sidecar without arguments, and which timers a VM needs depends on its
// guest's DHCP clients (README "Migration").
const annotationPrefix = "dsbridge.io/"

// timersFor is base with the VMI's timer annotations applied. An
// annotation under annotationPrefix that names no timer, or whose value is
// not a positive duration, is an error naming it.
func timersFor(base binding.Timers, annotations map[string]string) (binding.Timers, error) {
	t := base
	timers := map[string]*time.Duration{"lease-time": &t.Lease, "renew-time": &t.Renew,
		"router-lifetime": &t.RouterLifetime, "prefix-lifetime": &t.PrefixLifetime}
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(annotations)) {
		name, ok := strings.CutPrefix(key, annotationPrefix)
		if !ok {
			continue
		}
		d, known := timers[name]
		if !known {
			errs = append(errs, fmt.Errorf("annotation %s: unknown (dsbridge.io/ takes lease-time, renew-time, router-lifetime, prefix-lifetime)", key))
			continue
		}
		v, err := time.ParseDuration(annotations[key])
		if err != nil || v <= 0 {
			errs = append(errs, fmt.Errorf("annotation %s: %q is not a positive duration (e.g. 20m)", key, annotations[key]))
			continue
		}
		*d = v
	}
	return t, errors.Join(errs...)
}
