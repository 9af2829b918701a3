package torchprep

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/herdml/herd/internal/fsutil"
)

// toolVersion changes whenever the prepared output changes shape, so that
// older caches are rebuilt.
const toolVersion = "torchprep-4"

// chunkCount is how many translation units the ~2,500 generated wrappers
// are split into: enough to keep every core busy and to make a re-stub
// recompile only a small part.
const chunkCount = 24

// Options says where the inputs are and where the prepared copy goes.
type Options struct {
	// OutDir receives csrc/, obj/, lib/libherdtorch.so, gotch/ and the stamp.
	OutDir string
	// GotchDir is the pristine gotch module (from the module cache).
	GotchDir string
	// GotchVersion is recorded in the build info, e.g. "v0.9.1".
	GotchVersion string
	// ExtraSources are herd's own C++ files compiled into the library.
	ExtraSources []string
	// Jobs is the number of parallel compiler processes (>= 1).
	Jobs int
	// CXX is the C++ compiler; "g++" when empty.
	CXX string
	// Log receives progress lines.
	Log io.Writer
}

// Result is what a preparation produced.
type Result struct {
	Libtorch  *Libtorch
	LibPath   string   // the shared library with gotch's wrappers
	GotchCopy string   // the module directory go.work replaces gotch with
	Stubbed   []string // C names of stubbed wrappers, sorted
	Wrappers  int      // generated wrappers in gotch
	UpToDate  bool     // nothing was rebuilt
}

// info is written next to the library; later runs read it back.
type info struct {
	Key      string   `json:"key"`
	Stubbed  []string `json:"stubbed"`
	Wrappers int      `json:"wrappers"`
}

