package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/internal/safetensors"
)

// The cluster harness starts real `herd coord start` and `herd worker join`
// processes on 127.0.0.1, kills them, and reads the outcome through the CLI
// (`herd status --json`), as a user would.

const clusterToken = "e2e-token"

// proc is one herd process of a test.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuf
	done chan struct{}
}

// syncBuf is a goroutine-safe output buffer.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs bin/herd args in the background; the test's end kills it and
// logs its output.
func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command(herdBin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s (%v) output:\n%s", name, args, tail(p.out.String(), 6000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) exitedWithin(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// handedOut holds every port freePort returned in this test process.
var handedOut sync.Map

// freePort returns a loopback port that was free a moment ago and that it
// has not returned before: the kernel may give a just-closed port out
// again, and a coordinator given the same port for raft and NATS fails to
// start (seen in CI).
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if _, dup := handedOut.LoadOrStore(port, true); !dup {
			return port
		}
	}
	t.Fatal("freePort: the kernel kept returning ports already handed out")
	return 0
}

// coordNode is one coordinator of a test cluster.
type coordNode struct {
	id, dataDir, raftAddr, clusterAddr string
	natsPort                           int
	routes                             []string
	p                                  *proc
}

func (n *coordNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.natsPort) }

type testCluster struct {
	t     *testing.T
	nodes []*coordNode
	extra []string // more `coord start` flags
}

// startCluster starts n coordinators (raft timeout 300ms, heartbeat 100ms)
// and waits until they answer. extra are more `coord start` flags.
func startCluster(t *testing.T, n int, extra ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, extra: extra}
	dir := t.TempDir()
	for i := range n {
		c.nodes = append(c.nodes, &coordNode{id: fmt.Sprintf("c%d", i), dataDir: filepath.Join(dir, fmt.Sprintf("c%d", i)),
			raftAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), clusterAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), natsPort: freePort(t)})
	}
	for i, nd := range c.nodes {
		for k, o := range c.nodes {
			if k != i {
				nd.routes = append(nd.routes, "nats://"+o.clusterAddr)
			}
		}
	}
	for i := range c.nodes {
		c.start(i, true)
		if i == 0 {
			c.waitAnswer(20 * time.Second)
		}
	}
	if n > 1 {
		waitFor(t, 30*time.Second, func() error {
			var ci proto.ClusterInfo
			if err := c.statusJSON("", &ci); err != nil {
				return err
			}
			if len(ci.Servers) != n {
				return fmt.Errorf("%d voters", len(ci.Servers))
			}
			return nil
		})
	}
	return c
}

// start starts coordinator i; first says whether its data dir is new.
func (c *testCluster) start(i int, first bool) {
	nd := c.nodes[i]
	args := []string{"coord", "start", "--id", nd.id, "--data-dir", nd.dataDir, "--raft-addr", nd.raftAddr,
		"--nats-port", fmt.Sprint(nd.natsPort), "--token", clusterToken, "--raft-timeout", "300ms", "--heartbeat", "100ms", "--log-level", "debug"}
	if len(c.nodes) > 1 {
		args = append(args, "--nats-cluster-addr", nd.clusterAddr, "--nats-routes", strings.Join(nd.routes, ","))
	}
	args = append(args, c.extra...)
	if first {
		if i == 0 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", c.nodes[0].url())
		}
	}
	nd.p = start(c.t, nd.id, nil, args...)
}

// urls lists every coordinator's NATS URL (workers and the CLI fail over
// between them).
func (c *testCluster) urls() string {
	var u []string
	for _, nd := range c.nodes {
		u = append(u, nd.url())
	}
	return strings.Join(u, ",")
}

func (c *testCluster) waitAnswer(d time.Duration) {
	c.t.Helper()
	waitFor(c.t, d, func() error { return c.statusJSON("", &proto.ClusterInfo{}) })
}

// statusJSON runs `herd status [JOB] --json` and decodes its output.
func (c *testCluster) statusJSON(job string, v any) error {
	args := []string{"status", "--json", "--coord", c.urls(), "--token", clusterToken, "--timeout", "3s"}
	if job != "" {
		args = append(args, job)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, herdBin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("herd status: %v: %s", err, out)
	}
	return json.Unmarshal(out, v)
}

func (c *testCluster) job(id string) (proto.JobInfo, error) {
	var j proto.JobInfo
	err := c.statusJSON(id, &j)
	return j, err
}

// leader returns the index of the leading coordinator.
func (c *testCluster) leader() int {
	c.t.Helper()
	var ci proto.ClusterInfo
	waitFor(c.t, 20*time.Second, func() error { return c.statusJSON("", &ci) })
	for i, nd := range c.nodes {
		if nd.id == ci.Leader {
			return i
		}
	}
	c.t.Fatalf("unknown leader %q", ci.Leader)
	return -1
}

func (c *testCluster) submit(cfg string, sets ...string) string {
	c.t.Helper()
	args := []string{"submit", cfg, "--coord", c.urls(), "--token", clusterToken}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	r := herd(c.t, nil, args...)
	if r.code != 0 {
		c.t.Fatalf("submit: exit %d", r.code)
	}
	return strings.TrimSpace(r.stdout)
}

// worker starts `herd worker join` with the fault variables in env.
func (c *testCluster) worker(id string, env ...string) *proc {
	return c.workerArgs(id, env)
}

// workerArgs starts `herd worker join` with extra flags.
func (c *testCluster) workerArgs(id string, env []string, extra ...string) *proc {
	args := append([]string{"worker", "join", "--coord", c.urls(), "--token", clusterToken, "--id", id, "--log-level", "debug"}, extra...)
	return start(c.t, id, env, args...)
}

