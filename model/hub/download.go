package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// fileMeta is what a HEAD on the resolve URL says about a file.
type fileMeta struct {
	etag   string // blob name: sha256 for LFS files, git blob sha1 otherwise
	size   int64  // -1 when not announced
	commit string // X-Repo-Commit
	linked bool   // an LFS file (X-Linked-Etag was sent)
}

// fetch makes snapshots/<commit>/<file> exist, pointing at a verified blob.
func (c *client) fetch(ctx context.Context, storage, commit string, f sibling) error {
	name := f.RFilename
	link := filepath.Join(storage, "snapshots", commit, filepath.FromSlash(name))
	wantSize := int64(-1)
	if f.LFS != nil {
		wantSize = f.LFS.Size
	} else if f.Size != nil {
		wantSize = *f.Size
	}
	// A commit never changes, so a file already linked into its snapshot is
	// done; this is what makes a second pull free of downloads.
	if st, err := os.Stat(link); err == nil && st.Mode().IsRegular() && (wantSize < 0 || st.Size() == wantSize) {
		c.report(Progress{File: name, Done: st.Size(), Total: st.Size(), Cached: true})
		return nil
	}

	u := fmt.Sprintf("%s/%s/resolve/%s/%s", c.opts.Endpoint, c.opts.Repo, commit, escapePath(name))
	var meta fileMeta
	err := c.retry(ctx, func() (err error) {
		meta, err = c.head(ctx, u, name)
		return err
	})
	if err != nil {
		return err
	}
	if meta.commit != "" && meta.commit != commit {
		return fmt.Errorf("hub: HEAD %s: the hub served commit %s, expected %s", u, meta.commit, commit)
	}
	size := meta.size
	if size < 0 {
		size = wantSize
	}
	if wantSize >= 0 && size != wantSize {
		return fmt.Errorf("%w: %s: the file list says %d bytes, the file's headers %d", ErrIntegrity, name, wantSize, size)
	}
	var wantSHA256, wantGit string
	switch {
	case f.LFS != nil && f.LFS.SHA256 != "":
		wantSHA256 = strings.ToLower(f.LFS.SHA256)
	case meta.linked && sha256Pattern.MatchString(meta.etag):
		wantSHA256 = meta.etag
	case f.LFS == nil && commitPattern.MatchString(f.BlobID):
		wantGit = f.BlobID
	}

	blob := filepath.Join(storage, "blobs", meta.etag)
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	unlock, err := lockFile(filepath.Join(filepath.Dir(storage), ".locks", filepath.Base(storage), meta.etag+".lock"))
	if err != nil {
		return fmt.Errorf("hub: lock %s: %w", name, err)
	}
	defer unlock()
	if st, err := os.Stat(blob); err == nil && (size < 0 || st.Size() == size) {
		// Another commit (or another process) already fetched these bytes.
		c.report(Progress{File: name, Done: st.Size(), Total: st.Size(), Cached: true})
	} else {
		part := blob + ".incomplete"
		// Each attempt resumes from what the previous one left in part.
		if err := c.retry(ctx, func() error { return c.getOnce(ctx, u, name, part, size) }); err != nil {
			return err
		}
		if err := verify(part, name, size, wantSHA256, wantGit); err != nil {
			os.Remove(part) // bad bytes must not be resumed from
			return err
		}
		if err := os.Rename(part, blob); err != nil {
			return fmt.Errorf("hub: %w", err)
		}
	}
	return linkBlob(link, blob)
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// head reads a file's etag, size and commit as huggingface_hub does: without
// following the redirect of an LFS file to its CDN (the X-Linked-* headers
// of the redirect describe the file), but following a relative redirect of a
// renamed repository.
func (c *client) head(ctx context.Context, u, file string) (fileMeta, error) {
	c.once.Do(func() {
		nf := *c.opts.Client
		nf.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		c.noFollow = &nf
	})
	for hops := 0; ; hops++ {
		req, err := c.newRequest(ctx, http.MethodHead, u)
		if err != nil {
			return fileMeta{}, err
		}
		resp, err := c.noFollow.Do(req)
		if err != nil {
			return fileMeta{}, &retryableError{netErr("HEAD", u, err)}
		}
		resp.Body.Close()
		h := resp.Header
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400 && h.Get("X-Linked-Etag") == "":
			loc, err := resp.Location()
			if err != nil || hops >= 5 {
				return fileMeta{}, fmt.Errorf("hub: HEAD %s: HTTP %s with no usable redirect", u, resp.Status)
			}
			u = loc.String()
			continue
		case resp.StatusCode >= 300 && resp.StatusCode < 400, resp.StatusCode == http.StatusOK:
		default:
			return fileMeta{}, c.statusError(resp, "HEAD", u, file)
		}
		m := fileMeta{commit: h.Get("X-Repo-Commit"), size: -1}
		etag := h.Get("X-Linked-Etag")
		m.linked = etag != ""
		if !m.linked {
			etag = h.Get("ETag")
		}
		m.etag = normalizeETag(etag)
		if m.etag == "" || strings.ContainsAny(m.etag, `/\`) || m.etag == "." || m.etag == ".." {
			return fileMeta{}, fmt.Errorf("hub: HEAD %s: no usable ETag (got %q): cannot name the blob", u, etag)
		}
		sz := h.Get("X-Linked-Size")
		if sz == "" {
			sz = h.Get("Content-Length")
		}
		if sz != "" {
			n, err := strconv.ParseInt(sz, 10, 64)
			if err != nil || n < 0 {
				return fileMeta{}, fmt.Errorf("hub: HEAD %s: bad size %q", u, sz)
			}
			m.size = n
		}
		return m, nil
	}
}

func normalizeETag(e string) string {
	return strings.Trim(strings.TrimPrefix(strings.TrimSpace(e), "W/"), `"`)
}

// retry runs fn until it succeeds, fails for good (an error that is not a
// retryableError) or has used up Options.Retries, backing off in between.
func (c *client) retry(ctx context.Context, fn func() error) error {
	retries := max(c.opts.Retries, 0)
	for attempt := 0; ; attempt++ {
		err := fn()
		var re *retryableError
		if err == nil || !errors.As(err, &re) || attempt >= retries || ctx.Err() != nil {
			return err
		}
		if serr := sleepCtx(ctx, min(250*time.Millisecond<<attempt, 8*time.Second)); serr != nil {
			return err
		}
	}
}

func (c *client) getOnce(ctx context.Context, u, file, part string, size int64) error {
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if size >= 0 && have > size {
		if have, err = restart(f); err != nil {
			return err
		}
	}
	if size >= 0 && have == size {
		return nil
	}
	req, err := c.newRequest(ctx, http.MethodGet, u)
	if err != nil {
		return err
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return &retryableError{netErr("GET", u, err)}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if have > 0 { // the server ignored the Range: start over
			if have, err = restart(f); err != nil {
				return err
			}
		}
	case http.StatusPartialContent:
		if want := fmt.Sprintf("bytes %d-", have); !strings.HasPrefix(resp.Header.Get("Content-Range"), want) {
			restart(f)
			return &retryableError{fmt.Errorf("hub: GET %s: Content-Range %q does not start at byte %d", u, resp.Header.Get("Content-Range"), have)}
		}
	case http.StatusRequestedRangeNotSatisfiable:
		restart(f)
		return &retryableError{fmt.Errorf("hub: GET %s: the server refused to resume at byte %d", u, have)}
	default:
		return c.statusError(resp, "GET", u, file)
	}

	c.report(Progress{File: file, Done: have, Total: size})
	done, lastReport := have, have
	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return fmt.Errorf("hub: write %s: %w", part, err)
			}
			done += int64(n)
			if done-lastReport >= 1<<20 {
				c.report(Progress{File: file, Done: done, Total: size})
				lastReport = done
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Sync() // keep what arrived, to resume from
			return &retryableError{fmt.Errorf("hub: GET %s: interrupted after %d of %s bytes: %w", u, done, sizeString(size), rerr)}
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if size >= 0 && done < size {
		return &retryableError{fmt.Errorf("hub: GET %s: body ended after %d of %d bytes", u, done, size)}
	}
	if done != lastReport {
		c.report(Progress{File: file, Done: done, Total: size})
	}
	return nil
}

func restart(f *os.File) (int64, error) {
	if err := f.Truncate(0); err != nil {
		return 0, fmt.Errorf("hub: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("hub: %w", err)
	}
	return 0, nil
}

func sizeString(n int64) string {
	if n < 0 {
		return "unknown"
	}
	return strconv.FormatInt(n, 10)
}

// verify checks the downloaded file against the size and the checksum the
// hub announced: sha256 for LFS files, the git blob sha1 for the others.
func verify(part, file string, size int64, wantSHA256, wantGit string) error {
	f, err := os.Open(part)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if size >= 0 && st.Size() != size {
		return fmt.Errorf("%w: %s is %d bytes, the hub announced %d; the download was discarded, pull again",
			ErrIntegrity, file, st.Size(), size)
	}
	var h hash.Hash
	kind, want := "", ""
	switch {
	case wantSHA256 != "":
		h, kind, want = sha256.New(), "sha256", wantSHA256
	case wantGit != "":
		h, kind, want = sha1.New(), "git blob sha1", wantGit
		fmt.Fprintf(h, "blob %d\x00", st.Size())
	default:
		return nil
	}
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("hub: read %s: %w", part, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%w: %s has %s %s, the hub announced %s; the download was discarded, pull again",
			ErrIntegrity, file, kind, got, want)
	}
	return nil
}

// linkBlob points link at blob with a relative symlink, as huggingface_hub
// does, replacing any existing link atomically.
func linkBlob(link, blob string) error {
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	rel, err := filepath.Rel(filepath.Dir(link), blob)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", link, rand.Uint64())
	if err := os.Symlink(rel, tmp); err != nil {
		return fmt.Errorf("hub: link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("hub: link %s: %w", link, err)
	}
	return nil
}
