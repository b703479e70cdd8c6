package hooks

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"
)

// NewLogger returns a logger writing KubeVirt-style JSON lines:
// {"component":...,"level":"info","msg":...,"pos":"file.go:42","timestamp":...}.
func NewLogger(w io.Writer, component string, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		AddSource:   true,
		Level:       level,
		ReplaceAttr: kubevirtStyle,
	})
	return slog.New(h).With("component", component)
}

// kubevirtStyle renames slog's built-in keys to KubeVirt's.
func kubevirtStyle(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		return slog.String("timestamp", a.Value.Time().UTC().Format(time.RFC3339Nano))
	case slog.LevelKey:
		return slog.String("level", strings.ToLower(a.Value.String()))
	case slog.SourceKey:
		if src, ok := a.Value.Any().(*slog.Source); ok {
			return slog.String("pos", fmt.Sprintf("%s:%d", filepath.Base(src.File), src.Line))
		}
	}
	return a
}
