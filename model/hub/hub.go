// Package hub owns herd's access to the Hugging Face model hub: downloading
// a model repository into the standard hub cache (the layout huggingface_hub
// and transformers use, so the two share downloads) and resolving a model
// argument, a local directory or a hub id, to a directory on disk.
//
// Pull talks to the hub HTTP API as huggingface_hub does: it asks
// /api/models/{repo}/revision/{rev} for the commit and the file list, then
// fetches each selected file from /{repo}/resolve/{commit}/{file} into
// blobs/<etag>, resuming interrupted downloads with Range requests and
// verifying size and checksum before a blob is installed and linked from
// snapshots/<commit>/. Resolve only reads the cache and never goes online.
//
// The package is pure Go and imports no compute code.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herdml/herd/internal/version"
)

// DefaultEndpoint is the hub used when neither Options.Endpoint nor
// HF_ENDPOINT says otherwise.
const DefaultEndpoint = "https://huggingface.co"

// DefaultAllow selects what a model needs: configs, safetensors weights and
// their index, tokenizer files.
var DefaultAllow = []string{"*.json", "*.safetensors", "tokenizer.model", "*.txt"}

var (
	// ErrAuth is matched by errors for HTTP 401/403 and gated repositories.
	ErrAuth = errors.New("hub: not authorized")
	// ErrNotFound is matched by errors for an unknown repository, revision or file.
	ErrNotFound = errors.New("hub: not found")
	// ErrIntegrity is matched by errors for a download whose size or checksum
	// is not what the hub announced; the bad bytes are discarded.
	ErrIntegrity = errors.New("hub: download failed verification")
	// ErrNotCached is matched by Resolve's error for a hub id with no snapshot
	// in the cache.
	ErrNotCached = errors.New("hub: model not in the cache")
)

// Options says what Pull fetches and from where. Empty fields take the
// defaults described on each, most from the same environment variables
// huggingface_hub reads.
type Options struct {
	// Repo is the model id, "ORG/NAME" (or a bare "NAME" for the few
	// repositories without an organisation).
	Repo string
	// Revision is a branch, tag or 40-hex commit; "" means "main".
	Revision string
	// CacheDir is the hub cache root; "" means CacheDir(): $HF_HUB_CACHE,
	// else $HF_HOME/hub, else ~/.cache/huggingface/hub.
	CacheDir string
	// Endpoint is the hub URL; "" means $HF_ENDPOINT, else DefaultEndpoint.
	Endpoint string
	// Token is sent as "Authorization: Bearer TOKEN"; "" means $HF_TOKEN,
	// else the file `huggingface-cli login` writes ($HF_TOKEN_PATH, else
	// $HF_HOME/token); no token is sent when none is found.
	Token string
	// Allow lists the files to fetch as shell patterns matched against the
	// whole path in the repository (a '*' also matches '/', as Python's
	// fnmatch does); nil means DefaultAllow. Pickled weights (*.bin, *.pth,
	// *.pt) are skipped whenever the repository has *.safetensors files.
	Allow []string
	// Concurrency bounds the parallel file downloads; 0 means 8.
	Concurrency int
	// Retries is how many more times a file download is attempted after a
	// network error or a 5xx/429 answer, each resuming where the last one
	// stopped; 0 means 3, a negative value means no retry.
	Retries int
	// Progress, when set, is called as files download. Calls are serialized
	// (never concurrent) and throttled to about one per MiB per file, plus
	// one when a file starts and one when it is complete.
	Progress func(Progress)
	// Client makes the HTTP requests; nil means a client without an overall
	// timeout (a shard can take minutes), cancelled through ctx.
	Client *http.Client
}

// Progress reports one file's download.
type Progress struct {
	File   string // path in the repository
	Done   int64  // bytes on disk, a resumed prefix included
	Total  int64  // file size; -1 when the hub did not announce it
	Cached bool   // the file was already in the cache: nothing was fetched
}

// repoInfo is the part of /api/models/{repo}/revision/{rev}?blobs=true used here.
type repoInfo struct {
	SHA      string    `json:"sha"`
	Siblings []sibling `json:"siblings"`
}

