package kubevirt

import (
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
)

// cutInterface finds the <interface> element whose alias is alias and
// returns the document without it (and without the line break and
// indentation before it, which an editor inserting it adds) and the
// element's text.
func cutInterface(doc, alias string) (rest, iface string, err error) {
	for from := 0; ; {
		i := strings.Index(doc[from:], "<interface")
		if i < 0 {
			return "", "", fmt.Errorf("no <interface> with alias %q", alias)
		}
		start := from + i
		j := strings.Index(doc[start:], "</interface>")
		if j < 0 {
			return "", "", fmt.Errorf("unterminated <interface> at %d", start)
		}
		end := start + j + len("</interface>")
		el := doc[start:end]
		if strings.Contains(el, `<alias name="`+alias+`"`) || strings.Contains(el, `<alias name='`+alias+`'`) {
			cut := start
			if nl := strings.LastIndexByte(doc[:start], '\n'); nl >= 0 && strings.TrimSpace(doc[nl:start]) == "" {
				cut = nl
			}
			return doc[:cut] + doc[end:], el, nil
		}
		from = end
	}
}

// elementsOf lists an element's descendants (itself included) by path,
// each with its attributes, e.g. "interface/mac" -> "address=0a:58:...".
// Repeated paths get an index.
func elementsOf(t *testing.T, text string) map[string]string {
	t.Helper()
	out := map[string]string{}
	dec := xml.NewDecoder(strings.NewReader(text))
	var path []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("parse %q: %v", text, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			path = append(path, tok.Name.Local)
			key := strings.Join(path, "/")
			for n := 2; ; n++ {
				if _, dup := out[key]; !dup {
					break
				}
				key = fmt.Sprintf("%s#%d", strings.Join(path, "/"), n)
			}
			var attrs []string
			for _, a := range tok.Attr {
				attrs = append(attrs, a.Name.Local+"="+a.Value)
			}
			sort.Strings(attrs)
			out[key] = strings.Join(attrs, " ")
		case xml.EndElement:
			path = path[:len(path)-1]
		}
	}
}
