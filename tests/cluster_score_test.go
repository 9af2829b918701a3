package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/internal/proto"
)

// scoreData writes rows of different lengths cut from the tiny data set.
func scoreData(t *testing.T, n int) string {
	t.Helper()
	_, data := sharedTiny(t)
	f, err := os.Open(filepath.Join(data, "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var texts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var row struct{ Text string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, row.Text)
	}
	var b bytes.Buffer
	for i := range n {
		text := texts[i%len(texts)]
		text = text[:min(len(text), 20+(i*37)%200)]
		line, _ := json.Marshal(map[string]string{"id": fmt.Sprintf("s%03d", i), "text": text})
		b.Write(append(line, '\n'))
	}
	path := filepath.Join(t.TempDir(), "score.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func (c *testCluster) submitScore(cfg string, sets ...string) string {
	c.t.Helper()
	args := []string{"submit", cfg, "--score", "--coord", c.urls(), "--token", clusterToken}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	r := herd(c.t, nil, args...)
	if r.code != 0 {
		c.t.Fatalf("submit --score: exit %d", r.code)
	}
	return strings.TrimSpace(r.stdout)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// metricsWithoutDuplicates reads metrics.json without
// counts.duplicates_dropped, the one field that says how many copies
// arrived rather than what was scored.
func metricsWithoutDuplicates(t *testing.T, dir string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "scoring", "metrics.json")), &m); err != nil {
		t.Fatal(err)
	}
	delete(m["counts"].(map[string]any), "duplicates_dropped")
	return m
}

var batchesScored = regexp.MustCompile(`"?batches_scored"?[=:](\d+)`)