// waitJob polls the job until cond holds, failing on a terminal status
// other than the one cond may want.
func (c *testCluster) waitJob(id string, d time.Duration, cond func(proto.JobInfo) bool) proto.JobInfo {
	c.t.Helper()
	var j proto.JobInfo
	waitFor(c.t, d, func() error {
		var err error
		if j, err = c.job(id); err != nil {
			return err
		}
		if cond(j) {
			return nil
		}
		if proto.Terminal(j.Status) {
			c.t.Fatalf("job %s ended %s: %s", id, j.Status, j.Error)
		}
		return fmt.Errorf("job %s %s at step %d/%d, epoch %d %v", id, j.Status, j.Step, j.TotalSteps, j.Epoch, j.Members)
	})
	return j
}

func waitFor(t *testing.T, d time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var (
	tinyOnce           sync.Once
	tinyModel, tinyDat string
	tinyErr            error
)

// sharedTiny makes one tiny model and data set for the cluster tests.
func sharedTiny(t *testing.T) (model, data string) {
	t.Helper()
	tinyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herd-cluster-tiny-")
		if err != nil {
			tinyErr = err
			return
		}
		tinyModel, tinyDat = filepath.Join(dir, "model"), filepath.Join(dir, "data")
		out, err := exec.Command(herdBin, "model", "init-tiny", "--out", tinyModel, "--sample-data", tinyDat).CombinedOutput()
		if err != nil {
			tinyErr = fmt.Errorf("init-tiny: %v: %s", err, out)
		}
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tinyModel, tinyDat
}

// writeConfig writes a training config on the tiny model: dropout 0 (so
// that any world size computes the same steps), a fixed global batch, short
// heartbeats and timeouts; extra is appended YAML.
func writeConfig(t *testing.T, out string, steps, micro, global int, extra string) string {
	t.Helper()
	model, data := sharedTiny(t)
	cfg := fmt.Sprintf(`run_name: e2e
output_dir: %s
model:
  path: %s
  dtype: float32
lora:
  r: 4
  alpha: 8
  dropout: 0
  target_modules: [q_proj, v_proj]
dataset:
  train: %s
  max_seq_len: 48
training:
  max_steps: %d
  micro_batch_size: %d
  global_batch_size: %d
  lr: 1.0e-2
  scheduler: constant
  threads: 1
  checkpoint_every: 5
cluster:
  workers: 1
  min_workers: 1
  heartbeat: 100ms
  timeout: 5s
  max_restarts: 10
%s`, out, model, filepath.Join(data, "train.jsonl"), steps, micro, global, extra)
	path := filepath.Join(t.TempDir(), "cfg.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readAdapter reads every tensor of a PEFT adapter directory as float32.
func readAdapter(t *testing.T, dir string) map[string][]float32 {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]float32{}
	for _, name := range f.Names() {
		info, data, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := safetensors.ToFloat32(info.DType, data)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = v
	}
	return out
}

// maxDiff is the largest absolute difference between two adapters with
// the same tensors.
func maxDiff(t *testing.T, a, b map[string][]float32) float64 {
	t.Helper()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("adapters have %d and %d tensors", len(a), len(b))
	}
	d := 0.0
	for name, va := range a {
		vb, ok := b[name]
		if !ok || len(vb) != len(va) {
			t.Fatalf("tensor %s differs in presence or size", name)
		}
		for i := range va {
			d = math.Max(d, math.Abs(float64(va[i])-float64(vb[i])))
		}
	}
	return d
}

// client is a persistent API connection for tight polling loops (the CLI
// spawns a process per call).
type client struct {
	t  *testing.T
	nc *nats.Conn
}

func (c *testCluster) client() *client {
	c.t.Helper()
	nc, err := natsutil.Connect(c.urls(), natsutil.ConnectOptions{Name: "e2e-poller", MaxReconnects: -1})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return &client{t: c.t, nc: nc}
}

// job returns the job's status, retrying through elections for up to 2s.
func (cl *client) job(id string) (proto.JobInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var res proto.StatusResult
	if err := proto.Call(ctx, cl.nc, proto.SubjectStatus, clusterToken, proto.StatusRequest{Job: id}, &res); err != nil {
		return proto.JobInfo{}, err
	}
	return *res.Job, nil
}

// waitStep polls until the job has committed at least step steps and
// returns when it saw that.
func (cl *client) waitStep(id string, step int, d time.Duration) proto.JobInfo {
	cl.t.Helper()
	deadline := time.Now().Add(d)
	for {
		j, err := cl.job(id)
		if err == nil && (j.Step >= step || proto.Terminal(j.Status)) {
			return j
		}
		if time.Now().After(deadline) {
			cl.t.Fatalf("job %s did not reach step %d within %v (last %+v, err %v)", id, step, d, j, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logs returns the job's log entries.
func (cl *client) logs(id string) []proto.LogEntry {
	cl.t.Helper()
	var all []proto.LogEntry
	var after uint64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var res proto.LogsResult
		err := proto.Call(ctx, cl.nc, proto.SubjectLogs, clusterToken, proto.LogsRequest{Job: id, After: after}, &res)
		cancel()
		if err != nil {
			cl.t.Fatal(err)
		}
		if len(res.Entries) == 0 {
			return all
		}
		all = append(all, res.Entries...)
		after = res.Entries[len(res.Entries)-1].Seq
	}
}

// worlds lists the world size of each group epoch in a job's log.
func worlds(entries []proto.LogEntry) []int {
	var ws []int
	for _, e := range entries {
		var epoch, world int
		if _, err := fmt.Sscanf(e.Message, "group epoch %d: world %d", &epoch, &world); err == nil {
			ws = append(ws, world)
		}
	}
	return ws
}