// Prepare compiles gotch's C++ layer against lt, stubbing what does not
// compile, and writes the gotch copy that uses it. It is idempotent: with
// the same inputs it returns at once.
func Prepare(ctx context.Context, lt *Libtorch, opt Options) (*Result, error) {
	if opt.CXX == "" {
		opt.CXX = "g++"
	}
	if opt.Jobs < 1 {
		opt.Jobs = 1
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	key, err := cacheKey(lt, opt)
	if err != nil {
		return nil, err
	}
	res := &Result{
		Libtorch:  lt,
		LibPath:   filepath.Join(opt.OutDir, "lib", "libherdtorch.so"),
		GotchCopy: filepath.Join(opt.OutDir, "gotch"),
	}
	if prev, err := readInfo(opt.OutDir); err == nil && prev.Key == key && exists(res.LibPath) && exists(filepath.Join(res.GotchCopy, "go.mod")) {
		res.Stubbed, res.Wrappers, res.UpToDate = prev.Stubbed, prev.Wrappers, true
		return res, nil
	}
	b := &builder{lt: lt, opt: opt}
	if err := b.build(ctx); err != nil {
		return nil, err
	}
	res.Stubbed, res.Wrappers = b.stubbedList(), len(b.funcs)
	syms, err := exportedFuncs(res.LibPath)
	if err != nil {
		return nil, err
	}
	if err := writeGotchCopy(opt, lt, res, syms); err != nil {
		return nil, err
	}
	if err := writeJSONAtomic(filepath.Join(opt.OutDir, "info.json"), info{Key: key, Stubbed: res.Stubbed, Wrappers: res.Wrappers}); err != nil {
		return nil, err
	}
	return res, nil
}

type builder struct {
	lt      *Libtorch
	opt     Options
	funcs   []cfunc
	stubbed map[string]bool
}

func (b *builder) stubbedList() []string {
	out := make([]string, 0, len(b.stubbed))
	for _, f := range b.funcs {
		if b.stubbed[f.Name] {
			out = append(out, f.Name)
		}
	}
	return out
}

func (b *builder) flags() []string {
	abi := "0"
	if b.lt.CXX11ABI {
		abi = "1"
	}
	f := []string{"-std=c++17", "-fPIC", "-O1", "-w", "-D_GLIBCXX_USE_CXX11_ABI=" + abi, "-I", filepath.Join(b.opt.OutDir, "csrc")}
	for _, inc := range b.lt.IncludeDirs {
		if inc != "/usr/include" { // already a system dir; -I would reorder it
			f = append(f, "-isystem", inc)
		}
	}
	return f
}

func (b *builder) build(ctx context.Context) error {
	src := filepath.Join(b.opt.GotchDir, "libtch")
	csrc := filepath.Join(b.opt.OutDir, "csrc")
	if err := os.MkdirAll(csrc, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"obj", "lib"} {
		if err := os.MkdirAll(filepath.Join(b.opt.OutDir, d), 0o755); err != nil {
			return err
		}
	}
	read := func(name string) (string, error) {
		data, err := os.ReadFile(filepath.Join(src, name))
		return string(data), err
	}
	header, err := read("torch_api.h")
	if err != nil {
		return err
	}
	api, err := read("torch_api.cpp")
	if err != nil {
		return err
	}
	gen, err := read("torch_api_generated.cpp.h")
	if err != nil {
		return err
	}
	// The header defines the thread-local error slot; with the wrappers in
	// several translation units it must be declared there and defined once.
	const def = "thread_local char *torch_last_err = nullptr;"
	if !strings.Contains(header, def) || !strings.Contains(api, `#include "torch_api_generated.cpp.h"`) {
		return fmt.Errorf("gotch %s: torch_api.h or torch_api.cpp is not laid out as expected", b.opt.GotchVersion)
	}
	header = strings.Replace(header, def, "extern thread_local char *torch_last_err;", 1)
	api = strings.Replace(api, `#include "torch_api_generated.cpp.h"`, "", 1) + "\n" + def + "\n"
	files := map[string]string{"torch_api.h": header, "torch_api.cpp": api}
	for _, name := range []string{"torch_api_generated.h", "stb_image.h", "stb_image_write.h", "stb_image_resize.h"} {
		if files[name], err = read(name); err != nil {
			return err
		}
	}
	for name, body := range files {
		if err := writeIfChanged(filepath.Join(csrc, name), body); err != nil {
			return err
		}
	}
	if b.funcs, err = parseWrappers(gen); err != nil {
		return fmt.Errorf("parse %s: %w", filepath.Join(src, "torch_api_generated.cpp.h"), err)
	}
	b.stubbed = map[string]bool{}

	// The hand-written layer and herd's own sources must compile as they are.
	fixed := append([]string{filepath.Join(csrc, "torch_api.cpp")}, b.opt.ExtraSources...)
	objs := make([]string, len(fixed))
	jobs := make([]compileJob, len(fixed))
	for i, f := range fixed {
		body, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		jobs[i] = compileJob{path: f, source: string(body)}
	}
	fmt.Fprintf(b.opt.Log, "torchprep: compiling %d generated wrappers in %d units with %d jobs against libtorch %s\n", len(b.funcs), chunkCount, b.opt.Jobs, b.lt.Version)
	wrappers, err := b.compileWrappers(ctx, csrc)
	if err != nil {
		return err
	}
	b.compileAll(ctx, jobs)
	for i, j := range jobs {
		if j.err != nil {
			return fmt.Errorf("compile %s against libtorch %s: %w\n%s", j.path, b.lt.Version, j.err, tail(j.diags, 40))
		}
		objs[i] = j.obj
	}
	return b.link(ctx, append(objs, wrappers...))
}

// prelude opens every wrapper unit: the same includes as torch_api.cpp.
const prelude = `// Code generated by herd torchprep from gotch's torch_api_generated.cpp.h. DO NOT EDIT.
#include "torch_api.h"
#include <ATen/autocast_mode.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <vector>
`

// compileWrappers compiles the generated wrappers, stubbing each one the
// compiler rejects, until every unit compiles. It returns the object files.
func (b *builder) compileWrappers(ctx context.Context, csrc string) ([]string, error) {
	per := (len(b.funcs) + chunkCount - 1) / chunkCount
	for round := 1; ; round++ {
		var (
			jobs   []compileJob
			chunks []chunk
		)
		for i := 0; i*per < len(b.funcs); i++ {
			from, to := i*per, min((i+1)*per, len(b.funcs))
			c := renderChunk(prelude, b.funcs, from, to, b.stubbed, b.lt.Version)
			path := filepath.Join(csrc, fmt.Sprintf("wrappers_%02d.cpp", i))
			chunks = append(chunks, c)
			jobs = append(jobs, compileJob{path: path, source: c.Source})
		}
		b.compileAll(ctx, jobs)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var objs []string
		newStubs := 0
		for i, j := range jobs {
			if j.err == nil {
				objs = append(objs, j.obj)
				continue
			}
			failed := failingFuncs(j.diags, j.path, chunks[i], b.funcs)
			for _, name := range failed {
				if !b.stubbed[name] {
					b.stubbed[name] = true
					newStubs++
				}
			}
			if len(failed) == 0 {
				return nil, fmt.Errorf("compile %s: %w; no wrapper could be blamed:\n%s", j.path, j.err, tail(j.diags, 40))
			}
		}
		if len(objs) == len(jobs) {
			fmt.Fprintf(b.opt.Log, "torchprep: %d of %d wrappers stubbed (not available in libtorch %s)\n", len(b.stubbed), len(b.funcs), b.lt.Version)
			return objs, nil
		}
		if newStubs == 0 || round >= 6 {
			return nil, fmt.Errorf("wrappers still fail to compile after %d rounds of stubbing", round)
		}
		fmt.Fprintf(b.opt.Log, "torchprep: round %d: %d wrappers do not compile, stubbing them\n", round, newStubs)
	}
}

// errCachedFailure stands for a compiler failure recorded by an earlier run.
var errCachedFailure = errors.New("compiler failed (cached)")

type compileJob struct {
	path, source string // source is written to path before compiling
	obj          string
	diags        string
	err          error
}

// compileAll compiles jobs in parallel. Objects are cached by a hash of
// source, flags and compiler, so unchanged units are never recompiled.
func (b *builder) compileAll(ctx context.Context, jobs []compileJob) {
	sem := make(chan struct{}, b.opt.Jobs)
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		go func(j *compileJob) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			j.obj, j.diags, j.err = b.compile(ctx, j.path, j.source)
		}(&jobs[i])
	}
	wg.Wait()
}

