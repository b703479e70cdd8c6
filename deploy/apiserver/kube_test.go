package apiserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// kubeVersion is one Kubernetes release the manifests are proven on: a
// kube-apiserver built from k8s.io/kubernetes at that version through the
// module proxy, in the module at moduleDir.
type kubeVersion struct {
	name      string   // "1.34"
	version   string   // the k8s.io/kubernetes module version
	moduleDir string   // the module that requires it ("." is deploy itself)
	args      []string // extra kube-apiserver flags
	fullTier  string   // the full tier's kustomization for this release
	mapAPI    string   // the MutatingAdmissionPolicy version it serves
}

var kubeVersions = []kubeVersion{
	{
		// The deploy module itself: KubeVirt v1.9.0 pins the staging
		// modules at v0.34.2, so the server shares their build.
		name: "1.34", version: "v1.34.2", moduleDir: ".",
		args: []string{
			"--feature-gates=MutatingAdmissionPolicy=true",
			"--runtime-config=admissionregistration.k8s.io/v1beta1=true",
		},
		fullTier: "../tiers/full-v1beta1", mapAPI: "admissionregistration.k8s.io/v1beta1",
	},
	{
		name: "1.36", version: "v1.36.3", moduleDir: "../kube-apiserver-1.36",
		fullTier: "../tiers/full", mapAPI: "admissionregistration.k8s.io/v1",
	},
}

// cacheDir is where built binaries are kept across runs, outside the
// repository: $DSBRIDGE_CACHE, else the user cache directory + /dsbridge.
func cacheDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("DSBRIDGE_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("no cache directory (set DSBRIDGE_CACHE): %v", err)
	}
	return filepath.Join(d, "dsbridge")
}

// buildLock serialises the kube-apiserver builds: each already uses every
// core, and two at once only contend for them.
var buildLock sync.Mutex

// kubeAPIServer builds the version's kube-apiserver into the cache (go
// build relinks only when an input changed) and returns its path.
func kubeAPIServer(t *testing.T, v kubeVersion) string {
	t.Helper()
	buildLock.Lock()
	defer buildLock.Unlock()
	out := filepath.Join(cacheDir(t), "kube", "kube-apiserver-"+v.version)
	major, minor, _ := strings.Cut(v.name, ".")
	pkg := "k8s.io/component-base/version."
	ldflags := fmt.Sprintf("-s -w -X %sgitVersion=%s -X %sgitMajor=%s -X %sgitMinor=%s",
		pkg, v.version, pkg, major, pkg, minor)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "k8s.io/kubernetes/cmd/kube-apiserver")
	cmd.Dir = v.moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building kube-apiserver %s: %v\n%s", v.version, err, b)
	}
	t.Logf("kube-apiserver %s built or up to date in %v: %s", v.version, time.Since(start).Round(time.Second), out)
	return out
}

// cluster is a kube-apiserver and its etcd, both on 127.0.0.1, started by
// the test and stopped by its cleanup.
type cluster struct {
	config   *rest.Config
	client   kubernetes.Interface
	warnings *warnings
}

// startCluster starts etcd (Debian's etcd-server) and the version's
// kube-apiserver with the default admission chain, token authentication
// for one system:masters user and RBAC.
func startCluster(t *testing.T, v kubeVersion) *cluster {
	t.Helper()
	binary := kubeAPIServer(t, v)
	dir := t.TempDir()
	etcdURL := startEtcd(t, dir)
	token := randomHex(t, 16)
	writeFile(t, filepath.Join(dir, "tokens.csv"), token+",admin,admin,system:masters\n")
	writeServiceAccountKey(t, dir)
	port := freePort(t)
	args := append([]string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
	}, v.args...)
	startProcess(t, dir, "kube-apiserver", binary, args...)
	w := &warnings{}
	config := &rest.Config{
		Host:            "https://127.0.0.1:" + strconv.Itoa(port),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(dir, "certs", "apiserver.crt")},
		QPS:             200,
		Burst:           400,
		WarningHandler:  w,
	}
	c := &cluster{config: config, warnings: w}
	waitReady(t, c, dir)
	return c
}

// waitReady waits for /readyz, then builds the client.
func waitReady(t *testing.T, c *cluster, dir string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		if _, err := os.Stat(c.config.CAFile); err != nil {
			last = err
			continue
		}
		client, err := kubernetes.NewForConfig(c.config)
		if err != nil {
			t.Fatal(err)
		}
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		if err == nil && string(body) == "ok" {
			c.client = client
			return
		}
		last = fmt.Errorf("readyz: %v %s", err, body)
	}
	t.Fatalf("kube-apiserver not ready in 3m: %v\n%s", last, tail(filepath.Join(dir, "kube-apiserver.log")))
}

// startEtcd starts etcd with its data in dir and returns its client URL.
func startEtcd(t *testing.T, dir string) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("no etcd (Debian package etcd-server; make test installs it): %v", err)
	}
	client := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	peer := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	startProcess(t, dir, "etcd", bin,
		"--name=dsbridge", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=dsbridge="+peer, "--log-level=warn")
	return client
}

// startProcess runs a server with its output in dir/<name>.log; the
// cleanup stops it with SIGTERM (SIGKILL after 15 s) and prints the log's
// end if the test failed.
func startProcess(t *testing.T, dir, name, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Killed with the test binary too (a timeout or panic skips cleanups).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // it may have exited already
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill() // Wait below reports the outcome
			<-done
		}
		logFile.Close()
		if t.Failed() {
			t.Logf("%s log (end):\n%s", name, tail(logPath))
		}
	})
}

// tail returns the last 40 lines of a file.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeServiceAccountKey writes the RSA key pair the API server signs and
// verifies service account tokens with (sa.key, sa.pub).
func writeServiceAccountKey(t *testing.T, dir string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var priv, public bytes.Buffer
	// pem.Encode fails only when its writer does; a bytes.Buffer does not.
	_ = pem.Encode(&priv, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	_ = pem.Encode(&public, &pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	writeFile(t, filepath.Join(dir, "sa.key"), priv.String())
	writeFile(t, filepath.Join(dir, "sa.pub"), public.String())
}

// warnings collects the API server's warning headers (a field that is
// dropped, a deprecated API) for the test to assert there are none.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// take returns the warnings since the last call and forgets them.
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}
