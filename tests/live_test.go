package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/coordinator/live"
	"github.com/herdml/herd/internal/proto"
)

// TestLiveView: a coordinator started with --http-addr and one worker
// train a tiny-model job; headless Chromium loads the live view, whose DOM
// must show the coordinator, the worker, the running job and a loss curve
// of several points; a screenshot of it is saved (see artifactDir). `herd
// status JOB` shows the same job as text, with a loss sparkline.
func TestLiveView(t *testing.T) {
	chromium := findChromium(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c := startCluster(t, 1, "--http-addr", httpAddr)
	c.worker("a", "HERD_TEST_STEP_DELAY_MS=100")
	cfg := writeConfig(t, filepath.Join(t.TempDir(), "out"), 100000, 2, 4, "")
	_, data := sharedTiny(t)
	id := c.submit(cfg, "training.checkpoint_every=20", "training.eval_every=10", "dataset.eval="+filepath.Join(data, "eval.jsonl"))
	c.waitJob(id, 60*time.Second, func(j proto.JobInfo) bool { return j.Status == proto.StatusRunning && len(j.Checkpoints) > 0 })
	url := "http://" + httpAddr + "/"

	// The JSON the page polls.
	res, err := http.Get(url + "api/state")
	if err != nil {
		t.Fatal(err)
	}
	var state struct {
		Role     string `json:"role"`
		Selected struct {
			ID         string       `json:"id"`
			LossSeries [][2]float64 `json:"loss_series"`
		} `json:"selected"`
	}
	err = json.NewDecoder(res.Body).Decode(&state)
	res.Body.Close()
	if err != nil || state.Role != "leader" || state.Selected.ID != id || len(state.Selected.LossSeries) < 2 {
		t.Fatalf("api/state: %v %+v", err, state)
	}

	dom := runChromium(t, chromium, "--dump-dom", url)
	for _, want := range []string{`data-loaded="true"`, `data-job="` + id + `" data-status="running"`, `data-worker="a"`, "c0", "(this)"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the live view's DOM lacks %s", want)
		}
	}
	m := regexp.MustCompile(`<polyline [^>]*data-series="loss" data-points="(\d+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the live view draws no loss curve:\n%s", tail(dom, 4000))
	}
	if n, _ := strconv.Atoi(m[1]); n < 2 {
		t.Fatalf("the loss curve has %d points, want at least 2", n)
	}
	// Evaluations after steps 10 and 20 came before the checkpoint at 20.
	m = regexp.MustCompile(`<polyline [^>]*data-series="eval" data-points="(\d+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Errorf("the live view draws no eval curve")
	} else if n, _ := strconv.Atoi(m[1]); n < 2 {
		t.Errorf("the eval curve has %d points, want at least 2", n)
	}
	if !regexp.MustCompile(`data-worker="a">.*?alive`).MatchString(dom) {
		t.Errorf("worker a is not shown alive")
	}

	shot := filepath.Join(artifactDir(t), "live-view.png")
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1280,900", url)
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) || len(png) < 10_000 {
		t.Fatalf("screenshot %s: %v, %d bytes", shot, err, len(png))
	}
	t.Logf("screenshot of the live view: %s", shot)

	r := herd(t, nil, "status", id, "--coord", c.urls(), "--token", clusterToken)
	if r.code != 0 {
		t.Fatalf("status: exit %d", r.code)
	}
	for _, want := range []string{"job " + id + " (e2e): running", "ETA", "eval loss", "checkpoints", "world 1 [a]"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("herd status lacks %q", want)
		}
	}
	if !regexp.MustCompile(`loss +\d+\.\d{4}  [▁▂▃▄▅▆▇█]{2,}`).MatchString(r.stdout) {
		t.Errorf("herd status shows no loss sparkline")
	}
	var j proto.JobInfo
	if err := c.statusJSON(id, &j); err != nil || len(j.RecentSteps) < 2 {
		t.Fatalf("status --json: %v, %d recent steps", err, len(j.RecentSteps))
	}
}

// TestLiveViewTrain: `herd train --http-addr` serves the live view of its
// in-process coordinator while it trains, and stops serving when it ends.
func TestLiveViewTrain(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, filepath.Join(t.TempDir(), "out"), 40, 2, 4, "")
	p := start(t, "train", []string{"HERD_TEST_STEP_DELAY_MS=100"}, "train", cfg, "--http-addr", addr)
	waitFor(t, 60*time.Second, func() error {
		res, err := http.Get("http://" + addr + "/api/state")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		var v live.View
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
			return err
		}
		if v.Role != "leader" || v.Selected == nil || v.Selected.Status != proto.StatusRunning || len(v.Selected.LossSeries) < 2 {
			return fmt.Errorf("view %+v", v)
		}
		return nil
	})
	if !p.exitedWithin(120*time.Second) || p.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("herd train did not finish:\n%s", tail(p.out.String(), 3000))
	}
	if !strings.Contains(p.out.String(), "live view: http://"+addr+"/") {
		t.Errorf("herd train did not say where the live view is")
	}
	if _, err := http.Get("http://" + addr + "/"); err == nil {
		t.Fatal("the live view still answers after herd train ended")
	}
}

// handState is a live.Source over a hand-made state: a follower that
// cannot reach the leader, and a two-worker job whose steps spend a fifth
// of their time in the all-reduce.
type handState struct{ st *coordinator.State }