func (b *builder) compile(ctx context.Context, path, source string) (obj, diags string, err error) {
	flags := b.flags()
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s", b.opt.CXX, strings.Join(flags, " "), path, source)
	obj = filepath.Join(b.opt.OutDir, "obj", hex.EncodeToString(h.Sum(nil))[:24]+".o")
	if exists(obj) {
		return obj, "", nil
	}
	// A unit that failed before fails again: its diagnostics are cached too,
	// so a re-run after a change elsewhere does not recompile it.
	if diags, err := os.ReadFile(obj + ".err"); err == nil {
		return "", string(diags), errCachedFailure
	}
	if err := writeIfChanged(path, source); err != nil {
		return "", "", err
	}
	tmp := obj + ".tmp"
	args := append(flags, "-c", path, "-o", tmp)
	cmd := exec.CommandContext(ctx, b.opt.CXX, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		if ctx.Err() == nil {
			_ = fsutil.WriteFile(obj+".err", out)
		}
		return "", string(out), err
	}
	return obj, "", os.Rename(tmp, obj)
}

func (b *builder) link(ctx context.Context, objs []string) error {
	lib := filepath.Join(b.opt.OutDir, "lib", "libherdtorch.so")
	tmp := lib + ".tmp"
	args := []string{"-shared", "-o", tmp}
	args = append(args, objs...)
	// -Bsymbolic-functions keeps the library's calls to its own functions
	// inside it, whatever the executable that loads it exports.
	args = append(args, "-Wl,-Bsymbolic-functions", "-L"+b.lt.LibDir, "-Wl,-rpath,"+b.lt.LibDir)
	if b.lt.CUDA {
		// libtorch_cuda registers the CUDA backend from static initialisers
		// only; without --no-as-needed the linker drops it as unused.
		args = append(args, "-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed")
	}
	args = append(args, "-ltorch", "-ltorch_cpu", "-lc10", "-lstdc++")
	out, err := exec.CommandContext(ctx, b.opt.CXX, args...).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("link %s: %w\n%s", lib, err, tail(string(out), 40))
	}
	return os.Rename(tmp, lib)
}

// cacheKey identifies everything the prepared output depends on.
func cacheKey(lt *Libtorch, opt Options) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%v\x00%v\x00", toolVersion, opt.GotchVersion, opt.GotchDir, lt.Root, lt.Version, lt.CUDA, lt.CXX11ABI)
	st, err := os.Stat(filepath.Join(lt.LibDir, "libtorch_cpu.so"))
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "%d\x00%d\x00", st.Size(), st.ModTime().UnixNano())
	for _, f := range opt.ExtraSources {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%s\x00", f, data)
	}
	if out, err := exec.Command(orDefault(opt.CXX, "g++"), "--version").Output(); err == nil {
		h.Write(out)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func readInfo(dir string) (*info, error) {
	data, err := os.ReadFile(filepath.Join(dir, "info.json"))
	if err != nil {
		return nil, err
	}
	var in info
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, err
	}
	if in.Key == "" {
		return nil, errors.New("no key")
	}
	return &in, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
