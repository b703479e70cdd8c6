package hooks

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
)

// NewLogger returns a logger writing KubeVirt-style JSON lines:
// {"component":...,"level":"info","msg":...,"pos":"file.go:42","timestamp":...},
// the timestamp in UTC with microseconds as KubeVirt writes it.
func NewLogger(w io.Writer, component string, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		AddSource:   true,
		Level:       level,
		ReplaceAttr: kubevirtStyle,
	})
	return slog.New(h).With("component", component)
}

// timestampFormat is KubeVirt's: RFC 3339 with microseconds.
const timestampFormat = "2006-01-02T15:04:05.000000Z07:00"

// kubevirtStyle renames slog's built-in keys to KubeVirt's.
func kubevirtStyle(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		return slog.String("timestamp", a.Value.Time().UTC().Format(timestampFormat))
	case slog.LevelKey:
		return slog.String("level", strings.ToLower(a.Value.String()))
	case slog.SourceKey:
		if src, ok := a.Value.Any().(*slog.Source); ok {
			return slog.String("pos", fmt.Sprintf("%s:%d", filepath.Base(src.File), src.Line))
		}
	}
	return a
}
