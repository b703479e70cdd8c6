package image

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// stage is what a Containerfile stage gives an image: its base, the files
// it copies from the build stage (image path -> build path), USER and
// ENTRYPOINT.
type stage struct {
	From       string
	Copies     map[string]string
	User       string
	Entrypoint []string
}

// parseStages reads the Containerfile's stages by name.
func parseStages(t *testing.T, text string) map[string]*stage {
	t.Helper()
	stages := map[string]*stage{}
	var cur *stage
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 4 && f[0] == "FROM" && f[2] == "AS":
			cur = &stage{From: f[1], Copies: map[string]string{}}
			stages[f[3]] = cur
		case cur == nil || len(f) == 0:
		case f[0] == "COPY" && len(f) == 4 && f[1] == "--from=build":
			cur.Copies[f[3]] = f[2]
		case f[0] == "USER" && len(f) == 2:
			cur.User = f[1]
		case f[0] == "ENTRYPOINT":
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ENTRYPOINT ")), &cur.Entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %q: %v", line, err)
			}
		}
	}
	return stages
}

// capNames are the capability names setcap takes for SidecarCaps.
var capNames = map[string]uint64{
	"cap_net_admin": 1 << unix.CAP_NET_ADMIN, "cap_net_raw": 1 << unix.CAP_NET_RAW,
	"cap_net_bind_service": 1 << unix.CAP_NET_BIND_SERVICE,
}

// containerfileCaps returns the build path setcap is run on and the
// permitted-only capabilities it grants.
func containerfileCaps(t *testing.T, text string) (string, uint64) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^RUN setcap '([a-z_,]+)=p' (\S+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("the Containerfile has no \"RUN setcap '<caps>=p' <file>\" line")
	}
	var caps uint64
	for _, n := range strings.Split(m[1], ",") {
		c, ok := capNames[n]
		if !ok {
			t.Fatalf("setcap grants %s, which this test does not know", n)
		}
		caps |= c
	}
	return m[2], caps
}

// TestContainerfileAgrees checks that the Containerfile, which needs a
// registry, and image.Sidecar/CNIInstaller (make image), which do not,
// describe the same images, in everything that can be compared without
// building the Containerfile: the base (scratch), each file and where it
// comes from, which file carries which file capabilities, USER,
// ENTRYPOINT, and the linker flags and /.version text both builds stamp.
func TestContainerfileAgrees(t *testing.T) {
	b, err := os.ReadFile("../../../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	stages := parseStages(t, text)
	capFile, caps := containerfileCaps(t, text)
	s := Stamp{Version: "${VERSION}", Commit: "${COMMIT}", Date: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	for name, spec := range map[string]Spec{"sidecar": Sidecar("", "amd64", s, nil), "cni-installer": CNIInstaller("", "amd64", s, nil)} {
		t.Run(name, func(t *testing.T) {
			st := stages[name]
			if st == nil {
				t.Fatalf("the Containerfile has no stage %s", name)
			}
			want := stage{From: "scratch", Copies: map[string]string{}, User: spec.User, Entrypoint: spec.Entrypoint}
			for _, f := range spec.Files {
				want.Copies[f.Path] = "/out" + f.Path
				if got := map[bool]uint64{true: caps}[want.Copies[f.Path] == capFile]; got != f.Caps {
					t.Errorf("%s: the Containerfile grants file capabilities %#x, make image %#x", f.Path, got, f.Caps)
				}
			}
			if diff := cmp.Diff(want, *st); diff != "" {
				t.Errorf("Containerfile stage %s vs make image (-make image +Containerfile):\n%s", name, diff)
			}
		})
	}
	// The build stage's stamps, with the shell's variables for the values.
	ld := strings.NewReplacer("2026-12-01T00:00:00Z", "${DATE}").Replace(s.LDFlags())
	if !strings.Contains(text, `ldflags="`+ld+`"`) {
		t.Errorf("the Containerfile's ldflags differ from make image's %q", ld)
	}
	if !strings.Contains(text, `go build `+strings.Join(BuildFlags(), " ")+` -ldflags "$ldflags" -o /out/dsbridge ./cmd/dsbridge`) ||
		!strings.Contains(text, "CGO_ENABLED=0") {
		t.Error("the Containerfile no longer builds /out/dsbridge static and with BuildFlags as image.Build does")
	}
	if got := strings.NewReplacer("2026-12-01T00:00:00Z", "%s", "${VERSION}", "%s", "${COMMIT}", "%s").Replace(string(s.VersionFile())); !strings.Contains(text, "printf '"+strings.TrimSuffix(got, "\n")+`\n' "$VERSION" "$COMMIT" "$DATE" > /out/.version`) {
		t.Errorf("the Containerfile writes /.version differently from make image (%q)", got)
	}
}
