package hub

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/herdml/herd/internal/safetensors"
	"github.com/herdml/herd/model/hub/hubtest"
)

const repoID = "herd-test/tiny-llama"

// isolate keeps the machine's Hugging Face settings out of a test.
func isolate(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	for k, v := range map[string]string{
		"HF_HOME": home, "HF_HUB_CACHE": "", "HUGGINGFACE_HUB_CACHE": "", "HF_ENDPOINT": "",
		"HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": "", "HF_TOKEN_PATH": filepath.Join(home, "no-token"),
	} {
		t.Setenv(k, v)
	}
}

// weights is a real safetensors file, so a pulled snapshot can be opened.
func weights(t *testing.T) []byte {
	t.Helper()
	data := make([]byte, 64*1024)
	for i := range data {
		data[i] = byte(i * 7)
	}
	p := filepath.Join(t.TempDir(), "w.safetensors")
	err := safetensors.Write(p, []safetensors.NamedTensor{
		{Name: "model.embed_tokens.weight", DType: safetensors.F32, Shape: []int64{128, 128}, Data: data},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type fixture struct {
	hub    *hubtest.Server
	commit string
	files  map[string]hubtest.File
	cache  string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	isolate(t)
	files := []hubtest.File{
		{Path: "config.json", Data: []byte(`{"model_type":"llama","hidden_size":128}`)},
		{Path: "tokenizer.json", Data: []byte(`{"version":"1.0"}`)},
		{Path: "tokenizer_config.json", Data: []byte(`{"bos_token":"<|begin_of_text|>"}`)},
		{Path: "model.safetensors", Data: weights(t), LFS: true},
		{Path: "pytorch_model.bin", Data: bytes.Repeat([]byte{1}, 4096), LFS: true},
		{Path: "README.md", Data: []byte("# tiny\n")},
		{Path: "extra/generation_config.json", Data: []byte(`{"max_new_tokens":8}`)},
	}
	f := &fixture{hub: hubtest.NewServer(t), files: map[string]hubtest.File{}, cache: t.TempDir()}
	for _, file := range files {
		f.files[file.Path] = file
	}
	f.commit = f.hub.AddCommit(repoID, "main", files)
	return f
}

func (f *fixture) opts() Options {
	return Options{Repo: repoID, CacheDir: f.cache, Endpoint: f.hub.URL}
}

var wantPulled = []string{"config.json", "extra/generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}

func countRequests(reqs []hubtest.Request, method, substr string) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method && strings.Contains(r.Path, substr) {
			n++
		}
	}
	return n
}

func TestPullFresh(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	final := map[string]Progress{}
	opts := f.opts()
	opts.Token = "hf_secret"
	opts.Progress = func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		final[p.File] = p
	}
	snap, err := Pull(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(f.cache, "models--herd-test--tiny-llama")
	if want := filepath.Join(storage, "snapshots", f.commit); snap != want {
		t.Fatalf("snapshot = %s, want %s", snap, want)
	}
	// The huggingface_hub layout: relative symlinks into blobs/<etag>.
	for _, name := range wantPulled {
		file := f.files[name]
		link := filepath.Join(snap, filepath.FromSlash(name))
		target, err := os.Readlink(link)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		etag := hubtest.GitBlobSHA1(file.Data)
		if file.LFS {
			etag = hubtest.SHA256(file.Data)
		}
		up := strings.Repeat("../", strings.Count(name, "/")+2)
		if want := up + "blobs/" + etag; target != want {
			t.Errorf("%s -> %s, want %s", name, target, want)
		}
		got, err := os.ReadFile(link)
		if err != nil || !bytes.Equal(got, file.Data) {
			t.Errorf("%s: content differs (%v)", name, err)
		}
		if p := final[name]; p.Done != int64(len(file.Data)) || p.Total != int64(len(file.Data)) || p.Cached {
			t.Errorf("%s: last progress %+v, want done=total=%d", name, p, len(file.Data))
		}
	}
	for _, skipped := range []string{"pytorch_model.bin", "README.md"} {
		if _, err := os.Lstat(filepath.Join(snap, skipped)); !os.IsNotExist(err) {
			t.Errorf("%s was fetched", skipped)
		}
	}
	ref, err := os.ReadFile(filepath.Join(storage, "refs", "main"))
	if err != nil || string(ref) != f.commit {
		t.Errorf("refs/main = %q (%v), want %q with no newline", ref, err, f.commit)
	}
	blobs, _ := os.ReadDir(filepath.Join(storage, "blobs"))
	if len(blobs) != len(wantPulled) {
		t.Errorf("%d blobs, want %d", len(blobs), len(wantPulled))
	}
	for _, b := range blobs {
		if strings.HasSuffix(b.Name(), ".incomplete") {
			t.Errorf("left %s behind", b.Name())
		}
	}
	for _, r := range f.hub.Requests() {
		if !strings.HasPrefix(r.Path, "/cdn/") && r.Authorization != "Bearer hf_secret" {
			t.Errorf("%s %s sent Authorization %q", r.Method, r.Path, r.Authorization)
		}
	}
	// The snapshot is a model directory the safetensors reader accepts.
	m, err := safetensors.OpenModel(snap)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.Has("model.embed_tokens.weight") {
		t.Errorf("pulled weights hold %v", m.Names())
	}
	// Resolve finds it offline, by id.
	t.Setenv("HF_HUB_CACHE", f.cache)
	if dir, err := Resolve(repoID, ""); err != nil || dir != snap {
		t.Errorf("Resolve = %q, %v; want %q", dir, err, snap)
	}
}

func TestSecondPullIsNoOp(t *testing.T) {
	f := newFixture(t)
	if _, err := Pull(context.Background(), f.opts()); err != nil {
		t.Fatal(err)
	}
	before := len(f.hub.Requests())
	var cached []string
	opts := f.opts()
	opts.Progress = func(p Progress) {
		if p.Cached {
			cached = append(cached, p.File)
		}
	}
	if _, err := Pull(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	after := f.hub.Requests()[before:]
	if len(after) != 1 || !strings.HasPrefix(after[0].Path, "/api/models/") {
		t.Errorf("second pull made %v, want only the revision lookup", after)
	}
	slices.Sort(cached)
	if !slices.Equal(cached, wantPulled) {
		t.Errorf("cached files reported: %v", cached)
	}
}

func TestPullResumesAfterInterruptedBody(t *testing.T) {
	f := newFixture(t)
	size := len(f.files["model.safetensors"].Data)
	f.hub.FailAfter(repoID, "model.safetensors", 10000)
	opts := f.opts()
	opts.Retries = -1
	_, err := Pull(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "interrupted after 10000") {
		t.Fatalf("err = %v, want an interrupted download", err)
	}
	storage := filepath.Join(f.cache, RepoFolderName(repoID))
	part := filepath.Join(storage, "blobs", hubtest.SHA256(f.files["model.safetensors"].Data)+".incomplete")
	if st, err := os.Stat(part); err != nil || st.Size() != 10000 {
		t.Fatalf("partial download: %v %v, want 10000 bytes kept", st, err)
	}
	if _, err := os.Stat(filepath.Join(storage, "refs", "main")); !os.IsNotExist(err) {
		t.Error("refs/main written for an incomplete pull")
	}
	before := len(f.hub.Requests())
	snap, err := Pull(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var ranges []string
	for _, r := range f.hub.Requests()[before:] {
		if r.Method == http.MethodGet && r.Range != "" {
			ranges = append(ranges, r.Range)
		}
	}
	// The resolve GET and its CDN redirect both carry the Range.
	if len(ranges) == 0 || ranges[len(ranges)-1] != "bytes=10000-" {
		t.Errorf("resume sent ranges %v, want bytes=10000-", ranges)
	}
	got, _ := os.ReadFile(filepath.Join(snap, "model.safetensors"))
	if !bytes.Equal(got, f.files["model.safetensors"].Data) || len(got) != size {
		t.Error("resumed file differs")
	}
	if _, err := os.Stat(part); !os.IsNotExist(err) {
		t.Error(".incomplete left after the resume")
	}
}

func TestPullRetriesWithinOneCall(t *testing.T) {
	f := newFixture(t)
	f.hub.FailAfter(repoID, "model.safetensors", 5000)
	f.hub.FailAfter(repoID, "config.json", 3)
	snap, err := Pull(context.Background(), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"model.safetensors", "config.json"} {
		got, _ := os.ReadFile(filepath.Join(snap, name))
		if !bytes.Equal(got, f.files[name].Data) {
			t.Errorf("%s differs after the retry", name)
		}
	}
	if countRequests(f.hub.Requests(), http.MethodGet, "/cdn/") != 2 {
		t.Errorf("requests: %v", f.hub.Requests())
	}
}

func TestPullRejectsCorruptDownload(t *testing.T) {
	for _, tc := range []struct{ file, kind string }{
		{"model.safetensors", "sha256"},
		{"config.json", "git blob sha1"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f := newFixture(t)
			f.hub.Corrupt(repoID, tc.file)
			_, err := Pull(context.Background(), f.opts())
			if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), tc.kind) || !strings.Contains(err.Error(), tc.file) {
				t.Fatalf("err = %v, want an integrity error naming %s and its %s", err, tc.file, tc.kind)
			}
			storage := filepath.Join(f.cache, RepoFolderName(repoID))
			if _, err := os.Lstat(filepath.Join(storage, "snapshots", f.commit, tc.file)); !os.IsNotExist(err) {
				t.Error("corrupt file linked into the snapshot")
			}
			blobs, _ := os.ReadDir(filepath.Join(storage, "blobs"))
			etag := hubtest.GitBlobSHA1(f.files[tc.file].Data)
			if f.files[tc.file].LFS {
				etag = hubtest.SHA256(f.files[tc.file].Data)
			}
			for _, b := range blobs {
				if strings.HasPrefix(b.Name(), etag) {
					t.Errorf("corrupt bytes kept as %s", b.Name())
				}
			}
		})
	}
}

func TestPullErrors(t *testing.T) {
	cases := []struct {
		name  string
		setup func(f *fixture, o *Options)
		is    error
		want  []string
	}{
		{"no token", func(f *fixture, o *Options) { f.hub.RequireToken("hf_good") },
			ErrAuth, []string{"401", "set HF_TOKEN", "accept the model's licence"}},
		{"wrong token", func(f *fixture, o *Options) { f.hub.RequireToken("hf_good"); o.Token = "hf_bad" },
			ErrAuth, []string{"401", "check that the token in HF_TOKEN"}},
		{"gated", func(f *fixture, o *Options) { f.hub.Gate(repoID) },
			ErrAuth, []string{"403", "is gated", "accept its licence at " + "http"}},
		{"unknown repo", func(f *fixture, o *Options) { o.Repo = "herd-test/nope" },
			ErrNotFound, []string{"404", "herd-test/nope does not exist"}},
		{"unknown revision", func(f *fixture, o *Options) { o.Revision = "v9" },
			ErrNotFound, []string{`revision "v9"`}},
		{"bad repo id", func(f *fixture, o *Options) { o.Repo = "../etc" },
			nil, []string{"not a model id"}},
		{"nothing allowed", func(f *fixture, o *Options) { o.Allow = []string{"*.gguf"} },
			nil, []string{"matches [*.gguf]"}},
		{"network", func(f *fixture, o *Options) { o.Endpoint = "http://127.0.0.1:1"; o.Retries = -1 },
			nil, []string{"GET http://127.0.0.1:1/api/models/" + repoID + "/revision/main"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.opts()
			tc.setup(f, &o)
			_, err := Pull(context.Background(), o)
			if err == nil {
				t.Fatal("Pull succeeded")
			}
			t.Log(err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestPullWithToken(t *testing.T) {
	f := newFixture(t)
	f.hub.RequireToken("hf_good")
	t.Setenv("HF_TOKEN", "hf_good")
	if _, err := Pull(context.Background(), f.opts()); err != nil {
		t.Fatalf("with HF_TOKEN: %v", err)
	}
	// The token file `huggingface-cli login` writes works too.
	f2 := newFixture(t)
	f2.hub.RequireToken("hf_file")
	os.WriteFile(filepath.Join(os.Getenv("HF_HOME"), "token"), []byte("hf_file\n"), 0o600)
	t.Setenv("HF_TOKEN_PATH", "")
	if _, err := Pull(context.Background(), f2.opts()); err != nil {
		t.Fatalf("with $HF_HOME/token: %v", err)
	}
}

func TestPullRevisionsAndSharedBlobs(t *testing.T) {
	f := newFixture(t)
	if _, err := Pull(context.Background(), f.opts()); err != nil {
		t.Fatal(err)
	}
	// A new commit on a branch with a slash, sharing the weights.
	files := []hubtest.File{
		{Path: "config.json", Data: []byte(`{"model_type":"llama","hidden_size":256}`)},
		f.files["model.safetensors"],
	}
	dev := f.hub.AddCommit(repoID, "refs/pr/1", files)
	before := len(f.hub.Requests())
	o := f.opts()
	o.Revision = "refs/pr/1"
	snap, err := Pull(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(f.cache, RepoFolderName(repoID))
	if ref, _ := os.ReadFile(filepath.Join(storage, "refs", "refs", "pr", "1")); string(ref) != dev {
		t.Errorf("refs/refs/pr/1 = %q, want %s", ref, dev)
	}
	if filepath.Base(snap) != dev {
		t.Errorf("snapshot %s", snap)
	}
	if n := countRequests(f.hub.Requests()[before:], http.MethodGet, "/cdn/"); n != 0 {
		t.Errorf("shared weights downloaded again (%d CDN GETs)", n)
	}
	// Pulling by commit writes no ref.
	o.Revision = f.commit
	if _, err := Pull(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(storage, "refs", f.commit)); !os.IsNotExist(err) {
		t.Error("a ref named after a commit was written")
	}
	if dir, err := ResolveCache(f.cache, repoID, "refs/pr/1"); err != nil || dir != snap {
		t.Errorf("ResolveCache(refs/pr/1) = %q, %v", dir, err)
	}
	if dir, err := ResolveCache(f.cache, repoID, f.commit); err != nil || filepath.Base(dir) != f.commit {
		t.Errorf("ResolveCache(commit) = %q, %v", dir, err)
	}
}

func TestResolve(t *testing.T) {
	isolate(t)
	cache := t.TempDir()
	t.Setenv("HF_HUB_CACHE", cache)
	local := t.TempDir()
	if dir, err := Resolve(local, ""); err != nil || dir != local {
		t.Errorf("Resolve(local dir) = %q, %v", dir, err)
	}
	file := filepath.Join(local, "config.json")
	os.WriteFile(file, []byte("{}"), 0o644)
	if _, err := Resolve(file, ""); err == nil || !strings.Contains(err.Error(), "is a file") {
		t.Errorf("Resolve(file) = %v", err)
	}
	if _, err := Resolve("./no/such/dir", ""); err == nil || errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "no/such/dir") {
		t.Errorf("Resolve(missing path) = %v", err)
	}
	_, err := Resolve("meta-llama/Llama-3.2-1B", "")
	if !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "run `herd model pull meta-llama/Llama-3.2-1B`") {
		t.Errorf("Resolve(uncached id) = %v", err)
	}
	_, err = Resolve("meta-llama/Llama-3.2-1B", "v2")
	if !strings.Contains(err.Error(), "herd model pull meta-llama/Llama-3.2-1B --revision v2") {
		t.Errorf("Resolve(uncached id, v2) = %v", err)
	}
	// A ref to a snapshot that is missing is not cached either.
	storage := filepath.Join(cache, "models--org--m")
	os.MkdirAll(filepath.Join(storage, "refs"), 0o755)
	os.WriteFile(filepath.Join(storage, "refs", "main"), []byte(strings.Repeat("a", 40)), 0o644)
	if _, err := Resolve("org/m", ""); !errors.Is(err, ErrNotCached) {
		t.Errorf("Resolve(dangling ref) = %v", err)
	}
	os.MkdirAll(filepath.Join(storage, "snapshots", strings.Repeat("a", 40)), 0o755)
	if dir, err := Resolve("org/m", "main"); err != nil || !strings.HasSuffix(dir, strings.Repeat("a", 40)) {
		t.Errorf("Resolve(org/m) = %q, %v", dir, err)
	}
}

func TestCacheDir(t *testing.T) {
	isolate(t)
	home, _ := os.UserHomeDir()
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HF_HOME": "", "XDG_CACHE_HOME": ""}, filepath.Join(home, ".cache/huggingface/hub")},
		{map[string]string{"HF_HOME": "", "XDG_CACHE_HOME": "/x"}, "/x/huggingface/hub"},
		{map[string]string{"HF_HOME": "/hf"}, "/hf/hub"},
		{map[string]string{"HF_HOME": "~/hf"}, filepath.Join(home, "hf/hub")},
		{map[string]string{"HF_HOME": "/hf", "HF_HUB_CACHE": "/cache"}, "/cache"},
		{map[string]string{"HUGGINGFACE_HUB_CACHE": "/legacy"}, "/legacy"},
	}
	for _, tc := range cases {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		if got := CacheDir(); got != tc.want {
			t.Errorf("env %v: CacheDir = %s, want %s", tc.env, got, tc.want)
		}
		for k := range tc.env {
			t.Setenv(k, "")
		}
	}
}

func TestMatchPattern(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"*.json", "config.json", true},
		{"*.json", "sub/dir/x.json", true}, // fnmatch's '*' crosses '/'
		{"*.json", "config.json.bak", false},
		{"tokenizer.model", "tokenizer.model", true},
		{"tokenizer.model", "xtokenizer.model", false},
		{"model-?????-of-*.safetensors", "model-00001-of-00002.safetensors", true},
		{"model-[0-9]*", "model-1", true},
		{"model-[!0-9]*", "model-1", false},
		{"model-[!0-9]*", "model-a", true},
		{"onnx/", "onnx/model.onnx", true},
		{"*", "anything/at/all", true},
		{"[", "[", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
	}
	for _, c := range cases {
		if got := matchPattern(c.pattern, c.name); got != c.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func TestSelectFiles(t *testing.T) {
	sib := func(names ...string) []sibling {
		var out []sibling
		for _, n := range names {
			out = append(out, sibling{RFilename: n})
		}
		return out
	}
	names := func(s []sibling) []string {
		var out []string
		for _, x := range s {
			out = append(out, x.RFilename)
		}
		return out
	}
	got, _ := selectFiles(sib("a.bin", "b.safetensors", "c.pth", "d.json"), []string{"*"})
	if !slices.Equal(names(got), []string{"b.safetensors", "d.json"}) {
		t.Errorf("with safetensors: %v", names(got))
	}
	got, _ = selectFiles(sib("a.bin", "d.json"), []string{"*"})
	if !slices.Equal(names(got), []string{"a.bin", "d.json"}) {
		t.Errorf("without safetensors: %v", names(got))
	}
	if _, err := selectFiles(sib("../evil.json"), DefaultAllow); err == nil {
		t.Error("a file name escaping the snapshot was accepted")
	}
}
