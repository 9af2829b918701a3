// Package torchprep prepares gotch for the libtorch this machine has.
//
// gotch's generated bindings target one libtorch release; torchprep finds the
// libtorch installed here (LIBTORCH, a Python torch wheel, or Debian's
// libtorch-dev), compiles gotch's C++ wrappers against it into one shared
// library, replaces every wrapper that does not compile with a stub that
// returns "op NAME is not available in libtorch VERSION", and writes a copy
// of the gotch module whose cgo layer reaches that library through
// trampolines resolved with dlopen at run time. The result lives in a
// generated, gitignored directory and is wired into the build by a go.work
// file. Nothing here links libtorch itself, so it builds anywhere.
package torchprep

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

// Libtorch describes one libtorch installation.
type Libtorch struct {
	// Source says how it was found: "LIBTORCH", "python3 torch (PATH)" or "debian libtorch-dev".
	Source string
	// Root is the libtorch (or wheel torch/) directory; /usr for Debian.
	Root string
	// IncludeDirs are passed as -I to the C++ compiler, in order.
	IncludeDirs []string
	// LibDir holds libtorch.so, libtorch_cpu.so and libc10.so.
	LibDir string
	// Version is TORCH_VERSION from torch/version.h, e.g. "1.13.1".
	Version string
	// CUDA is true when LibDir has libtorch_cuda.so.
	CUDA bool
	// CXX11ABI is the _GLIBCXX_USE_CXX11_ABI value libtorch was built with.
	CXX11ABI bool
}

// debianLibDir is where Debian's multiarch libtorch-dev puts its libraries.
var debianLibDir = "/usr/lib/" + debianMultiarch() + "-linux-gnu"

func debianMultiarch() string {
	if runtime.GOARCH == "arm64" {
		return "aarch64"
	}
	return "x86_64"
}

// ErrNotFound means no libtorch was found in any of the places searched.
var ErrNotFound = errors.New("libtorch not found")

// Find looks for libtorch in the documented order: $LIBTORCH, the torch
// package of the first python3 on PATH that has one, Debian's libtorch-dev.
func Find(ctx context.Context) (*Libtorch, error) {
	if dir := os.Getenv("LIBTORCH"); dir != "" {
		lt, err := fromDir(dir, "LIBTORCH")
		if err != nil {
			return nil, fmt.Errorf("LIBTORCH=%s: %w", dir, err)
		}
		return lt, nil
	}
	for _, py := range pythons() {
		dir, err := pythonTorchDir(ctx, py)
		if err != nil || dir == "" {
			continue
		}
		// Debian's python3-torch only links to Debian's libtorch, found below
		// with its package version and BLAS set-up.
		if isDebianLibtorch(filepath.Join(dir, "lib", "libtorch_cpu.so")) {
			continue
		}
		if lt, err := fromDir(dir, "python3 torch ("+py+")"); err == nil {
			return lt, nil
		}
	}
	if lt, err := debian(); err == nil {
		return lt, nil
	}
	return nil, ErrNotFound
}

// fromDir reads an official libtorch directory or a wheel's torch/ directory:
// both have include/ and lib/.
func fromDir(dir, source string) (*Libtorch, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	lt := &Libtorch{
		Source: source,
		Root:   abs,
		IncludeDirs: []string{
			filepath.Join(abs, "include"),
			filepath.Join(abs, "include", "torch", "csrc", "api", "include"),
		},
		LibDir: filepath.Join(abs, "lib"),
	}
	return lt, lt.complete()
}

func isDebianLibtorch(lib string) bool {
	real, err := filepath.EvalSymlinks(lib)
	return err == nil && filepath.Dir(real) == debianLibDir
}

