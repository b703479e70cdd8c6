package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
)

// Media types of OCI image-spec v1.1 (media-types.md).
const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// refNameAnnotation names a manifest in an image layout's index.json
// (annotations.md); podman load takes the image's name from it.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// vfs_cap_data as the kernel stores security.capability
// (include/uapi/linux/capability.h): magic_etc, then permitted and
// inheritable of the low 32 capabilities, then of the high 32.
const (
	vfsCapRevision2 = 0x02000000
	capXattrKey     = "SCHILY.xattr.security.capability" // PAX record of an xattr, as GNU tar and containers/storage write it
)

// CapXattr is the security.capability value granting permitted as
// permitted-only file capabilities (no effective bit): what
// `setcap <caps>=p` writes.
func CapXattr(permitted uint64) []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], vfsCapRevision2)
	binary.LittleEndian.PutUint32(b[4:], uint32(permitted))
	binary.LittleEndian.PutUint32(b[12:], uint32(permitted>>32))
	return b
}

// Descriptor is an OCI content descriptor (descriptor.md).
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Config is the part of the OCI image configuration (config.md) dsbridge
// sets.
type Config struct {
	Created      time.Time `json:"created"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       struct {
		User       string   `json:"User"`
		Entrypoint []string `json:"Entrypoint"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []History `json:"history"`
}

// History is one entry of a config's history.
type History struct {
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

// Image is an image encoded as OCI blobs.
type Image struct {
	Manifest, Config, Layer Descriptor
	blobs                   map[string][]byte // by digest
}

// ID is the image's ID in podman and docker: the config's digest.
func (im Image) ID() string { return strings.TrimPrefix(im.Config.Digest, "sha256:") }

// Encode builds the image's layer, config and manifest. The same Spec
// always gives the same bytes: entries in path order, owner 0:0, every time
// stamp s.Created, no host names or modes leaking in.
func Encode(s Spec) (Image, error) {
	layer, err := layerTar(s)
	if err != nil {
		return Image{}, fmt.Errorf("failed to build the layer of %s: %w", s.Ref, err)
	}
	gz, err := gzipped(layer)
	if err != nil {
		return Image{}, fmt.Errorf("failed to compress the layer of %s: %w", s.Ref, err)
	}
	im := Image{blobs: map[string][]byte{}}
	im.Layer = im.add(mediaLayer, gz)
	var cfg Config
	cfg.Created, cfg.Architecture, cfg.OS = s.Created.UTC(), s.Arch, "linux"
	cfg.Config.User, cfg.Config.Entrypoint = s.User, s.Entrypoint
	cfg.RootFS.Type, cfg.RootFS.DiffIDs = "layers", []string{digest(layer)}
	cfg.History = []History{{Created: s.Created.UTC(), CreatedBy: "dsbridge cmd/mkimage"}}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return Image{}, err
	}
	im.Config = im.add(mediaConfig, cb)
	mb, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: mediaManifest, Config: im.Config, Layers: []Descriptor{im.Layer}})
	if err != nil {
		return Image{}, err
	}
	im.Manifest = im.add(mediaManifest, mb)
	im.Manifest.Annotations = map[string]string{refNameAnnotation: s.Ref}
	return im, nil
}

func (im *Image) add(mediaType string, b []byte) Descriptor {
	d := Descriptor{MediaType: mediaType, Digest: digest(b), Size: int64(len(b))}
	im.blobs[d.Digest] = b
	return d
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// layerTar is the image's one layer: its files and their parent
// directories, in path order.
func layerTar(s Spec) ([]byte, error) {
	files := slices.Clone(s.Files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return nil, fmt.Errorf("file path %q is not absolute and clean", f.Path)
		}
		for _, d := range parents(f.Path) {
			if !dirs[d] {
				dirs[d] = true
				if err := tw.WriteHeader(header(d+"/", tar.TypeDir, 0o755, 0, s.Created)); err != nil {
					return nil, err
				}
			}
		}
		h := header(f.Path[1:], tar.TypeReg, int64(f.Mode.Perm()), int64(len(f.Content)), s.Created)
		if f.Caps != 0 {
			h.PAXRecords = map[string]string{capXattrKey: string(CapXattr(f.Caps))}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// parents are p's parent directories below /, outermost first, without
// the leading slash: "/a/b/c" gives "a", "a/b".
func parents(p string) []string {
	var out []string
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		out = append([]string{d[1:]}, out...)
	}
	return out
}

func header(name string, typ byte, mode, size int64, mtime time.Time) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Mode: mode, Size: size, ModTime: mtime.UTC(), Format: tar.FormatPAX}
}

// gzipped compresses b with no name and no time stamp in the header.
func gzipped(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteArchive writes im as an OCI archive: the image layout (oci-layout,
// index.json, blobs/sha256/...) in one tar, which podman load and
// skopeo's oci-archive: transport read.
func (im Image) WriteArchive(w io.Writer, mtime time.Time) error {
	idx, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaIndex, Manifests: []Descriptor{im.Manifest}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	type entry struct {
		name string
		body []byte
	}
	entries := []entry{{"blobs/", nil}, {"blobs/sha256/", nil}}
	for _, d := range slices.Sorted(maps.Keys(im.blobs)) {
		entries = append(entries, entry{"blobs/sha256/" + strings.TrimPrefix(d, "sha256:"), im.blobs[d]})
	}
	entries = append(entries, entry{"index.json", idx}, entry{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)})
	for _, e := range entries {
		h := header(e.name, tar.TypeReg, 0o644, int64(len(e.body)), mtime)
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(e.body); err != nil {
			return err
		}
	}
	return tw.Close()
}
