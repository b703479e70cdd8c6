package main

import (
	"fmt"
	"os"
	"sync"
)

// demo implements lab.T for a program: failures print and stop, cleanups
// run last-in first-out at exit.
type demo struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

type fatal struct{}

func (d *demo) Helper()                 {}
func (d *demo) Cleanup(f func())        { d.mu.Lock(); d.cleanups = append(d.cleanups, f); d.mu.Unlock() }
func (d *demo) Failed() bool            { d.mu.Lock(); defer d.mu.Unlock(); return d.failed }
func (d *demo) Logf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }

func (d *demo) Errorf(f string, a ...any) {
	d.mu.Lock()
	d.failed = true
	d.mu.Unlock()
	fmt.Fprintf(os.Stderr, "FAIL: "+f+"\n", a...)
}

func (d *demo) Fatal(a ...any)            { d.Errorf("%s", fmt.Sprint(a...)); panic(fatal{}) }
func (d *demo) Fatalf(f string, a ...any) { d.Errorf(f, a...); panic(fatal{}) }
func (d *demo) Skipf(f string, a ...any)  { d.Fatalf("cannot run the demo: "+f, a...) }

func (d *demo) TempDir() string {
	dir, err := os.MkdirTemp("", "dsbridge-demo-")
	if err != nil {
		d.Fatal(err)
	}
	d.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (d *demo) cleanup() {
	d.mu.Lock()
	cs := d.cleanups
	d.cleanups = nil
	d.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}
