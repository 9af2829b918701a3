// Package hubtest owns an in-process fake of the Hugging Face hub HTTP API
// for tests of model downloads (model/hub, the CLI, end-to-end tests): the
// repository info endpoint, resolve URLs with ETag / X-Linked-Etag /
// X-Linked-Size / X-Repo-Commit headers, LFS files redirected to a "CDN"
// path, Range requests, and injected faults (a body cut mid-way, corrupted
// bytes, a required token, a gated repository).
package hubtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// File is one file of a fake repository. LFS files are served as the hub
// serves Git LFS files: a redirect to a CDN URL, sha256 as their etag.
type File struct {
	Path string
	Data []byte
	LFS  bool
}

// Request is one request the server received.
type Request struct {
	Method        string
	Path          string // unescaped
	Range         string
	Authorization string
}

type commit struct {
	sha   string
	files map[string]File
}

type repo struct {
	commits map[string]*commit
	refs    map[string]string // branch or tag → commit sha
	gated   bool
}

// Server is the fake hub. Use its URL as the endpoint (HF_ENDPOINT).
type Server struct {
	URL string

	srv       *httptest.Server
	mu        sync.Mutex
	repos     map[string]*repo
	token     string
	failAfter map[string]int64 // "repo/path" → body bytes to send before cutting the next GET
	corrupt   map[string]bool
	requests  []Request
}

// NewServer starts a fake hub, closed when the test ends.
func NewServer(t testing.TB) *Server {
	s := &Server{
		repos:     map[string]*repo{},
		failAfter: map[string]int64{},
		corrupt:   map[string]bool{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// AddCommit adds a commit holding files to repository id (created if new)
// and points branch at it. It returns the commit sha, derived from the
// contents so that equal inputs give equal shas.
func (s *Server) AddCommit(id, branch string, files []File) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[id]
	if r == nil {
		r = &repo{commits: map[string]*commit{}, refs: map[string]string{}}
		s.repos[id] = r
	}
	h := sha1.New()
	fmt.Fprintf(h, "%s\x00%d\x00", id, len(r.commits))
	c := &commit{files: map[string]File{}}
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.Path, len(f.Data))
		h.Write(f.Data)
		c.files[f.Path] = f
	}
	c.sha = hex.EncodeToString(h.Sum(nil))
	r.commits[c.sha] = c
	r.refs[branch] = c.sha
	return c.sha
}

// RequireToken makes every request without "Authorization: Bearer token" fail with 401.
func (s *Server) RequireToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// Gate makes repository id answer 403 GatedRepo, as a gated model does for
// an account that has not accepted its licence.
func (s *Server) Gate(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[id].gated = true
}

// FailAfter makes the next GET of file (in repository id) send n body bytes
// and then drop the connection.
func (s *Server) FailAfter(id, file string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAfter[id+"/"+file] = n
}

// Corrupt makes every GET of file (in repository id) serve its bytes with
// the last one flipped, while the headers still announce the true checksum.
func (s *Server) Corrupt(id, file string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt[id+"/"+file] = true
}

// Requests returns the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// GitBlobSHA1 is the git object id of data, the etag of a non-LFS file.
func GitBlobSHA1(data []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256 is the hex sha256 of data, the etag of an LFS file.
func SHA256(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, Request{r.Method, r.URL.Path, r.Header.Get("Range"), r.Header.Get("Authorization")})
	token := s.token
	s.mu.Unlock()

	esc := r.URL.EscapedPath()
	if strings.HasPrefix(esc, "/cdn/") {
		s.serveCDN(w, r, strings.TrimPrefix(esc, "/cdn/"))
		return
	}
	if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
		w.Header().Set("X-Error-Message", "Invalid credentials in Authorization header")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch {
	case strings.HasPrefix(esc, "/api/models/") && strings.Contains(esc, "/revision/"):
		rest := strings.TrimPrefix(esc, "/api/models/")
		i := strings.LastIndex(rest, "/revision/")
		id, _ := url.PathUnescape(rest[:i])
		rev, _ := url.PathUnescape(rest[i+len("/revision/"):])
		s.serveInfo(w, r, id, rev)
	case strings.Contains(esc, "/resolve/"):
		i := strings.Index(esc, "/resolve/")
		id, _ := url.PathUnescape(strings.TrimPrefix(esc[:i], "/"))
		rest := esc[i+len("/resolve/"):]
		j := strings.Index(rest, "/")
		if j < 0 {
			http.NotFound(w, r)
			return
		}
		rev, _ := url.PathUnescape(rest[:j])
		file, _ := url.PathUnescape(rest[j+1:])
		s.serveResolve(w, r, id, rev, file)
	default:
		http.NotFound(w, r)
	}
}

