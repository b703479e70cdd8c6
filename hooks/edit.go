package hooks

import (
	"fmt"
	"strings"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// EditDomain upserts one <interface type="ethernet"> with alias
// "ua-<name>" for every VMI interface bound to plugin and returns the
// edited domain XML and the bound interfaces as the domain now has them.
//
// An interface already in the domain (written by KubeVirt's managedTap, or
// by an earlier call) keeps what it has; only missing children are added. A
// new one is placed in VMI spec order among the "ua-" interfaces, before
// KubeVirt's placeholder-N interfaces. Every other byte of the document is
// kept, so EditDomain applied to its own output returns it unchanged.
func EditDomain(domainXML []byte, vmi *VMI, plugin string, facts PodFacts) ([]byte, []BoundInterface, error) {
	want, err := planInterfaces(vmi, plugin, facts)
	if err != nil {
		return nil, nil, err
	}
	doc, err := scanDomain(domainXML)
	if err != nil {
		return nil, nil, err
	}
	e := editor{src: domainXML, doc: doc, order: specOrder(vmi)}
	bound := make([]BoundInterface, 0, len(want))
	for _, w := range want {
		b, err := e.upsert(w)
		if err != nil {
			return nil, nil, fmt.Errorf("interface %q: %w", w.bound.Name, err)
		}
		bound = append(bound, b)
	}
	if len(e.splices) == 0 {
		return domainXML, bound, nil
	}
	return applySplices(domainXML, e.splices), bound, nil
}

// specOrder maps every VMI interface name to its spec position.
func specOrder(vmi *VMI) map[string]int {
	order := make(map[string]int, len(vmi.Spec.Domain.Devices.Interfaces))
	for i, iface := range vmi.Spec.Domain.Devices.Interfaces {
		if _, dup := order[iface.Name]; !dup {
			order[iface.Name] = i
		}
	}
	return order
}

// editor collects the splices of one EditDomain call.
type editor struct {
	src     []byte
	doc     *scannedDomain
	order   map[string]int
	splices []splice
}

// upsert fills or inserts the wanted interface; duplicates of its alias
// (which libvirt would refuse) are removed.
func (e *editor) upsert(w wantIface) (BoundInterface, error) {
	var found *ifaceElem
	for i := range e.doc.ifaces {
		f := &e.doc.ifaces[i]
		if f.alias != w.alias {
			continue
		}
		if found == nil {
			found = f
			continue
		}
		e.splices = append(e.splices, splice{start: lineStart(e.src, f.start), end: f.end})
	}
	if found == nil {
		return w.bound, e.insert(w)
	}
	return e.fill(found, w)
}

// fill adds the wanted children the existing interface lacks, after its
// last child, and reports its effective tap and MAC.
func (e *editor) fill(f *ifaceElem, w wantIface) (BoundInterface, error) {
	last := f.children[len(f.children)-1] // the alias, at least
	indent, indented := indentAt(e.src, last.start)
	var text strings.Builder
	for _, c := range w.children {
		if f.has(c.name) {
			continue
		}
		if c.err != nil {
			return BoundInterface{}, c.err
		}
		if indented {
			text.WriteString("\n" + indent)
		}
		text.WriteString(c.xml)
	}
	if text.Len() > 0 {
		e.splices = append(e.splices, splice{start: last.end, end: last.end, text: text.String()})
	}
	b := w.bound
	if f.targetDev != "" {
		b.Tap = f.targetDev
	}
	// The domain's <mac> is the VM's unless the VMI's status names the
	// running VM's: on a live-migration target the domain KubeVirt v1.9.0
	// prepares carries the target pod's MAC (seen in e2e/kubevirt's
	// changed-addresses migration), while the VM keeps its own (the domain
	// that runs there comes from the source).
	if f.mac != "" && !w.running {
		mac, err := frame.ParseMAC(f.mac)
		if err != nil {
			return BoundInterface{}, fmt.Errorf("domain interface %q has an invalid MAC: %w", w.alias, err)
		}
		b.MAC = mac
	}
	return b, nil
}

// insert writes a new element at its place in spec order.
func (e *editor) insert(w wantIface) error {
	for _, c := range w.children {
		if c.err != nil {
			return c.err
		}
	}
	unit := e.indentUnit()
	if anchor := e.anchorBefore(w.bound.Index); anchor != nil {
		indent, indented := indentAt(e.src, anchor.start)
		text := render(w, indent, unit, indented)
		if indented {
			text += "\n" + indent
		}
		e.splices = append(e.splices, splice{start: anchor.start, end: anchor.start, text: text})
		return nil
	}
	if last := e.lastInterface(); last != nil {
		e.appendAfter(w, last.element, unit)
		return nil
	}
	if e.doc.lastDevice != nil {
		e.appendAfter(w, *e.doc.lastDevice, unit)
		return nil
	}
	e.insertIntoEmpty(w)
	return nil
}

// appendAfter writes the element on its own line after el.
func (e *editor) appendAfter(w wantIface, el element, unit string) {
	indent, indented := indentAt(e.src, el.start)
	text := render(w, indent, unit, indented)
	if indented {
		text = "\n" + indent + text
	}
	e.splices = append(e.splices, splice{start: el.end, end: el.end, text: text})
}

// insertIntoEmpty writes the element, unindented, into an empty <devices>,
// or a new <devices> into <domain>.
func (e *editor) insertIntoEmpty(w wantIface) {
	text := render(w, "", "", false)
	if dev := e.doc.devices; dev != nil {
		if dev.selfClosing() { // "<devices/>" -> "<devices>...</devices>"
			e.splices = append(e.splices, splice{start: dev.end - 2, end: dev.end, text: ">" + text + "</devices>"})
			return
		}
		e.splices = append(e.splices, splice{start: dev.endTagStart, end: dev.endTagStart, text: text})
		return
	}
	root := e.doc.root
	text = "<devices>" + text + "</devices>"
	if root.selfClosing() {
		e.splices = append(e.splices, splice{start: root.end - 2, end: root.end, text: ">" + text + "</domain>"})
		return
	}
	e.splices = append(e.splices, splice{start: root.endTagStart, end: root.endTagStart, text: text})
}

// anchorBefore returns the first interface a new one at spec position index
// goes before: a placeholder, or a "ua-" interface later in the spec.
func (e *editor) anchorBefore(index int) *ifaceElem {
	for i := range e.doc.ifaces {
		f := &e.doc.ifaces[i]
		if strings.HasPrefix(f.targetDev, placeholderPrefix) && f.alias == "" {
			return f
		}
		name, ok := strings.CutPrefix(f.alias, UserAliasPrefix)
		if pos, known := e.order[name]; ok && known && pos > index {
			return f
		}
	}
	return nil
}

func (e *editor) lastInterface() *ifaceElem {
	if n := len(e.doc.ifaces); n > 0 {
		return &e.doc.ifaces[n-1]
	}
	return nil
}

// indentUnit is one level of the document's indentation, taken from an
// existing interface's children, else from <devices> and its children.
func (e *editor) indentUnit() string {
	for _, f := range e.doc.ifaces {
		if len(f.children) == 0 {
			continue
		}
		outer, ok1 := indentAt(e.src, f.start)
		inner, ok2 := indentAt(e.src, f.children[0].start)
		if unit, ok := strings.CutPrefix(inner, outer); ok1 && ok2 && ok && unit != "" {
			return unit
		}
	}
	if e.doc.devices != nil && e.doc.lastDevice != nil {
		outer, ok1 := indentAt(e.src, e.doc.devices.start)
		inner, ok2 := indentAt(e.src, e.doc.lastDevice.start)
		if unit, ok := strings.CutPrefix(inner, outer); ok1 && ok2 && ok && unit != "" {
			return unit
		}
	}
	return "\t"
}

// render writes the element; indented puts each child on its own line at
// indent+unit and the end tag at indent.
func render(w wantIface, indent, unit string, indented bool) string {
	var b strings.Builder
	b.WriteString(`<interface type="ethernet">`)
	for _, c := range w.children {
		if indented {
			b.WriteString("\n" + indent + unit)
		}
		b.WriteString(c.xml)
	}
	if indented {
		b.WriteString("\n" + indent)
	}
	b.WriteString("</interface>")
	return b.String()
}