// scoredBy is the batches a worker process says it scored (it logs them
// when the plan is done).
func scoredBy(t *testing.T, p *proc) int {
	t.Helper()
	var m [][]string
	waitFor(t, 30*time.Second, func() error {
		if m = batchesScored.FindAllStringSubmatch(p.out.String(), -1); len(m) == 0 {
			return fmt.Errorf("worker %s logged no batches_scored", p.name)
		}
		return nil
	})
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// TestClusterScore runs scoring jobs on a real cluster of processes:
//
//  1. a reference: one worker;
//  2. exactly once: two workers, one SIGKILLed mid-job, and every result
//     message duplicated by the test on the result subject: predictions.jsonl
//     equals the reference row for row and metrics.json is identical (but
//     for the count of duplicates dropped);
//  3. resume: the coordinator and the only worker are killed mid-job; the
//     restarted coordinator and a new worker finish without scoring again
//     any batch recorded as accepted.
func TestClusterScore(t *testing.T) {
	const rows, batch = 48, 2
	total := rows / batch
	c := startCluster(t, 1)
	data := scoreData(t, rows)
	dir := t.TempDir()
	cfg := writeConfig(t, filepath.Join(dir, "unused"), 1, 1, 1, fmt.Sprintf("scoring:\n  data: %s\n  batch_size: %d\n", data, batch))

	// 1. Reference.
	ref := c.worker("ref")
	refOut := filepath.Join(dir, "ref")
	id := c.submitScore(cfg, "output_dir="+refOut)
	j := c.waitJob(id, 2*time.Minute, func(j proto.JobInfo) bool { return j.Status == proto.StatusCompleted })
	if j.Kind != proto.KindScore || j.Score == nil || j.Score.BatchesDone != total || j.Score.Metrics["loss"] == nil {
		t.Fatalf("reference job %+v %+v", j, j.Score)
	}
	ref.kill()
	// The text status shows the scoring phase and its final metrics.
	st := herd(t, nil, "status", id, "--coord", c.urls(), "--token", clusterToken)
	if st.code != 0 || !strings.Contains(st.stdout, "scoring      done: ") || !strings.Contains(st.stdout, fmt.Sprintf("batches %d/%d done", total, total)) ||
		!strings.Contains(st.stdout, "score metrics loss ") || strings.Contains(st.stdout, "  step ") {
		t.Fatalf("status of a scoring job:\n%s", st.stdout)
	}
	refPreds := readFile(t, filepath.Join(refOut, "scoring", "predictions.jsonl"))
	if n := bytes.Count(refPreds, []byte("\n")); n != rows {
		t.Fatalf("reference: %d predictions for %d rows", n, rows)
	}

	// 2. Exactly once under a kill and duplicated results.
	nc, err := nats.Connect(c.urls())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var copies atomic.Int64
	sub, err := nc.Subscribe(proto.SubjectScoreResult, func(m *nats.Msg) {
		if m.Header.Get("Herd-Test-Copy") != "" {
			return
		}
		dup := nats.NewMsg(m.Subject)
		dup.Header = nats.Header{}
		for k, v := range m.Header {
			dup.Header[k] = v
		}
		dup.Header.Set("Herd-Test-Copy", "1")
		dup.Data = m.Data
		if nc.PublishMsg(dup) == nil {
			copies.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	slow := "HERD_TEST_STEP_DELAY_MS=150"
	a := c.worker("a", slow)
	b := c.worker("b", slow)
	out := filepath.Join(dir, "twice")
	id = c.submitScore(cfg, "output_dir="+out, "cluster.workers=2")
	c.waitJob(id, 2*time.Minute, func(j proto.JobInfo) bool {
		return j.Score != nil && j.Score.Workers["b"].Batches >= 2 && j.Score.Workers["a"].Batches >= 1
	})
	b.kill()
	j = c.waitJob(id, 2*time.Minute, func(j proto.JobInfo) bool { return j.Status == proto.StatusCompleted })
	_ = sub.Unsubscribe()
	a.kill()
	t.Logf("exactly once: %d copies injected; retried %d, duplicates dropped %d", copies.Load(), j.Score.BatchesRetried, j.Score.DuplicatesDropped)
	if copies.Load() == 0 || j.Score.DuplicatesDropped < 1 || j.Score.BatchesRetried < 1 {
		t.Fatalf("the faults did not happen: copies %d, %+v", copies.Load(), j.Score)
	}
	if got := readFile(t, filepath.Join(out, "scoring", "predictions.jsonl")); !bytes.Equal(got, refPreds) {
		t.Fatalf("predictions differ from the single-worker run:\n%s\nvs\n%s", got, refPreds)
	}
	if got, want := metricsWithoutDuplicates(t, out), metricsWithoutDuplicates(t, refOut); !reflect.DeepEqual(got, want) {
		t.Fatalf("metrics.json differs:\n%v\nvs\n%v", got, want)
	}

	// 3. Resume after losing the coordinator and every worker.
	w1 := c.worker("c", "HERD_TEST_STEP_DELAY_MS=200")
	out = filepath.Join(dir, "resumed")
	id = c.submitScore(cfg, "output_dir="+out)
	c.waitJob(id, 2*time.Minute, func(j proto.JobInfo) bool { return j.Score != nil && j.Score.BatchesDone >= 5 })
	c.nodes[0].p.kill()
	w1.kill()
	c.start(0, false)
	c.waitAnswer(30 * time.Second)
	j, err = c.job(id)
	if err != nil {
		t.Fatal(err)
	}
	recorded := j.Score.BatchesDone
	if recorded < 5 || recorded >= total {
		t.Fatalf("recorded %d of %d batches before the restart", recorded, total)
	}
	w2 := c.worker("d")
	j = c.waitJob(id, 2*time.Minute, func(j proto.JobInfo) bool { return j.Status == proto.StatusCompleted })
	redone := scoredBy(t, w2)
	w2.kill()
	t.Logf("resume: %d batches recorded before the restart, %d scored after, of %d", recorded, redone, total)
	if redone < 1 || redone > total-recorded {
		t.Fatalf("the new worker scored %d batches; %d of %d were recorded as accepted before", redone, recorded, total)
	}
	if got := readFile(t, filepath.Join(out, "scoring", "predictions.jsonl")); !bytes.Equal(got, refPreds) {
		t.Fatal("resumed predictions differ from the single-worker run")
	}
	if got, want := metricsWithoutDuplicates(t, out), metricsWithoutDuplicates(t, refOut); !reflect.DeepEqual(got, want) {
		t.Fatalf("resumed metrics.json differs:\n%v\nvs\n%v", got, want)
	}
}
