package worker

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Checkpoint stores (Config.CheckpointStore).
const (
	// StoreFiles writes checkpoints under the job's output_dir, a path every
	// worker sees (a shared file system). The default.
	StoreFiles = "files"
	// StoreNATS keeps checkpoints in the coordinators' JetStream object
	// store (`herd coord start --jetstream`), for workers without a shared
	// file system; recorded paths are ObjectScheme references.
	StoreNATS = "nats"
)

// CheckpointBucket is the JetStream object store bucket of checkpoints.
const CheckpointBucket = "herd-checkpoints"

// ObjectScheme prefixes checkpoint references in the object store:
// nats-object://herd-checkpoints/<job>/checkpoint-<step>.
const ObjectScheme = "nats-object://"

// objectStore opens (creating on first use) the checkpoint bucket.
func objectStore(nc *nats.Conn) (nats.ObjectStore, error) {
	js, err := nc.JetStream(nats.MaxWait(30 * time.Second))
	if err != nil {
		return nil, fmt.Errorf("checkpoint store: %w", err)
	}
	obs, err := js.ObjectStore(CheckpointBucket)
	if errors.Is(err, nats.ErrBucketNotFound) || errors.Is(err, nats.ErrStreamNotFound) {
		obs, err = js.CreateObjectStore(&nats.ObjectStoreConfig{Bucket: CheckpointBucket,
			Description: "herd checkpoints and adapters", Storage: nats.FileStorage})
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint store (is JetStream on? start the coordinators with --jetstream): %w", err)
	}
	return obs, nil
}

// UploadCheckpoint copies the files of a local checkpoint directory to the
// object store under prefix (job/checkpoint-<step>) and returns its
// reference.
func UploadCheckpoint(nc *nats.Conn, dir, prefix string) (string, error) {
	obs, err := objectStore(nc)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("checkpoint store: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", fmt.Errorf("checkpoint store: %w", err)
		}
		_, err = obs.Put(&nats.ObjectMeta{Name: path.Join(prefix, e.Name())}, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("checkpoint store: upload %s: %w", e.Name(), err)
		}
	}
	return ObjectScheme + CheckpointBucket + "/" + prefix, nil
}

// IsObjectRef says whether a checkpoint path is an object store reference.
func IsObjectRef(p string) bool { return strings.HasPrefix(p, ObjectScheme) }

// DownloadCheckpoint writes the files of an object store checkpoint
// reference into dir (created).
func DownloadCheckpoint(nc *nats.Conn, ref, dir string) error {
	rest, ok := strings.CutPrefix(ref, ObjectScheme+CheckpointBucket+"/")
	if !ok {
		return fmt.Errorf("checkpoint store: %q is not a reference to bucket %s", ref, CheckpointBucket)
	}
	obs, err := objectStore(nc)
	if err != nil {
		return err
	}
	infos, err := obs.List()
	if err != nil {
		return fmt.Errorf("checkpoint store: list: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	n := 0
	for _, info := range infos {
		name, ok := strings.CutPrefix(info.Name, rest+"/")
		if !ok || info.Deleted || strings.Contains(name, "/") {
			continue
		}
		if err := obs.GetFile(info.Name, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("checkpoint store: download %s: %w", info.Name, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("checkpoint store: no files under %s", ref)
	}
	return nil
}
