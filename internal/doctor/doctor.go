// Package doctor gathers what `herd doctor` reports: the binary's build,
// the libtorch it loads and how (BLAS, threads, devices), and the gotch ops
// stubbed for that libtorch. It turns a libtorch that cannot be loaded into
// one clear error.
package doctor

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/herdml/herd/internal/torch"
	"github.com/herdml/herd/internal/torchprep"
	"github.com/herdml/herd/internal/version"
)

// Report is everything doctor found. JSON field names are stable for scripts.
type Report struct {
	Herd     version.Info `json:"herd"`
	Libtorch Libtorch     `json:"libtorch"`
	Gotch    Gotch        `json:"gotch"`
	BLAS     BLAS         `json:"blas"`
	Threads  int          `json:"threads"`
	Compute  string       `json:"compute"` // "cpu" or "cuda"
	Devices  []torch.GPU  `json:"devices"`
	// CUDANote says why no CUDA device is listed, when none is.
	CUDANote string   `json:"cuda_note,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Libtorch is the libtorch herd was prepared for and loaded.
type Libtorch struct {
	Version string `json:"version"`
	Source  string `json:"source"`
	Root    string `json:"root"`
	LibDir  string `json:"lib_dir"`
	Loaded  string `json:"loaded"` // libherdtorch.so actually opened
	// HeaderVersion is what libtorch's headers call themselves; Debian's
	// 1.13.1 says 1.13.0.
	HeaderVersion string `json:"header_version,omitempty"`
	CUDABuild     bool   `json:"cuda_build"`
}

// Gotch is the prepared gotch layer.
type Gotch struct {
	Version    string   `json:"version"`
	Wrappers   int      `json:"wrappers"`
	StubbedOps []string `json:"stubbed_ops"`
}

// BLAS is the BLAS libtorch resolves at run time.
type BLAS struct {
	Library string `json:"library,omitempty"` // mapped shared library, when one is
	Kind    string `json:"kind"`              // reference, openblas-openmp, openblas-pthread, other, builtin
	Config  string `json:"config,omitempty"`  // BLAS_INFO from libtorch's build config
	// Others are libraries of other BLAS builds mapped at the same time:
	// their symbols compete with Library's.
	Others []string `json:"others,omitempty"`
}

// Collect loads libtorch and fills a report. It returns an error, with the
// fields it could fill, when libtorch cannot be loaded.
func Collect() (*Report, error) {
	b := torch.Build()
	r := &Report{
		Herd: version.Get(),
		Libtorch: Libtorch{
			Version: b.Version, Source: b.Source, Root: b.Root, LibDir: b.LibDir, CUDABuild: b.CUDA,
		},
		Gotch:   Gotch{Version: b.GotchVersion, Wrappers: b.Wrappers, StubbedOps: b.StubbedOps},
		Compute: "cpu",
	}
	if err := torch.Load(); err != nil {
		return r, err
	}
	r.Libtorch.Loaded = torch.LibPath()
	r.Libtorch.HeaderVersion, _ = torch.Version()
	r.Threads, _ = torch.NumThreads()
	cfg, _ := torch.BuildConfig()
	r.BLAS = findBLAS(cfg)
	switch r.BLAS.Kind {
	case torchprep.BLASReference:
		r.Warnings = append(r.Warnings, fmt.Sprintf("libtorch uses the reference BLAS (%s), about 25x slower for training; run: %s", r.BLAS.Library, torchprep.InstallCommand))
	case torchprep.BLASOpenBLASThread:
		r.Warnings = append(r.Warnings, "libtorch uses the pthread OpenBLAS, which fights libtorch's OpenMP threads; install libopenblas0-openmp and select it with update-alternatives")
	}
	if len(r.BLAS.Others) > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("several BLAS builds are loaded (%s and %s); run `make prepare` as root to select the OpenMP OpenBLAS for all of libblas.so.3, liblapack.so.3 and libopenblas.so.0", r.BLAS.Library, strings.Join(r.BLAS.Others, ", ")))
	}
	n, _ := torch.CUDADeviceCount()
	switch {
	case !b.CUDA:
		r.CUDANote = "this libtorch is a CPU build"
	case n == 0:
		r.CUDANote = "libtorch sees no CUDA device"
	default:
		r.Compute = "cuda"
	}
	if devs, err := torch.CUDADevices(); err == nil {
		r.Devices = devs
	} else if r.CUDANote == "" {
		r.CUDANote = err.Error()
	}
	if b.CUDA && n == 0 && len(r.Devices) > 0 {
		r.Warnings = append(r.Warnings, "the driver sees GPUs but libtorch does not: check that libtorch's CUDA version matches the driver")
	}
	return r, nil
}

var blasInfo = regexp.MustCompile(`BLAS_INFO=([^,\s]+)`)

// findBLAS reads the BLAS library mapped into this process, which is the
// one libtorch resolved, and libtorch's own BLAS_INFO.
func findBLAS(showConfig string) BLAS {
	var b BLAS
	if m := blasInfo.FindStringSubmatch(showConfig); m != nil {
		b.Config = m[1]
	}
	libs := mappedBLAS("/proc/self/maps")
	if len(libs) > 0 {
		b.Library = libs[0]
	}
	// One build ships several files (libblas.so.3 and libopenblasp in the
	// same directory); another build is what competes.
	for _, l := range libs[min(1, len(libs)):] {
		if torchprep.ClassifyBLAS(l) != torchprep.ClassifyBLAS(b.Library) {
			b.Others = append(b.Others, l)
		}
	}
	switch {
	case b.Library != "":
		b.Kind = torchprep.ClassifyBLAS(b.Library)
	case b.Config != "":
		b.Kind = "builtin" // linked statically into libtorch (MKL in PyTorch wheels)
	default:
		b.Kind = "unknown"
	}
	return b
}

var blasLib = regexp.MustCompile(`^(libblas\.so|libopenblas.*\.so|libmkl_rt\.so|libblis.*\.so)`)

// mappedBLAS lists the distinct BLAS libraries mapped into the process, in
// mapping order.
func mappedBLAS(maps string) []string {
	f, err := os.Open(maps)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		path := fields[5]
		if !blasLib.MatchString(filepath.Base(path)) {
			continue
		}
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
		if !slices.Contains(out, path) {
			out = append(out, path)
		}
	}
	return out
}

// WriteText renders the report for a terminal.
func (r *Report) WriteText(w io.Writer) {
	p := func(k, format string, a ...any) { fmt.Fprintf(w, "%-12s %s\n", k+":", fmt.Sprintf(format, a...)) }
	p("herd", "%s", r.Herd)
	p("go", "%s", r.Herd.GoVersion)
	hv := ""
	if r.Libtorch.HeaderVersion != "" && r.Libtorch.HeaderVersion != r.Libtorch.Version {
		hv = ", headers say " + r.Libtorch.HeaderVersion
	}
	p("libtorch", "%s (%s%s) in %s", r.Libtorch.Version, r.Libtorch.Source, hv, r.Libtorch.LibDir)
	if r.Libtorch.Loaded != "" {
		p("loaded", "%s", r.Libtorch.Loaded)
	}
	p("gotch", "%s, %d op wrappers, %d stubbed", r.Gotch.Version, r.Gotch.Wrappers, len(r.Gotch.StubbedOps))
	if r.BLAS.Kind != "" {
		lib := r.BLAS.Library
		if lib == "" {
			lib = "linked into libtorch"
		}
		p("blas", "%s (%s; libtorch BLAS_INFO=%s)", lib, r.BLAS.Kind, orDash(r.BLAS.Config))
	}
	if r.Threads > 0 {
		p("threads", "%d (libtorch intra-op)", r.Threads)
	}
	p("compute", "%s", r.Compute)
	if len(r.Devices) == 0 {
		p("devices", "none (%s)", orDash(r.CUDANote))
	}
	for _, d := range r.Devices {
		p("device", "cuda:%d %s, %.1f GiB", d.Index, d.Name, float64(d.MemoryBytes)/(1<<30))
	}
	deps := make([]string, 0, len(r.Herd.Deps))
	for m := range r.Herd.Deps {
		deps = append(deps, m)
	}
	sort.Strings(deps)
	for _, m := range deps {
		p("module", "%s %s", m, r.Herd.Deps[m])
	}
	if len(r.Gotch.StubbedOps) > 0 {
		fmt.Fprintf(w, "stubbed ops (%d, not available in libtorch %s):\n", len(r.Gotch.StubbedOps), r.Libtorch.Version)
		writeWrapped(w, r.Gotch.StubbedOps, 100)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warn)
	}
}

func writeWrapped(w io.Writer, words []string, width int) {
	line := " "
	for _, s := range words {
		if len(line)+len(s)+1 > width {
			fmt.Fprintln(w, line)
			line = " "
		}
		line += " " + s
	}
	if strings.TrimSpace(line) != "" {
		fmt.Fprintln(w, line)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
