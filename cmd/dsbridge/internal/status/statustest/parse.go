// Package statustest is a strict parser of the Prometheus text exposition
// format 0.0.4 for tests: what /metrics serves must parse here, with help
// and type for every family, well-formed labels, and consistent
// histograms.
package statustest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Sample is one metric line.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Family is one metric family: its HELP, TYPE and samples in order.
type Family struct {
	Name, Help, Type string
	Samples          []Sample
}

var (
	nameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Parse reads the whole exposition. Every family needs HELP then TYPE
// before its samples, each family appears once, sample names belong to the
// family (_bucket, _sum, _count for histograms), label sets are unique, and
// histograms have cumulative buckets ending in +Inf equal to _count.
func Parse(r io.Reader) (map[string]*Family, error) {
	fams := map[string]*Family{}
	var cur *Family
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		var err error
		switch {
		case line == "":
			err = errors.New("empty line")
		case strings.HasPrefix(line, "# HELP "):
			cur, err = help(fams, line)
		case strings.HasPrefix(line, "# TYPE "):
			err = typ(cur, line)
		case strings.HasPrefix(line, "#"):
			err = errors.New("comment that is neither HELP nor TYPE")
		default:
			err = sample(cur, line)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, f := range fams {
		if err := check(f); err != nil {
			return nil, fmt.Errorf("family %s: %w", f.Name, err)
		}
	}
	return fams, nil
}

func help(fams map[string]*Family, line string) (*Family, error) {
	name, text, ok := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
	if !ok || !nameRE.MatchString(name) || text == "" {
		return nil, errors.New("malformed HELP")
	}
	if _, dup := fams[name]; dup {
		return nil, errors.New("family described twice")
	}
	unq, err := unescape(text, false)
	if err != nil {
		return nil, err
	}
	f := &Family{Name: name, Help: unq}
	fams[name] = f
	return f, nil
}

func typ(cur *Family, line string) error {
	name, t, ok := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
	switch {
	case !ok || cur == nil || name != cur.Name:
		return errors.New("TYPE not right after the family's HELP")
	case cur.Type != "" || len(cur.Samples) > 0:
		return errors.New("TYPE repeated or after samples")
	}
	switch t {
	case "counter", "gauge", "histogram", "summary", "untyped":
		cur.Type = t
		return nil
	}
	return fmt.Errorf("unknown type %q", t)
}

func sample(cur *Family, line string) error {
	if cur == nil || cur.Type == "" {
		return errors.New("sample before HELP and TYPE")
	}
	s, err := parseSample(line)
	if err != nil {
		return err
	}
	base := s.Name
	if cur.Type == "histogram" {
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(s.Name, suf) {
				base = strings.TrimSuffix(s.Name, suf)
				break
			}
		}
	}
	if base != cur.Name {
		return fmt.Errorf("sample %s outside family %s", s.Name, cur.Name)
	}
	if cur.Type == "counter" && (s.Value < 0 || math.IsNaN(s.Value)) {
		return errors.New("counter is negative or NaN")
	}
	for _, o := range cur.Samples {
		if o.Name == s.Name && labelKey(o.Labels) == labelKey(s.Labels) {
			return errors.New("duplicate label set")
		}
	}
	cur.Samples = append(cur.Samples, s)
	return nil
}

// parseSample parses `name{k="v",...} value` (no timestamp is written).
func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, errors.New("no value")
	}
	s.Name, line = line[:i], line[i:]
	if !nameRE.MatchString(s.Name) {
		return s, errors.New("bad metric name")
	}
	if strings.HasPrefix(line, "{") {
		rest, err := parseLabels(line[1:], s.Labels)
		if err != nil {
			return s, err
		}
		line = rest
	}
	if !strings.HasPrefix(line, " ") || strings.Contains(line[1:], " ") {
		return s, errors.New("want exactly one space before the value and no timestamp")
	}
	v, err := parseFloat(line[1:])
	s.Value = v
	return s, err
}