type sibling struct {
	RFilename string `json:"rfilename"`
	Size      *int64 `json:"size"`
	BlobID    string `json:"blobId"`
	LFS       *struct {
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	} `json:"lfs"`
}

var (
	repoIDPattern = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$`)
	commitPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidRepoID reports whether id is a well-formed hub model id, checked as
// huggingface_hub does; it also keeps ids from escaping the cache directory.
func ValidRepoID(id string) bool {
	return repoIDPattern.MatchString(id) && !strings.Contains(id, "--") &&
		!strings.Contains(id, "..") && !strings.HasSuffix(id, ".git")
}

func (o *Options) fill() error {
	if !ValidRepoID(o.Repo) {
		return fmt.Errorf("hub: %q is not a model id: expected ORG/NAME", o.Repo)
	}
	if o.Revision == "" {
		o.Revision = "main"
	}
	if o.CacheDir == "" {
		o.CacheDir = CacheDir()
	}
	if o.Endpoint == "" {
		o.Endpoint = os.Getenv("HF_ENDPOINT")
	}
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	o.Endpoint = strings.TrimRight(o.Endpoint, "/")
	if o.Token == "" {
		o.Token = envToken()
	}
	if o.Allow == nil {
		o.Allow = DefaultAllow
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Retries == 0 {
		o.Retries = 3
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	return nil
}

// Pull downloads the files of opts.Repo at opts.Revision that opts.Allow
// selects into the hub cache and returns the snapshot directory, a Hugging
// Face model directory of symlinks into blobs/. Files already in the cache
// are not fetched again; an interrupted download resumes from its
// blobs/<etag>.incomplete file. refs/<revision> is written once every file
// is in place.
func Pull(ctx context.Context, opts Options) (snapshotDir string, err error) {
	if err := opts.fill(); err != nil {
		return "", err
	}
	c := &client{opts: opts}
	var info *repoInfo
	err = c.retry(ctx, func() (err error) {
		info, err = c.repoInfo(ctx)
		return err
	})
	if err != nil {
		return "", err
	}
	if !commitPattern.MatchString(info.SHA) {
		return "", fmt.Errorf("hub: %s at %q: the hub answered commit %q, not a 40-hex sha", opts.Repo, opts.Revision, info.SHA)
	}
	files, err := selectFiles(info.Siblings, opts.Allow)
	if err != nil {
		return "", fmt.Errorf("hub: %s: %w", opts.Repo, err)
	}
	if len(files) == 0 {
		return "", fmt.Errorf("hub: no file of %s at %s matches %v", opts.Repo, opts.Revision, opts.Allow)
	}
	storage := filepath.Join(opts.CacheDir, RepoFolderName(opts.Repo))
	snapshotDir = filepath.Join(storage, "snapshots", info.SHA)
	if err := os.MkdirAll(snapshotDir, 0o755); err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, opts.Concurrency)
	)
	for _, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := c.fetch(ctx, storage, info.SHA, f); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("hub: pull %s: %w", opts.Repo, ctx.Err())
	}
	if firstErr != nil {
		return "", firstErr
	}
	if opts.Revision != info.SHA {
		if err := writeRef(storage, opts.Revision, info.SHA); err != nil {
			return "", err
		}
	}
	return snapshotDir, nil
}

// selectFiles keeps the siblings matching allow, dropping pickled weights
// when safetensors exist, and rejects names that would leave the snapshot.
func selectFiles(siblings []sibling, allow []string) ([]sibling, error) {
	hasSafetensors := slices.ContainsFunc(siblings, func(s sibling) bool {
		return strings.HasSuffix(s.RFilename, ".safetensors")
	})
	var out []sibling
	for _, s := range siblings {
		if !slices.ContainsFunc(allow, func(p string) bool { return matchPattern(p, s.RFilename) }) {
			continue
		}
		switch path.Ext(s.RFilename) {
		case ".bin", ".pth", ".pt":
			if hasSafetensors {
				continue
			}
		}
		if !safeRelPath(s.RFilename) {
			return nil, fmt.Errorf("the hub lists file %q, which is not a plain relative path", s.RFilename)
		}
		out = append(out, s)
	}
	return out, nil
}

func safeRelPath(p string) bool {
	return p != "" && p != "." && path.Clean(p) == p && !path.IsAbs(p) &&
		p != ".." && !strings.HasPrefix(p, "../") && !strings.ContainsRune(p, '\\')
}

// client carries the options through the HTTP requests of one Pull.
type client struct {
	opts     Options
	progMu   sync.Mutex
	noFollow *http.Client
	once     sync.Once
}

func (c *client) report(p Progress) {
	if c.opts.Progress == nil {
		return
	}
	c.progMu.Lock()
	defer c.progMu.Unlock()
	c.opts.Progress(p)
}

func (c *client) newRequest(ctx context.Context, method, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("hub: %s %s: %w", method, u, err)
	}
	req.Header.Set("User-Agent", "herd/"+version.Release)
	// Sizes and Range offsets are about the stored bytes: no transparent gzip.
	req.Header.Set("Accept-Encoding", "identity")
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
	return req, nil
}

func (c *client) repoInfo(ctx context.Context) (*repoInfo, error) {
	u := fmt.Sprintf("%s/api/models/%s/revision/%s?blobs=true",
		c.opts.Endpoint, c.opts.Repo, url.PathEscape(c.opts.Revision))
	req, err := c.newRequest(ctx, http.MethodGet, u)
	if err != nil {
		return nil, err
	}
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return nil, &retryableError{netErr("GET", u, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.statusError(resp, "GET", u, "")
	}
	var info repoInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nil, fmt.Errorf("hub: GET %s: decoding the answer: %w", u, err)
	}
	return &info, nil
}

// statusError turns a failed answer into an error that says what to do,
// using the hub's X-Error-Code where it gives one. file is "" for API calls.
func (c *client) statusError(resp *http.Response, method, u, file string) error {
	repo, rev := c.opts.Repo, c.opts.Revision
	msg := resp.Header.Get("X-Error-Message")
	detail := fmt.Sprintf("%s %s: HTTP %s", method, u, resp.Status)
	if msg != "" {
		detail += " (" + msg + ")"
	}
	tokenHint := "set HF_TOKEN to a Hugging Face access token with read access"
	if c.opts.Token != "" {
		tokenHint = "check that the token in HF_TOKEN is valid and has read access"
	}
	switch code := resp.Header.Get("X-Error-Code"); {
	case code == "GatedRepo":
		return fmt.Errorf("%w: %s: %s is gated: accept its licence at %s/%s while logged in, and %s",
			ErrAuth, detail, repo, c.opts.Endpoint, repo, tokenHint)
	case code == "RepoNotFound":
		return fmt.Errorf("%w: %s: repository %s does not exist on %s, or it is private and needs a token: %s",
			ErrNotFound, detail, repo, c.opts.Endpoint, tokenHint)
	case code == "RevisionNotFound":
		return fmt.Errorf("%w: %s: revision %q of %s does not exist", ErrNotFound, detail, rev, repo)
	case code == "EntryNotFound":
		return fmt.Errorf("%w: %s: file %s is not in %s at %s", ErrNotFound, detail, file, repo, rev)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s: %s, and accept the model's licence on its hub page (%s/%s) if it is gated",
			ErrAuth, detail, tokenHint, c.opts.Endpoint, repo)
	case resp.StatusCode == http.StatusNotFound && file != "":
		return fmt.Errorf("%w: %s: file %s of %s at %s", ErrNotFound, detail, file, repo, rev)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s: repository %s or its revision %q does not exist on %s", ErrNotFound, detail, repo, rev, c.opts.Endpoint)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return &retryableError{fmt.Errorf("hub: %s", detail)}
	default:
		return fmt.Errorf("hub: %s", detail)
	}
}

// netErr names the request of a transport failure once (url.Error repeats it).
func netErr(method, u string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("hub: %s %s: %w", method, u, err)
}

// retryableError marks a failure worth another (resuming) attempt.
type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
