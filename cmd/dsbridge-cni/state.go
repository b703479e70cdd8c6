package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dsbridge/dsbridge/netsetup"
)

// stateVersion is the schema version of state files.
const stateVersion = 1

// state is what one ADD changed, so DEL undoes exactly that. It lives in
// <stateDir>/<containerID>-<ifname>.json.
type state struct {
	Version      int    `json:"version"`
	Network      string `json:"network"` // the CNI network (configuration) name
	ContainerID  string `json:"containerID"`
	IfName       string `json:"ifname"`
	Netns        string `json:"netns"`
	LogicNetwork string `json:"logicNetwork"`
	PodIface     string `json:"podIface"`
	// Sysctls in the order ADD set them; DEL restores in reverse.
	Sysctls []sysctlChange `json:"sysctls"`
	// Plumbing is set when ADD built the managedTap layout.
	Plumbing *plumbState `json:"plumbing,omitempty"`
	// RAResponder is set when ADD attached the kernel uplink programs
	// with the RS->RA responder on, UplinkGuard when it attached them (with
	// or without the responder).
	RAResponder bool `json:"raResponder,omitempty"`
	UplinkGuard bool `json:"uplinkGuard,omitempty"`
	// ServerRoute is set when the local route for the server identifier
	// net was added by dsbridge (this ADD or an earlier attachment of the
	// pod): the last attachment's DEL removes it.
	ServerRoute bool `json:"serverRoute,omitempty"`
}

// sysctlChange is one sysctl ADD wrote: its value before and the value set.
type sysctlChange struct {
	Name string `json:"name"` // path under /proc/sys, e.g. net/ipv4/ip_unprivileged_port_start
	Prev int    `json:"prev"`
	Set  int    `json:"set"`
}

// plumbState is the layout ADD built and the pod interface as it was.
type plumbState struct {
	Layout   netsetup.Layout    `json:"layout"`
	Snapshot *netsetup.Snapshot `json:"snapshot"`
}

func statePath(dir, containerID, ifname string) string {
	return filepath.Join(dir, containerID+"-"+ifname+".json")
}

// saveState writes st atomically (temporary file, rename).
func saveState(dir string, st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode state of %s/%s: %w", st.ContainerID, st.IfName, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create state directory %q: %w", dir, err)
	}
	if err := netsetup.WriteFileAtomic(statePath(dir, st.ContainerID, st.IfName), append(b, '\n')); err != nil {
		return fmt.Errorf("failed to save state: %w", err)
	}
	return nil
}

// loadState reads a state file; a missing one wraps os.ErrNotExist.
func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read state %q: %w", path, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("failed to decode state %q: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state %q has version %d, want %d", path, st.Version, stateVersion)
	}
	return &st, nil
}

func removeState(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to remove state %q: %w", path, err)
	}
	return nil
}

// listStates returns every readable state file in dir with its path. A
// missing dir holds none; unreadable files are skipped (GC must not fail on
// a stray file).
func listStates(dir string) (map[string]*state, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list state directory %q: %w", dir, err)
	}
	out := map[string]*state{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if st, err := loadState(p); err == nil {
			out[p] = st
		}
	}
	return out, nil
}

// siblings returns the other attachments in the same pod (same container
// or same network namespace path): a VM with two dsbridge interfaces, whose
// attachments share the namespace-wide sysctls.
func siblings(dir string, self *state) ([]*state, error) {
	all, err := listStates(dir)
	if err != nil {
		return nil, err
	}
	var out []*state
	for _, st := range all {
		same := st.ContainerID == self.ContainerID || (st.Netns != "" && st.Netns == self.Netns)
		if same && (st.ContainerID != self.ContainerID || st.IfName != self.IfName) {
			out = append(out, st)
		}
	}
	return out, nil
}
