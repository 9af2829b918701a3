package fsutil

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteKeepsOldFileOnFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	if err := WriteFile(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(path, func(w io.Writer) error {
		w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("file now %q, want the old content", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestReplaceDir(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "ckpt")
	for _, content := range []string{"one", "two"} {
		tmp, err := os.MkdirTemp(dir, "ckpt.tmp-")
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(filepath.Join(tmp, "x"), []byte(content)); err != nil {
			t.Fatal(err)
		}
		if err := ReplaceDir(tmp, final); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(final, "x")); string(got) != content {
			t.Fatalf("after replace: %q, want %q", got, content)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}
