// Package status keeps what a running dsbridge saw and answered, per VM
// interface and protocol, and serves it on a unix socket: /status as JSON
// for a person (through `dsbridge status`) and /metrics in the Prometheus
// text exposition format 0.0.4, written by hand.
package status
