// Package serve is the one shape of dsbridge's DHCPv4 and DHCPv6 servers. A
// Transport moves packets (a packet socket on the VM's tap, or a UDP socket
// on the bridge), a protocol's pure handler turns a request into a reply,
// and Server runs the loop between them: read, rate-limit, handle, send,
// observe, one packet at a time under one context, with panics recovered.
// Event, Outcome and Reason are the vocabulary every service (the router
// advertiser too) reports in.
package serve