func parseLabels(in string, out map[string]string) (string, error) {
	for {
		if strings.HasPrefix(in, "}") {
			return in[1:], nil
		}
		k, rest, ok := strings.Cut(in, `="`)
		if !ok || !labelRE.MatchString(k) {
			return "", errors.New("bad label name")
		}
		if _, dup := out[k]; dup {
			return "", fmt.Errorf("label %s twice", k)
		}
		end := closingQuote(rest)
		if end < 0 {
			return "", errors.New("unterminated label value")
		}
		v, err := unescape(rest[:end], true)
		if err != nil {
			return "", err
		}
		out[k] = v
		in = rest[end+1:]
		switch {
		case strings.HasPrefix(in, ","):
			in = in[1:]
		case strings.HasPrefix(in, "}"):
		default:
			return "", errors.New("want , or } after a label")
		}
	}
}

func closingQuote(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// unescape undoes \\ and \n, and \" in label values.
func unescape(s string, label bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' && label {
			return "", errors.New("unescaped quote")
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i++; i == len(s) {
			return "", errors.New("dangling backslash")
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case '"':
			if !label {
				return "", errors.New(`\" in HELP`)
			}
			b.WriteByte('"')
		default:
			return "", fmt.Errorf("unknown escape \\%c", s[i])
		}
	}
	return b.String(), nil
}

func parseFloat(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	return strconv.ParseFloat(s, 64)
}

func labelKey(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k, v := range l {
		keys = append(keys, k+"\x00"+v)
	}
	sort.Strings(keys)
	return strings.Join(keys, "\x01")
}

// check verifies each histogram series: buckets with increasing le,
// cumulative counts, a +Inf bucket equal to _count, and a _sum.
func check(f *Family) error {
	if f.Type != "histogram" {
		return nil
	}
	type series struct {
		les      []float64
		counts   []float64
		sum, cnt *float64
	}
	all := map[string]*series{}
	get := func(l map[string]string) *series {
		k := labelKey(l)
		if all[k] == nil {
			all[k] = &series{}
		}
		return all[k]
	}
	for _, s := range f.Samples {
		switch {
		case strings.HasSuffix(s.Name, "_bucket"):
			le, ok := s.Labels["le"]
			if !ok {
				return errors.New("bucket without le")
			}
			v, err := parseFloat(le)
			if err != nil {
				return fmt.Errorf("bucket le %q: %w", le, err)
			}
			rest := copyWithout(s.Labels, "le")
			ser := get(rest)
			ser.les, ser.counts = append(ser.les, v), append(ser.counts, s.Value)
		case strings.HasSuffix(s.Name, "_sum"):
			v := s.Value
			get(s.Labels).sum = &v
		case strings.HasSuffix(s.Name, "_count"):
			v := s.Value
			get(s.Labels).cnt = &v
		default:
			return fmt.Errorf("sample %s in a histogram", s.Name)
		}
	}
	for k, s := range all {
		n := len(s.les)
		switch {
		case n == 0 || s.sum == nil || s.cnt == nil:
			return fmt.Errorf("series %q lacks buckets, _sum or _count", k)
		case !math.IsInf(s.les[n-1], 1):
			return fmt.Errorf("series %q has no +Inf bucket last", k)
		case s.counts[n-1] != *s.cnt:
			return fmt.Errorf("series %q: +Inf bucket %v != _count %v", k, s.counts[n-1], *s.cnt)
		}
		for i := 1; i < n; i++ {
			if s.les[i] <= s.les[i-1] || s.counts[i] < s.counts[i-1] {
				return fmt.Errorf("series %q: buckets not increasing and cumulative at le=%v", k, s.les[i])
			}
		}
	}
	return nil
}

func copyWithout(l map[string]string, drop string) map[string]string {
	out := map[string]string{}
	for k, v := range l {
		if k != drop {
			out[k] = v
		}
	}
	return out
}

// Value returns the value of the sample of family name whose labels include
// all of want (the first such); ok is false when there is none.
func Value(fams map[string]*Family, name string, want map[string]string) (float64, bool) {
	base := name
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if _, ok := fams[base]; !ok {
			base = strings.TrimSuffix(name, suf)
		}
	}
	f, ok := fams[base]
	if !ok {
		return 0, false
	}
	for _, s := range f.Samples {
		if s.Name == name && matches(s.Labels, want) {
			return s.Value, true
		}
	}
	return 0, false
}

func matches(l, want map[string]string) bool {
	for k, v := range want {
		if l[k] != v {
			return false
		}
	}
	return true
}
