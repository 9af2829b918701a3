package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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
	id := c.submit(cfg, "training.checkpoint_every=20")
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
	for _, want := range []string{"job " + id + " (e2e): running", "ETA", "checkpoints", "world 1 [a]"} {
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
