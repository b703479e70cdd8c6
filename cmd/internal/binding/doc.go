// Package binding is the one place where a pod's network becomes what
// dsbridge runs for one VM interface: the snapshot of the pod interface,
// the plan (tier and, per service, whether and how it runs), the plumbing
// adopted or built, and the DHCPv4, DHCPv6 and router advertisement
// configurations. Both binaries use it: dsbridge (sidecar, serve, dhcp,
// inspect) and dsbridge-cni (the kernel RA responder's advertisement).
package binding
