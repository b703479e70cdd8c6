package lab

// T is the part of testing.TB the lab uses, so the demo program can build
// the same lab outside a test. *testing.T and *testing.B satisfy it.
type T interface {
	Helper()
	Cleanup(func())
	TempDir() string
	Failed() bool
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}
