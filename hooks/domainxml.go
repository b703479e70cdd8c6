package hooks

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// The domain XML is edited by splicing bytes at offsets the encoding/xml
// decoder reports, never by re-encoding it: KubeVirt's <metadata>, the
// qemu:commandline namespace and elements no Go struct models must reach
// libvirt byte for byte.

// element is one scanned element: its byte span and its start tag's end.
type element struct {
	start, end  int // [start, end) covers the whole element
	startTagEnd int // offset just after the start tag
	endTagStart int // offset of "</name>"; == end for a self-closing element
}

func (e element) selfClosing() bool { return e.endTagStart == e.end }

// domainChild is a direct child of an <interface>.
type domainChild struct {
	name string
	element
}

// ifaceElem is one <interface> directly under <domain><devices>.
type ifaceElem struct {
	element
	alias     string // <alias name>
	targetDev string // <target dev>
	mac       string // <mac address>
	children  []domainChild
}

func (f *ifaceElem) has(child string) bool {
	return slices.ContainsFunc(f.children, func(c domainChild) bool { return c.name == child })
}

// scannedDomain is where things are in a domain XML document.
type scannedDomain struct {
	root       element
	devices    *element // nil without <devices>
	lastDevice *element // last child element of <devices>
	ifaces     []ifaceElem
}

// scanDomain checks that src is well-formed XML with a <domain> root and
// records the offsets of its first <devices> and the <interface> children,
// within the limits OnDefineDomain applies (limits.go).
func scanDomain(src []byte) (*scannedDomain, error) {
	return scanDomainWithin(src, defaultDomainLimits())
}

// scanDomainWithin is scanDomain within the given limits.
func scanDomainWithin(src []byte, limits domainLimits) (*scannedDomain, error) {
	r := &tokenReader{src: src, tokenBudget: limits.tokenBytes}
	d := xml.NewDecoder(r)
	budget := newScanBudget(limits)
	s := &scannedDomain{}
	var (
		path    []string  // names of the open elements
		open    []element // their spans so far
		iface   *ifaceElem
		roots   int
		devDone bool // the first <devices> has been closed
	)
	for {
		off := int(d.InputOffset())
		r.startToken()
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, budget.tokenError(err)
		}
		if err := budget.next(); err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := localName(t.Name)
			path = append(path, name)
			if err := budget.depth(len(path)); err != nil {
				return nil, err
			}
			open = append(open, element{start: off, startTagEnd: int(d.InputOffset())})
			switch depth := len(path); {
			case depth == 1:
				if roots++; roots > 1 {
					return nil, errors.New("invalid domain XML: more than one root element")
				}
				if name != "domain" {
					return nil, fmt.Errorf("invalid domain XML: root element is <%s>, want <domain>", t.Name.Local)
				}
			case depth == 3 && path[1] == "devices" && !devDone && name == "interface":
				iface = &ifaceElem{}
			case depth == 4 && iface != nil:
				iface.noteChild(name, t.Attr)
			}
		case xml.EndElement:
			if len(path) == 0 {
				return nil, errors.New("invalid domain XML: unexpected end element")
			}
			el := open[len(open)-1]
			el.endTagStart, el.end = off, int(d.InputOffset())
			name, depth := path[len(path)-1], len(path)
			path, open = path[:len(path)-1], open[:len(open)-1]
			switch {
			case depth == 1:
				s.root = el
			case depth == 2 && name == "devices" && !devDone:
				devDone = true
				s.devices = &el
			case depth == 3 && path[1] == "devices" && !devDone:
				s.lastDevice = &el
				if iface != nil {
					iface.element = el
					s.ifaces = append(s.ifaces, *iface)
					iface = nil
				}
			case depth == 4 && iface != nil:
				iface.children[len(iface.children)-1].element = el
			}
		}
	}
	if roots == 0 {
		return nil, errors.New("invalid domain XML: no <domain> element")
	}
	return s, nil
}

// noteChild records a direct child of an <interface> and the attributes
// that identify it.
func (f *ifaceElem) noteChild(name string, attrs []xml.Attr) {
	f.children = append(f.children, domainChild{name: name})
	f.noteAttrs(name, attrs)
}

func (f *ifaceElem) noteAttrs(name string, attrs []xml.Attr) {
	get := func(key string) string {
		for _, a := range attrs {
			if a.Name.Space == "" && a.Name.Local == key {
				return a.Value
			}
		}
		return ""
	}
	switch name {
	case "alias":
		if f.alias == "" {
			f.alias = get("name")
		}
	case "target":
		if f.targetDev == "" {
			f.targetDev = get("dev")
		}
	case "mac":
		if f.mac == "" {
			f.mac = get("address")
		}
	}
}

// localName is an element's name when it is in no namespace (libvirt's
// domain elements); namespaced elements never match a libvirt name.
func localName(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}

// splice replaces src[start:end] with text.
type splice struct {
	start, end int
	text       string
}

// applySplices applies the splices in offset order; equal starts keep their
// order in the slice.
func applySplices(src []byte, splices []splice) []byte {
	slices.SortStableFunc(splices, func(a, b splice) int { return a.start - b.start })
	n := len(src)
	for _, s := range splices {
		n += len(s.text) - (s.end - s.start)
	}
	out := make([]byte, 0, max(n, len(src)))
	cursor := 0
	for _, s := range splices {
		// An insertion inside a removed range lands after it.
		s.start, s.end = max(s.start, cursor), max(s.end, cursor)
		out = append(out, src[cursor:s.start]...)
		out = append(out, s.text...)
		cursor = s.end
	}
	return append(out, src[cursor:]...)
}

// indentAt returns the run of blanks that starts the line holding pos, and
// whether pos is the first non-blank on its line (the document is indented).
func indentAt(src []byte, pos int) (string, bool) {
	i := pos
	for i > 0 && (src[i-1] == ' ' || src[i-1] == '\t') {
		i--
	}
	if i > 0 && src[i-1] != '\n' {
		return "", false
	}
	return string(src[i:pos]), true
}

// lineStart returns the offset of the blanks and the one newline before pos,
// so that removing [lineStart(pos), end) removes a whole indented element.
func lineStart(src []byte, pos int) int {
	i := pos
	for i > 0 && (src[i-1] == ' ' || src[i-1] == '\t') {
		i--
	}
	if i > 0 && src[i-1] == '\n' {
		i--
		if i > 0 && src[i-1] == '\r' {
			i--
		}
	}
	return i
}

// escapeAttr escapes s for a double-quoted attribute value.
func escapeAttr(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
	return b.String()
}
