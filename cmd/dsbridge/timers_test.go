package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/hooks"
)

// TestTimersFor: a VMI's dsbridge.io/ annotations set its timers over the
// flags'; other annotations are ignored; an unknown timer or a value that
// is not a positive duration is an error naming the annotation.
func TestTimersFor(t *testing.T) {
	t.Parallel()
	flags := binding.Timers{Lease: time.Hour, Renew: time.Minute}
	for _, row := range []struct {
		name        string
		annotations map[string]string
		want        binding.Timers
		err         string
	}{
		{name: "none", want: flags},
		{name: "others ignored", annotations: map[string]string{"kubevirt.io/latest-observed-api-version": "v1", "lease-time": "1s"}, want: flags},
		{name: "every timer", annotations: map[string]string{"dsbridge.io/lease-time": "20m", "dsbridge.io/renew-time": "30s",
			"dsbridge.io/router-lifetime": "15m", "dsbridge.io/prefix-lifetime": "2h"},
			want: binding.Timers{Lease: 20 * time.Minute, Renew: 30 * time.Second, RouterLifetime: 15 * time.Minute, PrefixLifetime: 2 * time.Hour}},
		{name: "one timer, the flags' others", annotations: map[string]string{"dsbridge.io/lease-time": "10s"},
			want: binding.Timers{Lease: 10 * time.Second, Renew: time.Minute}},
		{name: "unknown timer", annotations: map[string]string{"dsbridge.io/leasetime": "20m"},
			err: "annotation dsbridge.io/leasetime: unknown (dsbridge.io/ takes lease-time, renew-time, router-lifetime, prefix-lifetime)"},
		{name: "not a duration", annotations: map[string]string{"dsbridge.io/renew-time": "60"},
			err: `annotation dsbridge.io/renew-time: "60" is not a positive duration (e.g. 20m)`},
		{name: "zero", annotations: map[string]string{"dsbridge.io/lease-time": "0s"},
			err: `annotation dsbridge.io/lease-time: "0s" is not a positive duration (e.g. 20m)`},
		{name: "two errors, both named", annotations: map[string]string{"dsbridge.io/lease-time": "-1m", "dsbridge.io/x": "1m"},
			err: "annotation dsbridge.io/lease-time: \"-1m\" is not a positive duration (e.g. 20m)\n" +
				"annotation dsbridge.io/x: unknown (dsbridge.io/ takes lease-time, renew-time, router-lifetime, prefix-lifetime)"},
	} {
		t.Run(row.name, func(t *testing.T) {
			got, err := timersFor(flags, row.annotations)
			if row.err != "" {
				if err == nil || err.Error() != row.err {
					t.Fatalf("timersFor error = %v, want %q", err, row.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(row.want, got); diff != "" {
				t.Errorf("timers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBindRefusesBadTimerAnnotation: OnDefineDomain for a VMI with a bad
// timer annotation fails with the VMI and the annotation named, before
// anything is planned or started.
func TestBindRefusesBadTimerAnnotation(t *testing.T) {
	t.Parallel()
	b := &binder{log: slog.New(slog.DiscardHandler)}
	vmi := hooks.VMIIdentity{Namespace: "vms", Name: "vm1", Annotations: map[string]string{"dsbridge.io/lease-time": "soon"}}
	err := b.Bind(context.Background(), vmi, []hooks.BoundInterface{{Name: "default"}})
	want := `VMI vms/vm1: annotation dsbridge.io/lease-time: "soon" is not a positive duration (e.g. 20m)`
	if err == nil || err.Error() != want {
		t.Fatalf("Bind = %v, want %q", err, want)
	}
}