func (h handState) ID() string                { return "c1" }
func (h handState) Role() string              { return "follower" }
func (h handState) State() *coordinator.State { return h.st }
func (h handState) JobStatus(context.Context, string) (proto.JobInfo, error) {
	return proto.JobInfo{}, errors.New("no coordinator answered")
}
func (h handState) ClusterStatus(context.Context) (proto.ClusterInfo, error) {
	return proto.ClusterInfo{Servers: []proto.ServerInfo{{ID: "c0", RaftAddr: "10.0.0.1:7000"}, {ID: "c1", RaftAddr: "10.0.0.2:7000"}},
			Workers: []proto.WorkerInfo{{ID: "w0", Device: "cuda:0"}, {ID: "w1", Device: "cuda:1"}}},
		errors.New("no coordinator answered")
}

// TestLiveViewPage renders what a real cluster on this machine cannot
// show cheaply: two ranks, the all-reduce share, an eval curve, a job
// chosen by URL, a scoring job with its metrics, and the banner of a
// coordinator that lost its leader.
func TestLiveViewPage(t *testing.T) {
	chromium := findChromium(t)
	st := coordinator.NewState()
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	for i, name := range []string{"first", "second"} {
		j := &coordinator.Job{ID: fmt.Sprintf("job-%d", i+1), Name: name, Status: proto.StatusRunning, SubmittedAt: t0.Add(time.Duration(i) * time.Minute),
			TotalSteps: 200, Epoch: coordinator.GroupEpoch{Number: 2, Members: []string{"w1", "w0"}}}
		for k := 1; k <= 30+10*i; k++ {
			j.LogSeq++
			st := &proto.StepStat{Step: k, TotalSteps: 200, Loss: 3 - float64(k)/20,
				World: 2, StepMs: 100, AllReduceMs: 20, TokensPerSec: 5000, At: t0.Add(time.Duration(k) * 100 * time.Millisecond)}
			if k%10 == 0 {
				st.EvalLoss, st.EvalTokens = 3.2-float64(k)/25, 500
			}
			j.Log = append(j.Log, proto.LogEntry{Seq: j.LogSeq, Kind: "step", Step: st})
			j.Step, j.Loss, j.TokensPerSec, j.StepMs = k, 3-float64(k)/20, 5000, 100
		}
		st.Jobs[j.ID] = j
	}
	loss := 1.75
	st.Jobs["job-3"] = &coordinator.Job{ID: "job-3", Name: "eval", Kind: proto.KindScore, Status: proto.StatusCompleted, SubmittedAt: t0.Add(time.Hour),
		Score: &coordinator.ScoreState{ScoreSpec: coordinator.ScoreSpec{Data: "/d/eval.jsonl", Out: "/out/scoring", Batches: 10, Rows: 100},
			Accepted: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, AcceptedRows: 100, Done: true, Metrics: map[string]*float64{"loss": &loss, "accuracy": nil}}}
	srv := httptest.NewServer(live.NewHandler(handState{st}, nil))
	defer srv.Close()
	dom := runChromium(t, chromium, "--dump-dom", srv.URL+"/?job=job-1")
	for _, want := range []string{
		`<h3>job-1</h3>`, // chosen by URL, not the newest
		`data-series="loss" data-points="30"`,
		`data-series="eval" data-points="3"`,
		`data-tile="eval"><div class="k">eval loss · step 30</div><div class="v">2.0000</div>`,
		`data-tile="allreduce"><div class="k">all-reduce share</div><div class="v">20%</div>`,
		`data-tile="world"><div class="k">world</div><div class="v">2</div>`,
		`<td>w1</td><td>cuda:1</td><td><span class="badge unknown">unknown</span></td><td>job-2 #0</td>`,
		`No leader answered; worker liveness is unknown: no coordinator answered`,
		`<td>c0</td><td><span class="badge unknown">unknown</span></td>`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(dom, `class="banner" hidden`) {
		t.Error("the no-leader banner is hidden")
	}
	// A scoring job: its rows for progress, its metrics, no training curves.
	score := runChromium(t, chromium, "--dump-dom", srv.URL+"/?job=job-3")
	for _, want := range []string{
		`data-job="job-3" data-status="completed"><td>job-3</td><td>eval</td><td><span class="badge completed">completed</span></td><td><span class="bar"><i style="width:100.0%"></i></span>100/100 rows</td>`,
		`data-tile="score_rows"><div class="k">scored rows · 100%</div><div class="v">100/100</div>`,
		`<h4>Metrics</h4>`,
		`<tr data-metric="loss"><td>loss</td><td class="num">1.75</td></tr>`,
		`<tr data-metric="accuracy"><td>accuracy</td><td class="num">null</td></tr>`,
	} {
		if !strings.Contains(score, want) {
			t.Errorf("the scoring job's page lacks %s", want)
		}
	}
	if strings.Contains(score, `data-chart="loss"`) || strings.Contains(score, `data-tile="step"`) {
		t.Error("a scoring job's page shows training steps")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", tail(dom, 6000))
	}
	shot := filepath.Join(artifactDir(t), "live-view-no-leader.png")
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1280,900", srv.URL+"/?job=job-1")
	t.Logf("screenshot: %s", shot)
}

// findChromium returns the headless browser the live view test drives;
// scripts/test-deps.sh installs it.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is missing: run scripts/test-deps.sh as root (apt-get install chromium)")
	return ""
}

// runChromium loads url in headless Chromium with a profile of its own,
// lets the page run for 5 s of virtual time, and returns what it printed.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--no-first-run", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000"}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(stderr.String(), 3000))
	}
	return stdout.String()
}

// artifactDir is where a test leaves files for people to look at:
// $HERD_TEST_ARTIFACTS/<test>, by default artifacts/test/<test> in the
// repository (gitignored).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HERD_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts", "test")
	}
	dir, err := filepath.Abs(filepath.Join(dir, t.Name()))
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
