package torchprep

import (
	"bufio"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// cfunc is one top-level function of gotch's generated wrapper file.
type cfunc struct {
	Name   string // C name, e.g. atg_add
	Return string // return type, e.g. "void" or "int64_t"
	Header string // the signature line, ending in "{"
	Body   []string
}

// funcStart matches the first line of a generated wrapper: a return type,
// the name and the opening brace, all on one line at column 0.
var funcStart = regexp.MustCompile(`^([A-Za-z_][\w\s\*]*?)\s*\b(atg_\w+)\(.*\)\s*\{\s*$`)

// parseWrappers splits the generated wrapper file into functions. Anything
// between functions (comments, blank lines) is dropped.
func parseWrappers(src string) ([]cfunc, error) {
	var (
		out []cfunc
		cur *cfunc
	)
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if cur == nil {
			if m := funcStart.FindStringSubmatch(text); m != nil {
				cur = &cfunc{Name: m[2], Return: strings.TrimSpace(m[1]), Header: text}
				continue
			}
			if t := strings.TrimSpace(text); t != "" && !strings.HasPrefix(t, "//") {
				return nil, fmt.Errorf("line %d: expected a wrapper function, found %q", line, text)
			}
			continue
		}
		if text == "}" {
			out = append(out, *cur)
			cur = nil
			continue
		}
		cur.Body = append(cur.Body, text)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("function %s is not closed", cur.Name)
	}
	return out, nil
}

// OpName is the name reported to users for a wrapper: the ATen op without
// gotch's atg_ prefix.
func OpName(cname string) string { return strings.TrimPrefix(cname, "atg_") }

// stubBody replaces a wrapper's body with one that records the error
// gotch's Go side reads back through get_and_reset_last_err.
func stubBody(f cfunc, torchVersion string) []string {
	msg := fmt.Sprintf("op %s is not available in libtorch %s", OpName(f.Name), torchVersion)
	body := []string{"  torch_last_err = strdup(" + strconv.Quote(msg) + ");"}
	if f.Return != "void" {
		body = append(body, "  return {};")
	}
	return body
}

// chunk is one translation unit made of consecutive wrappers. lines maps
// each source line (1-based) to the index of the wrapper it belongs to, or -1.
type chunk struct {
	Source string
	lines  []int
}

// renderChunk writes funcs[from:to] as a C++ file after prelude, stubbing
// the ones in stubbed.
func renderChunk(prelude string, funcs []cfunc, from, to int, stubbed map[string]bool, torchVersion string) chunk {
	var b strings.Builder
	var lines []int
	emit := func(s string, idx int) {
		b.WriteString(s)
		b.WriteByte('\n')
		lines = append(lines, idx)
	}
	for _, l := range strings.Split(strings.TrimRight(prelude, "\n"), "\n") {
		emit(l, -1)
	}
	for i := from; i < to; i++ {
		f := funcs[i]
		emit("", -1)
		emit(f.Header, i)
		body := f.Body
		if stubbed[f.Name] {
			body = stubBody(f, torchVersion)
		}
		for _, l := range body {
			emit(l, i)
		}
		emit("}", i)
	}
	return chunk{Source: b.String(), lines: lines}
}

// diagLine matches a compiler diagnostic that points into file: errors, and
// the "required from here" notes that locate template errors raised inside
// libtorch headers.
func diagLine(file string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:(\d+):\d+:\s+(error:|required from here)`)
}

// failingFuncs maps compiler diagnostics for a chunk back to the wrappers
// that caused them.
func failingFuncs(diags, file string, c chunk, funcs []cfunc) []string {
	re := diagLine(file)
	seen := map[string]bool{}
	for _, l := range strings.Split(diags, "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if n < 1 || n > len(c.lines) || c.lines[n-1] < 0 {
			continue
		}
		seen[funcs[c.lines[n-1]].Name] = true
	}
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