// lookup finds the commit of id at rev, writing the hub's error if none.
func (s *Server) lookup(w http.ResponseWriter, id, rev string) *commit {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[id]
	if r == nil {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		w.Header().Set("X-Error-Message", "Repository not found")
		http.Error(w, "not found", http.StatusNotFound)
		return nil
	}
	if r.gated {
		w.Header().Set("X-Error-Code", "GatedRepo")
		w.Header().Set("X-Error-Message", "Access to model "+id+" is restricted")
		http.Error(w, "gated", http.StatusForbidden)
		return nil
	}
	sha := rev
	if ref, ok := r.refs[rev]; ok {
		sha = ref
	}
	c := r.commits[sha]
	if c == nil {
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		w.Header().Set("X-Error-Message", "Invalid rev id: "+rev)
		http.Error(w, "not found", http.StatusNotFound)
	}
	return c
}

type lfsInfo struct {
	SHA256      string `json:"sha256"`
	Size        int    `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

type siblingJSON struct {
	RFilename string   `json:"rfilename"`
	Size      *int     `json:"size,omitempty"`
	BlobID    string   `json:"blobId,omitempty"`
	LFS       *lfsInfo `json:"lfs,omitempty"`
}

func (s *Server) serveInfo(w http.ResponseWriter, r *http.Request, id, rev string) {
	c := s.lookup(w, id, rev)
	if c == nil {
		return
	}
	blobs := r.URL.Query().Get("blobs") == "true"
	var sib []siblingJSON
	for _, f := range c.files {
		e := siblingJSON{RFilename: f.Path}
		if blobs {
			n := len(f.Data)
			e.Size = &n
			if f.LFS {
				e.BlobID = GitBlobSHA1([]byte("version https://git-lfs.github.com/spec/v1\noid sha256:" + SHA256(f.Data)))
				e.LFS = &lfsInfo{SHA256: SHA256(f.Data), Size: n, PointerSize: 134}
			} else {
				e.BlobID = GitBlobSHA1(f.Data)
			}
		}
		sib = append(sib, e)
	}
	sort.Slice(sib, func(i, j int) bool { return sib[i].RFilename < sib[j].RFilename })
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"id": id, "modelId": id, "sha": c.sha, "private": false, "siblings": sib})
}

func (s *Server) serveResolve(w http.ResponseWriter, r *http.Request, id, rev, file string) {
	c := s.lookup(w, id, rev)
	if c == nil {
		return
	}
	f, ok := c.files[file]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.Error(w, "entry not found", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", c.sha)
	if f.LFS {
		sha := SHA256(f.Data)
		w.Header().Set("X-Linked-Etag", `"`+sha+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.Data)))
		w.Header().Set("ETag", `"`+GitBlobSHA1(f.Data)+`"`)
		q := url.Values{"repo": {id}, "file": {file}}
		w.Header().Set("Location", "/cdn/"+sha+"?"+q.Encode())
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+GitBlobSHA1(f.Data)+`"`)
	s.serveBytes(w, r, id+"/"+file, f.Data)
}

func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request, sha string) {
	id, file := r.URL.Query().Get("repo"), r.URL.Query().Get("file")
	s.mu.Lock()
	var data []byte
	found := false
	if rp := s.repos[id]; rp != nil {
		for _, c := range rp.commits {
			if f, ok := c.files[file]; ok && f.LFS && SHA256(f.Data) == sha {
				data, found = f.Data, true
			}
		}
	}
	s.mu.Unlock()
	if !found {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", `"`+sha+`"`)
	s.serveBytes(w, r, id+"/"+file, data)
}

// serveBytes answers GET and HEAD with Range support ("bytes=N-" and
// "bytes=N-M"), applying the Corrupt and FailAfter faults.
func (s *Server) serveBytes(w http.ResponseWriter, r *http.Request, key string, data []byte) {
	s.mu.Lock()
	if s.corrupt[key] && len(data) > 0 {
		data = append([]byte(nil), data...)
		data[len(data)-1] ^= 0xff
	}
	cut, fail := s.failAfter[key]
	if fail && r.Method == http.MethodGet {
		delete(s.failAfter, key)
	}
	s.mu.Unlock()

	start, end := 0, len(data) // [start, end)
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" {
		spec, ok := strings.CutPrefix(rg, "bytes=")
		a, b, _ := strings.Cut(spec, "-")
		n, err := strconv.Atoi(a)
		if !ok || err != nil || n >= len(data) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = n
		if m, err := strconv.Atoi(b); err == nil && m+1 < end {
			end = m + 1
		}
		status = http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, len(data)))
	}
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.Itoa(end-start))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	body := data[start:end]
	if fail && r.Method == http.MethodGet && cut < int64(len(body)) {
		w.Write(body[:cut])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		panic(http.ErrAbortHandler) // drops the connection mid-body
	}
	w.Write(body)
}