func debian() (*Libtorch, error) {
	lt := &Libtorch{
		Source:      "debian libtorch-dev",
		Root:        "/usr",
		IncludeDirs: []string{"/usr/include", "/usr/include/torch/csrc/api/include"},
		LibDir:      debianLibDir,
	}
	if err := lt.complete(); err != nil {
		return nil, err
	}
	// Debian's 1.13.1 ships headers that still say 1.13.0; the package
	// version is the one users know and report.
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "libtorch-dev").Output(); err == nil {
		if v := debianUpstreamVersion(string(out)); v != "" {
			lt.Version = v
		}
	}
	return lt, nil
}

// debianUpstreamVersion turns "1.13.1+dfsg-4" into "1.13.1".
func debianUpstreamVersion(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexAny(v, ":"); i >= 0 {
		v = v[i+1:]
	}
	if i := strings.IndexAny(v, "+-~"); i >= 0 {
		v = v[:i]
	}
	return v
}

// complete checks that headers and libraries are there and fills Version,
// CUDA and CXX11ABI.
func (lt *Libtorch) complete() error {
	var versionH string
	for _, inc := range lt.IncludeDirs {
		p := filepath.Join(inc, "torch", "version.h")
		if _, err := os.Stat(p); err == nil {
			versionH = p
			break
		}
	}
	if versionH == "" {
		return fmt.Errorf("no torch/version.h under %s", strings.Join(lt.IncludeDirs, ", "))
	}
	src, err := os.ReadFile(versionH)
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`#define\s+TORCH_VERSION\s+(?:\\\s*)?"([^"]+)"`).FindSubmatch(src)
	if m == nil {
		// Older headers only define the numeric parts.
		parts := []string{}
		for _, k := range []string{"MAJOR", "MINOR", "PATCH"} {
			mm := regexp.MustCompile(`#define\s+TORCH_VERSION_` + k + `\s+(\d+)`).FindSubmatch(src)
			if mm == nil {
				return fmt.Errorf("%s: no TORCH_VERSION", versionH)
			}
			parts = append(parts, string(mm[1]))
		}
		lt.Version = strings.Join(parts, ".")
	} else {
		lt.Version = string(m[1])
	}
	for _, lib := range []string{"libtorch.so", "libtorch_cpu.so", "libc10.so"} {
		if _, err := os.Stat(filepath.Join(lt.LibDir, lib)); err != nil {
			return fmt.Errorf("%s missing in %s", lib, lt.LibDir)
		}
	}
	_, err = os.Stat(filepath.Join(lt.LibDir, "libtorch_cuda.so"))
	lt.CUDA = err == nil
	abi, err := cxx11ABI(filepath.Join(lt.LibDir, "libc10.so"))
	if err != nil {
		return err
	}
	lt.CXX11ABI = abi
	return nil
}

// pythons lists every python3 on PATH, first first.
func pythons() []string {
	var out []string
	seen := map[string]bool{}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "python3")
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		out = append(out, p)
	}
	return out
}

func pythonTorchDir(ctx context.Context, py string) (string, error) {
	cmd := exec.CommandContext(ctx, py, "-c", "import os, torch; print(os.path.dirname(torch.__file__))")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		return "", err
	}
	return strings.TrimSpace(stdout.String()), nil
}

// IsRoot reports whether this process may install system packages.
func IsRoot() bool { return os.Geteuid() == 0 }

// IsDebian reports whether apt-get and Debian's package layout are there.
func IsDebian() bool {
	_, err := os.Stat("/etc/debian_version")
	if err != nil {
		return false
	}
	_, err = exec.LookPath("apt-get")
	return err == nil
}

// InstallCommand is what a user without root must run to get libtorch.
const InstallCommand = "sudo apt-get update && sudo apt-get install -y libtorch-dev libopenblas0-openmp"

// cxx11ABI tells from libc10's exported symbols whether libtorch was built
// with the C++11 std::string ABI: its mangled names then carry "__cxx11".
func cxx11ABI(lib string) (bool, error) {
	f, err := elf.Open(lib)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", lib, err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return false, fmt.Errorf("read symbols of %s: %w", lib, err)
	}
	for _, s := range syms {
		if strings.Contains(s.Name, "__cxx11") {
			return true, nil
		}
	}
	return false, nil
}
