package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	r := herd(t, nil, "version", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	var v struct {
		Release string            `json:"release"`
		Go      string            `json:"go"`
		Deps    map[string]string `json:"deps"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v.Release == "" || !strings.HasPrefix(v.Go, "go1.") {
		t.Fatalf("version %+v", v)
	}
	if got := v.Deps["github.com/sugarme/gotch"]; !strings.HasPrefix(got, "v0.9.1") {
		t.Fatalf("gotch version %q, want v0.9.1", got)
	}
}

func TestDoctorReportsLibtorch(t *testing.T) {
	r := herd(t, nil, "doctor", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	var rep struct {
		Libtorch struct {
			Version, Source, Loaded string
		}
		Gotch struct {
			Version    string
			Wrappers   int
			StubbedOps []string `json:"stubbed_ops"`
		}
		BLAS struct {
			Library, Kind string
			Others        []string
		}
		Threads int
		Compute string
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Libtorch.Version == "" || rep.Gotch.Wrappers < 2000 || rep.Threads < 1 {
		t.Fatalf("incomplete report: %+v", rep)
	}
	if _, err := os.Stat(rep.Libtorch.Loaded); err != nil {
		t.Fatalf("loaded library %q: %v", rep.Libtorch.Loaded, err)
	}
	if rep.Compute != "cpu" && rep.Compute != "cuda" {
		t.Fatalf("compute %q", rep.Compute)
	}
	// The preparation installs the OpenMP OpenBLAS for Debian's libtorch.
	if rep.Libtorch.Source == "debian libtorch-dev" && (rep.BLAS.Kind != "openblas-openmp" || len(rep.BLAS.Others) > 0) {
		t.Fatalf("Debian libtorch resolves BLAS %q (%s), also loaded %v; want only openblas-openmp", rep.BLAS.Library, rep.BLAS.Kind, rep.BLAS.Others)
	}
	text := herd(t, nil, "doctor")
	if text.code != 0 {
		t.Fatalf("exit %d", text.code)
	}
	for _, want := range []string{"libtorch:", "gotch:", "blas:", "threads:", "compute:", rep.Libtorch.Version} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("doctor output lacks %q", want)
		}
	}
	if n := len(rep.Gotch.StubbedOps); n > 0 && !strings.Contains(text.stdout, "stubbed ops ("+itoa(n)) {
		t.Errorf("doctor text does not list the %d stubbed ops", n)
	}
}

func TestDoctorFailsClearlyWithoutLibtorch(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "libherdtorch.so")
	if err := os.WriteFile(corrupt, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, lib := range map[string]string{
		"missing": filepath.Join(dir, "nope", "libherdtorch.so"),
		"corrupt": corrupt,
	} {
		t.Run(name, func(t *testing.T) {
			r := herd(t, []string{"HERD_TORCH_LIB=" + lib}, "doctor")
			if r.code != 1 {
				t.Fatalf("exit %d, want 1", r.code)
			}
			if !strings.Contains(r.stderr, "libtorch cannot be loaded") || !strings.Contains(r.stderr, lib) {
				t.Fatalf("stderr does not say libtorch cannot be loaded from %s", lib)
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
