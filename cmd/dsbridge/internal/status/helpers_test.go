package status

import (
	"os"
	"testing"
)

// shortDir is a temporary directory with a short path: unix socket paths
// are limited to 108 bytes.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "dsb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
