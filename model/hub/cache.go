package hub

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CacheDir is the hub cache root huggingface_hub would use:
// $HF_HUB_CACHE, else the legacy $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub,
// where HF_HOME defaults to $XDG_CACHE_HOME/huggingface, else
// ~/.cache/huggingface. A leading ~ is expanded.
func CacheDir() string {
	for _, v := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"} {
		if d := os.Getenv(v); d != "" {
			return expandHome(d)
		}
	}
	return filepath.Join(hfHome(), "hub")
}

func hfHome() string {
	if d := os.Getenv("HF_HOME"); d != "" {
		return expandHome(d)
	}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(expandHome(x), "huggingface")
	}
	return filepath.Join(expandHome("~/.cache"), "huggingface")
}

func expandHome(p string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~"))
}

// envToken finds a token as huggingface_hub does: $HF_TOKEN, the legacy
// $HUGGING_FACE_HUB_TOKEN, then the file `huggingface-cli login` writes.
func envToken() string {
	for _, v := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if t := strings.TrimSpace(os.Getenv(v)); t != "" {
			return t
		}
	}
	p := os.Getenv("HF_TOKEN_PATH")
	if p == "" {
		p = filepath.Join(hfHome(), "token")
	}
	b, err := os.ReadFile(expandHome(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// RepoFolderName is the cache folder of a model repository:
// "models--ORG--NAME" for "ORG/NAME".
func RepoFolderName(repo string) string {
	return "models--" + strings.ReplaceAll(repo, "/", "--")
}

// writeRef records that revision points at commit: refs/<revision> holds the
// sha with no newline, as huggingface_hub writes it. Branch names with '/'
// become nested folders, as there.
func writeRef(storage, revision, commit string) error {
	if !safeRelPath(revision) {
		return fmt.Errorf("hub: revision %q cannot name a file in the cache", revision)
	}
	p := filepath.Join(storage, "refs", filepath.FromSlash(revision))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(commit), 0o644); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// Resolve turns a model argument into a directory: an existing local
// directory is returned as it is (a local path wins over a hub id of the
// same spelling, as in transformers); a hub id ("ORG/NAME") is looked up in
// the cache (CacheDir()) at revision ("" means "main"), without network.
// A hub id with no cached snapshot gives an ErrNotCached error that says
// which `herd model pull` command fetches it.
func Resolve(repoOrPath, revision string) (dir string, err error) {
	return ResolveCache(CacheDir(), repoOrPath, revision)
}

// ResolveCache is Resolve with an explicit cache root.
func ResolveCache(cacheDir, repoOrPath, revision string) (string, error) {
	st, err := os.Stat(repoOrPath)
	switch {
	case err == nil && st.IsDir():
		return repoOrPath, nil
	case err == nil:
		return "", fmt.Errorf("hub: model %s is a file; expected a model directory or a hub id (ORG/NAME)", repoOrPath)
	case looksLikePath(repoOrPath) || !ValidRepoID(repoOrPath):
		return "", fmt.Errorf("hub: model directory %s: %w", repoOrPath, err)
	}
	if revision == "" {
		revision = "main"
	}
	storage := filepath.Join(cacheDir, RepoFolderName(repoOrPath))
	commit := revision
	if !commitPattern.MatchString(revision) {
		if !safeRelPath(revision) {
			return "", fmt.Errorf("hub: revision %q is not a branch, tag or commit name", revision)
		}
		b, err := os.ReadFile(filepath.Join(storage, "refs", filepath.FromSlash(revision)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("hub: %w", err)
		}
		commit = strings.TrimSpace(string(b))
	}
	snap := filepath.Join(storage, "snapshots", commit)
	if commit != "" {
		if st, err := os.Stat(snap); err == nil && st.IsDir() {
			return snap, nil
		}
	}
	pull := "herd model pull " + repoOrPath
	if revision != "main" {
		pull += " --revision " + revision
	}
	return "", fmt.Errorf("%w: %s at revision %s is neither a local directory nor in the hub cache %s: run `%s` first",
		ErrNotCached, repoOrPath, revision, cacheDir, pull)
}

func looksLikePath(s string) bool {
	return filepath.IsAbs(s) || strings.HasPrefix(s, ".") || strings.HasPrefix(s, "~") ||
		strings.Count(s, "/") > 1 || strings.ContainsRune(s, os.PathSeparator) && os.PathSeparator != '/'
}
