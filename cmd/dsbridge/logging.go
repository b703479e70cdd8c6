package main

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/dsbridge/dsbridge/hooks"
)

// identityKeys are the attributes naming the VMI in KubeVirt's log lines.
var identityKeys = [...]string{"namespace", "name", "uid"}

// identityHandler adds the VMI's namespace, name and uid to every record
// once they are known, as KubeVirt's components do, unless a logger
// derived from it already carries them.
type identityHandler struct {
	inner slog.Handler
	attrs *atomic.Pointer[[]slog.Attr] // shared by every derived handler
	has   bool                         // the identity is already among inner's attributes
}

func newIdentityHandler(inner slog.Handler) *identityHandler {
	return &identityHandler{inner: inner, attrs: new(atomic.Pointer[[]slog.Attr])}
}

// set records the VMI for all later records.
func (h *identityHandler) set(v hooks.VMIIdentity) {
	a := []slog.Attr{slog.String("namespace", v.Namespace), slog.String("name", v.Name), slog.String("uid", v.UID)}
	h.attrs.Store(&a)
}

func (h *identityHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *identityHandler) Handle(ctx context.Context, r slog.Record) error {
	if a := h.attrs.Load(); a != nil && !h.has {
		r = r.Clone()
		r.AddAttrs(*a...)
	}
	return h.inner.Handle(ctx, r)
}

func (h *identityHandler) WithAttrs(as []slog.Attr) slog.Handler {
	has := h.has
	for _, a := range as {
		for _, k := range identityKeys {
			has = has || a.Key == k
		}
	}
	return &identityHandler{inner: h.inner.WithAttrs(as), attrs: h.attrs, has: has}
}

func (h *identityHandler) WithGroup(name string) slog.Handler {
	return &identityHandler{inner: h.inner.WithGroup(name), attrs: h.attrs, has: h.has}
}
