package ra

import (
	"testing"
)

func BenchmarkBuild(b *testing.B) {
	cfg := kubeOVN112()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClassifyRS is the per-frame receive path: parse, checksum,
// validate an RS.
func BenchmarkClassifyRS(b *testing.B) {
	f := rsFrame(b, guestLLA, 255, nil)
	b.ReportAllocs()
	for b.Loop() {
		if ev, err := classify(f, vmMAC); err != nil || !ev.rs {
			b.Fatal(ev, err)
		}
	}
}

// BenchmarkUnicastFrame is the per-reply send path: a unicast RA frame
// with its checksum, into a reused buffer.
func BenchmarkUnicastFrame(b *testing.B) {
	a, err := NewAdvertiser(kubeOVN112(), nopConn{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	to := target{IP: guestLLA, MAC: vmMAC}
	buf := a.appendFrame(nil, to)
	b.ReportAllocs()
	for b.Loop() {
		buf = a.appendFrame(buf[:0], to)
	}
}
