package tests

// The Colab notebooks: valid nbformat 4 documents whose cells call only
// herd commands that bin/herd has (with flags it takes), and whose Python
// compiles. They are not run here: they need Colab's GPU and network.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// notebook is the part of nbformat 4 the checks read.
type notebook struct {
	NBFormat      *int           `json:"nbformat"`
	NBFormatMinor *int           `json:"nbformat_minor"`
	Metadata      map[string]any `json:"metadata"`
	Cells         []notebookCell `json:"cells"`
}

type notebookCell struct {
	CellType       string          `json:"cell_type"`
	ID             string          `json:"id"`
	Metadata       map[string]any  `json:"metadata"`
	Source         json.RawMessage `json:"source"`
	Outputs        *[]any          `json:"outputs"`
	ExecutionCount json.RawMessage `json:"execution_count"`
}

// text joins a cell's source, a string or a list of strings.
func (c notebookCell) text() (string, error) {
	var s string
	if err := json.Unmarshal(c.Source, &s); err == nil {
		return s, nil
	}
	var parts []string
	if err := json.Unmarshal(c.Source, &parts); err != nil {
		return "", err
	}
	return strings.Join(parts, ""), nil
}

// requiredNotebooks must exist; other *.ipynb files are checked too.
var requiredNotebooks = []string{"train.ipynb", "score.ipynb"}

func TestNotebooks(t *testing.T) {
	paths, _ := filepath.Glob("../notebooks/*.ipynb")
	for _, r := range requiredNotebooks {
		if !slices.Contains(paths, filepath.Join("../notebooks", r)) {
			t.Errorf("notebooks/%s is missing", r)
		}
	}
	var uses []herdUse
	for _, path := range paths {
		name := filepath.Base(path)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var nb notebook
		if err := json.Unmarshal(b, &nb); err != nil {
			t.Errorf("%s: not JSON: %v", name, err)
			continue
		}
		if nb.NBFormat == nil || *nb.NBFormat != 4 || nb.NBFormatMinor == nil {
			t.Errorf("%s: nbformat %v.%v, want 4.x", name, nb.NBFormat, nb.NBFormatMinor)
		}
		if nb.Metadata == nil || get(nb.Metadata, "kernelspec", "name") != "python3" {
			t.Errorf("%s: metadata.kernelspec.name is not python3", name)
		}
		if get(nb.Metadata, "accelerator") != "GPU" {
			t.Errorf("%s: metadata.accelerator is not GPU (Colab would start a CPU runtime)", name)
		}
		if len(nb.Cells) == 0 {
			t.Errorf("%s: no cells", name)
		}
		ids := map[string]bool{}
		var python []string
		for i, c := range nb.Cells {
			where := fmt.Sprintf("%s cell %d", name, i)
			if c.Metadata == nil {
				t.Errorf("%s: no metadata", where)
			}
			if c.ID != "" {
				if ids[c.ID] {
					t.Errorf("%s: duplicate id %q", where, c.ID)
				}
				ids[c.ID] = true
			} else if *nb.NBFormatMinor >= 5 {
				t.Errorf("%s: nbformat 4.5 cells need an id", where)
			}
			src, err := c.text()
			if err != nil {
				t.Errorf("%s: source: %v", where, err)
				continue
			}
			switch c.CellType {
			case "markdown", "raw":
				if c.Outputs != nil {
					t.Errorf("%s: a %s cell has outputs", where, c.CellType)
				}
			case "code":
				if c.Outputs == nil || len(c.ExecutionCount) == 0 {
					t.Errorf("%s: a code cell needs outputs and execution_count", where)
				}
				py, cellUses := splitCell(where, src)
				python = append(python, py)
				uses = append(uses, cellUses...)
			default:
				t.Errorf("%s: cell_type %q", where, c.CellType)
			}
		}
		checkPythonCompiles(t, name, python)
		validateWithNBFormat(t, path)
	}
	for _, cmd := range []string{"train", "score"} {
		if !slices.ContainsFunc(uses, func(u herdUse) bool { return strings.Join(u.path, " ") == cmd }) {
			t.Errorf("no notebook runs herd %s", cmd)
		}
	}
	checkHerdUses(t, uses)
}

var shellSep = regexp.MustCompile(`&&|\|\||;|\|`)

// splitCell separates a code cell into Python (shell and magic lines
// replaced by pass, indentation kept) and the herd commands of its shell
// lines.
func splitCell(where, src string) (string, []herdUse) {
	var py []string
	var uses []herdUse
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		if !strings.HasPrefix(trimmed, "!") && !strings.HasPrefix(trimmed, "%") {
			py = append(py, line)
			continue
		}
		py = append(py, indent+"pass")
		if !strings.HasPrefix(trimmed, "!") {
			continue
		}
		for _, part := range shellSep.Split(trimmed[1:], -1) {
			words := shellWords(strings.TrimSpace(part))
			if len(words) > 0 && filepath.Base(words[0]) == "herd" {
				if u, ok := useFromArgs(where, words); ok {
					uses = append(uses, u)
				}
			}
		}
	}
	return strings.Join(py, "\n"), uses
}

// checkPythonCompiles compiles each code cell with python3 when there is one.
func checkPythonCompiles(t *testing.T, name string, cells []string) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Logf("%s: no python3 here; cell syntax not checked", name)
		return
	}
	in, _ := json.Marshal(cells)
	cmd := exec.Command(py, "-c", `
import json, sys
for i, src in enumerate(json.load(sys.stdin)):
    try:
        compile(src, "cell %d" % i, "exec")
    except SyntaxError as e:
        print("code cell %d: %s" % (i, e))
`)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("%s: Python does not compile: %v\n%s", name, err, out)
	}
}

// validateWithNBFormat validates against the nbformat JSON schema when a
// python3 with the nbformat package (Debian's python3-nbformat) is here.
func validateWithNBFormat(t *testing.T, path string) {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import nbformat").Run() != nil {
			continue
		}
		out, err := exec.Command(py, "-c", "import nbformat,sys; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))", path).CombinedOutput()
		if err != nil {
			t.Errorf("%s: nbformat.validate: %v\n%s", filepath.Base(path), err, out)
		}
		return
	}
	t.Logf("%s: no python3 with nbformat here (apt-get install python3-nbformat); schema not checked", filepath.Base(path))
}
