package tests

// Offline checks of deploy/: the Kubernetes manifests, the compose file,
// the Dockerfiles and the systemd units are parsed and cross-checked
// (kinds, selectors, Secrets, GPU requests, ports, volumes), and every herd
// command they run is checked against the built binary's help: the
// subcommand must exist and take every flag used. Docker, Kubernetes and
// systemd themselves are not run here (docs/deployment.md).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const deployDir = "../deploy"

// ---- herd commands named by deployment files and notebooks ----

// herdUse is one herd invocation found in a file.
type herdUse struct {
	where string   // file (and object) it is in
	path  []string // subcommand path, e.g. [coord start]
	flags []string // flags used, without values: --data-dir
	env   []string // HERD_* variables the environment gives it
}

func (u herdUse) String() string { return "herd " + strings.Join(u.path, " ") }

var (
	helpMu    sync.Mutex
	helpCache = map[string]helpResult{}
)

type helpResult struct {
	ok   bool
	text string
}

// herdHelp runs `herd PATH... --help` once per path.
func herdHelp(t *testing.T, path []string) helpResult {
	t.Helper()
	key := strings.Join(path, " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if r, ok := helpCache[key]; ok {
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, herdBin, append(slices.Clone(path), "--help")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("herd %s --help: %v", key, err)
	}
	// urfave/cli answers an unknown command with "No help topic" (exit 3)
	// and shows the parent's help for an unknown subcommand.
	r := helpResult{ok: err == nil && !strings.Contains(out.String(), "No help topic"), text: out.String()}
	if r.ok && len(path) > 0 {
		r.ok = strings.Contains(r.text, "herd "+key+" ")
	}
	helpCache[key] = r
	return r
}

// checkHerdUses fails the test for every use whose subcommand is missing
// from the binary, or which passes a flag (or relies on a HERD_* variable)
// that the subcommand does not take. Missing subcommands are listed
// together, by name, so the failure says what has to land first.
func checkHerdUses(t *testing.T, uses []herdUse) {
	t.Helper()
	if len(uses) == 0 {
		t.Fatal("no herd commands found")
	}
	missing := map[string][]string{}
	for _, u := range uses {
		h := herdHelp(t, u.path)
		if !h.ok {
			missing[u.String()] = append(missing[u.String()], u.where)
			continue
		}
		for _, f := range u.flags {
			if !regexp.MustCompile(`(^|[\s,])` + regexp.QuoteMeta(f) + `([\s,=]|$)`).MatchString(h.text) {
				t.Errorf("%s: %s has no flag %s", u.where, u, f)
			}
		}
		for _, e := range u.env {
			if !strings.Contains(h.text, "$"+e) {
				t.Errorf("%s: %s does not read %s (its help lists no [$%s])", u.where, u, e, e)
			}
		}
	}
	if len(missing) > 0 {
		var names []string
		for n := range missing {
			names = append(names, n)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "\n  %s (used in %s)", n, strings.Join(dedupe(missing[n]), ", "))
		}
		t.Errorf("commands that bin/herd does not have (yet):%s", b.String())
	}
}

func dedupe(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

var flagToken = regexp.MustCompile(`^--[a-z][a-z0-9-]*`)

// useFromArgs reads an argv whose first herd word is the binary: the
// subcommand path is the plain words after it, flags are the -- words.
func useFromArgs(where string, argv []string) (herdUse, bool) {
	i := slices.IndexFunc(argv, func(a string) bool { return filepath.Base(a) == "herd" })
	if i < 0 {
		return herdUse{}, false
	}
	u := herdUse{where: where}
	j := i + 1
	for ; j < len(argv) && regexp.MustCompile(`^[a-z][a-z-]*$`).MatchString(argv[j]); j++ {
		u.path = append(u.path, argv[j])
	}
	for _, a := range argv[j:] {
		if m := flagToken.FindString(a); m != "" {
			u.flags = append(u.flags, m)
		}
	}
	return u, true
}

// useFromScript reads a shell script with one herd command: its path from
// the herd line, its flags from every -- word in the script (flags may sit
// in variables set earlier).
func useFromScript(where, script string) (herdUse, bool) {
	script = strings.ReplaceAll(script, "\\\n", " ")
	var u herdUse
	found := false
	for _, line := range strings.Split(script, "\n") {
		words := shellWords(line)
		if k := slices.Index(words, "exec"); k >= 0 {
			words = words[k+1:]
		}
		if len(words) > 0 && filepath.Base(words[0]) == "herd" {
			u, found = useFromArgs(where, words)
			u.flags = nil
		}
	}
	if !found {
		return herdUse{}, false
	}
	for _, w := range shellWords(strings.ReplaceAll(script, "\n", " ")) {
		for _, part := range strings.Fields(w) { // mode="--join URL" holds two
			if m := flagToken.FindString(part); m != "" {
				u.flags = append(u.flags, m)
			}
		}
	}
	u.flags = dedupe(u.flags)
	return u, true
}

// shellWords splits a line into words, honouring quotes (no expansion);
// a word of the form VAR="value" keeps only the value.
func shellWords(line string) []string {
	var (
		words []string
		cur   strings.Builder
		quote rune
		in    bool
	)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case r == '#' && !in:
			return words
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	for i, w := range words {
		if k := strings.Index(w, "="); k > 0 && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(w[:k]) {
			words[i] = w[k+1:]
		}
	}
	return words
}

// ---- YAML helpers ----

type obj = map[string]any

func readYAMLDocs(t *testing.T, path string) []obj {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []obj
	for {
		var d obj
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// get walks nested maps by keys; nil when a key is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(obj)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := get(v, keys...).(string)
	return s
}

func list(v any, keys ...string) []any {
	l, _ := get(v, keys...).([]any)
	return l
}

func strList(v any) []string {
	var out []string
	for _, x := range list(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// subset reports whether every key of sel has the same value in labels.
func subset(sel, labels any) bool {
	sm, _ := sel.(obj)
	lm, _ := labels.(obj)
	if len(sm) == 0 {
		return false
	}
	for k, v := range sm {
		if lm[k] != v {
			return false
		}
	}
	return true
}

// ---- Kubernetes ----

var apiVersions = map[string]string{
	"Namespace":           "v1",
	"Secret":              "v1",
	"Service":             "v1",
	"StatefulSet":         "apps/v1",
	"Deployment":          "apps/v1",
	"Job":                 "batch/v1",
	"PodDisruptionBudget": "policy/v1",
}

type k8sObj struct {
	file string
	doc  obj
}

func (o k8sObj) kind() string { return str(o.doc, "kind") }
func (o k8sObj) name() string { return str(o.doc, "metadata", "name") }
func (o k8sObj) String() string {
	return fmt.Sprintf("%s %s/%s", filepath.Base(o.file), o.kind(), o.name())
}

func loadK8s(t *testing.T) []k8sObj {
	t.Helper()
	dir := filepath.Join(deployDir, "kubernetes")
	kust := readYAMLDocs(t, filepath.Join(dir, "kustomization.yaml"))
	if len(kust) != 1 || str(kust[0], "kind") != "Kustomization" || str(kust[0], "apiVersion") != "kustomize.config.k8s.io/v1beta1" {
		t.Fatalf("kustomization.yaml: %v", kust)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	listed := strList(get(kust[0], "resources"))
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(listed, b) {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}
	var objs []k8sObj
	for _, r := range listed {
		path := filepath.Join(dir, r)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", r, err)
		}
		for _, d := range readYAMLDocs(t, path) {
			objs = append(objs, k8sObj{path, d})
		}
	}
	return objs
}

// podSpec returns a workload's pod template, or nil.
func podTemplate(o k8sObj) obj {
	switch o.kind() {
	case "StatefulSet", "Deployment", "Job":
		m, _ := get(o.doc, "spec", "template").(obj)
		return m
	}
	return nil
}

func containers(tpl obj) []obj {
	var out []obj
	for _, c := range list(tpl, "spec", "containers") {
		if m, ok := c.(obj); ok {
			out = append(out, m)
		}
	}
	return out
}

func TestDeployKubernetes(t *testing.T) {
	objs := loadK8s(t)
	byKind := map[string][]k8sObj{}
	for _, o := range objs {
		byKind[o.kind()] = append(byKind[o.kind()], o)
		want, known := apiVersions[o.kind()]
		if !known {
			t.Errorf("%s: kind %q not checked by this test", o, o.kind())
		} else if got := str(o.doc, "apiVersion"); got != want {
			t.Errorf("%s: apiVersion %q, want %q", o, got, want)
		}
		if o.name() == "" {
			t.Errorf("%s: no metadata.name", o)
		}
		if o.kind() != "Namespace" && str(o.doc, "metadata", "namespace") != "herd" {
			t.Errorf("%s: namespace %q, want herd", o, str(o.doc, "metadata", "namespace"))
		}
	}
	for _, k := range []string{"Namespace", "Secret", "Service", "StatefulSet", "PodDisruptionBudget"} {
		if len(byKind[k]) == 0 {
			t.Errorf("no %s", k)
		}
	}
	if len(byKind["Deployment"])+len(byKind["Job"]) == 0 {
		t.Error("no worker Deployment or Job")
	}
	find := func(kind, name string) *k8sObj {
		for _, o := range byKind[kind] {
			if o.name() == name {
				return &o
			}
		}
		return nil
	}

	var workloads []k8sObj
	for _, k := range []string{"StatefulSet", "Deployment", "Job"} {
		workloads = append(workloads, byKind[k]...)
	}
	var uses []herdUse
	for _, w := range workloads {
		tpl := podTemplate(w)
		labels := get(tpl, "metadata", "labels")
		if sel := get(w.doc, "spec", "selector", "matchLabels"); !subset(sel, labels) {
			t.Errorf("%s: selector %v does not match the pod labels %v", w, sel, labels)
		}
		volumes := map[string]bool{}
		for _, v := range list(tpl, "spec", "volumes") {
			volumes[str(v, "name")] = true
		}
		for _, v := range list(w.doc, "spec", "volumeClaimTemplates") {
			volumes[str(v, "metadata", "name")] = true
		}
		cs := containers(tpl)
		if len(cs) == 0 {
			t.Errorf("%s: no containers", w)
		}
		for _, c := range cs {
			where := fmt.Sprintf("%s container %s", w, str(c, "name"))
			if str(c, "image") == "" {
				t.Errorf("%s: no image", where)
			}
			for _, k := range []string{"requests", "limits"} {
				if get(c, "resources", k, "memory") == nil {
					t.Errorf("%s: no resources.%s.memory", where, k)
				}
			}
			for _, m := range list(c, "volumeMounts") {
				if !volumes[str(m, "name")] {
					t.Errorf("%s: mounts %q, which is no volume or claim template", where, str(m, "name"))
				}
			}
			// Secrets referenced exist and hold the key.
			var env []string
			for _, e := range list(c, "env") {
				env = append(env, str(e, "name"))
				ref := get(e, "valueFrom", "secretKeyRef")
				if ref == nil {
					continue
				}
				s := find("Secret", str(ref, "name"))
				if s == nil {
					t.Errorf("%s: env %s uses Secret %q, which is not in the manifests", where, str(e, "name"), str(ref, "name"))
				} else if get(s.doc, "stringData", str(ref, "key")) == nil && get(s.doc, "data", str(ref, "key")) == nil {
					t.Errorf("%s: Secret %s has no key %q", where, s.name(), str(ref, "key"))
				}
			}
			// Probes name ports the container has.
			ports := map[string]bool{}
			for _, p := range list(c, "ports") {
				ports[str(p, "name")] = true
				ports[fmt.Sprint(get(p, "containerPort"))] = true
			}
			for _, pr := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
				if p := get(c, pr, "tcpSocket", "port"); p != nil && !ports[fmt.Sprint(p)] {
					t.Errorf("%s: %s on port %v, which the container does not expose", where, pr, p)
				}
			}
			// The herd command.
			cmd := append(strList(get(c, "command")), strList(get(c, "args"))...)
			var u herdUse
			var ok bool
			if len(cmd) >= 3 && (cmd[0] == "/bin/sh" || cmd[0] == "sh") && cmd[1] == "-c" {
				u, ok = useFromScript(where, cmd[2])
			} else {
				u, ok = useFromArgs(where, cmd)
			}
			if !ok {
				t.Errorf("%s: runs no herd command: %q", where, cmd)
				continue
			}
			for _, e := range env {
				if e == "HERD_TOKEN" && !slices.Contains(u.flags, "--token") {
					u.env = append(u.env, e)
				}
			}
			if !slices.Contains(u.env, "HERD_TOKEN") && !slices.Contains(u.flags, "--token") {
				t.Errorf("%s: %s gets no join token (HERD_TOKEN or --token)", where, u)
			}
			uses = append(uses, u)
		}
	}

	// The coordinators: 3 replicas with a volume each, a headless Service.
	var sts *k8sObj
	for _, o := range byKind["StatefulSet"] {
		sts = &o
	}
	if sts != nil {
		if r, _ := get(sts.doc, "spec", "replicas").(int); r != 3 {
			t.Errorf("%s: %d replicas, want 3", sts, r)
		}
		if len(list(sts.doc, "spec", "volumeClaimTemplates")) == 0 {
			t.Errorf("%s: no volumeClaimTemplates", sts)
		}
		for _, v := range list(sts.doc, "spec", "volumeClaimTemplates") {
			if get(v, "spec", "resources", "requests", "storage") == nil || len(list(v, "spec", "accessModes")) == 0 {
				t.Errorf("%s: claim template %s lacks storage or accessModes", sts, str(v, "metadata", "name"))
			}
		}
		svc := find("Service", str(sts.doc, "spec", "serviceName"))
		if svc == nil {
			t.Errorf("%s: serviceName %q is no Service", sts, str(sts.doc, "spec", "serviceName"))
		} else if str(svc.doc, "spec", "clusterIP") != "None" {
			t.Errorf("%s: governing Service %s is not headless", sts, svc.name())
		}
		for _, c := range containers(podTemplate(*sts)) {
			if get(c, "readinessProbe") == nil || get(c, "livenessProbe") == nil {
				t.Errorf("%s: container %s lacks readiness or liveness probe", sts, str(c, "name"))
			}
		}
	}

	// Workers ask for GPUs.
	for _, w := range append(byKind["Deployment"], byKind["Job"]...) {
		for _, c := range containers(podTemplate(w)) {
			if n, _ := get(c, "resources", "limits", "nvidia.com/gpu").(int); n < 1 {
				t.Errorf("%s: container %s has no nvidia.com/gpu limit", w, str(c, "name"))
			}
		}
	}

	// Services and PDBs select pods that exist, on ports those pods have.
	for _, s := range append(byKind["Service"], byKind["PodDisruptionBudget"]...) {
		sel := get(s.doc, "spec", "selector")
		if s.kind() == "PodDisruptionBudget" {
			sel = get(s.doc, "spec", "selector", "matchLabels")
		}
		var matched []k8sObj
		for _, w := range workloads {
			if subset(sel, get(podTemplate(w), "metadata", "labels")) {
				matched = append(matched, w)
			}
		}
		if len(matched) == 0 {
			t.Errorf("%s: selector %v matches no workload", s, sel)
			continue
		}
		if s.kind() != "Service" {
			continue
		}
		for _, p := range list(s.doc, "spec", "ports") {
			target := fmt.Sprint(get(p, "targetPort"))
			if get(p, "targetPort") == nil {
				target = fmt.Sprint(get(p, "port"))
			}
			for _, w := range matched {
				found := false
				for _, c := range containers(podTemplate(w)) {
					for _, cp := range list(c, "ports") {
						if str(cp, "name") != target && fmt.Sprint(get(cp, "containerPort")) != target {
							continue
						}
						found = true
						if port := fmt.Sprint(get(p, "port")); port != fmt.Sprint(get(cp, "containerPort")) {
							t.Errorf("%s: port %s goes to %s's container port %v: keep them equal", s, port, w, get(cp, "containerPort"))
						}
					}
				}
				if !found {
					t.Errorf("%s: port %v targets %s, which %s does not expose", s, get(p, "port"), target, w)
				}
			}
		}
	}
	checkHerdUses(t, uses)

	// kubectl renders the kustomization offline, when it is installed.
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		if out, err := exec.Command(kubectl, "kustomize", filepath.Join(deployDir, "kubernetes")).CombinedOutput(); err != nil {
			t.Errorf("kubectl kustomize: %v\n%s", err, out)
		}
	} else {
		t.Log("no kubectl here: kustomize rendering not checked")
	}
}

// ---- docker compose ----

func TestDeployCompose(t *testing.T) {
	path := filepath.Join(deployDir, "docker", "docker-compose.yml")
	docs := readYAMLDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents", path, len(docs))
	}
	c := docs[0]
	services, _ := get(c, "services").(obj)
	networks, _ := get(c, "networks").(obj)
	volumes, _ := get(c, "volumes").(obj)
	for name := range networks {
		if d := str(networks, name, "driver"); d != "bridge" {
			t.Errorf("network %s: driver %q, want bridge", name, d)
		}
	}
	var uses []herdUse
	coords, workers, bootstraps := 0, 0, 0
	for name, s := range services {
		where := "docker-compose.yml service " + name
		if str(s, "image") == "" && get(s, "build") == nil {
			t.Errorf("%s: no image or build", where)
		}
		if df := str(s, "build", "dockerfile"); df != "" {
			ctx := filepath.Join(filepath.Dir(path), str(s, "build", "context"))
			if _, err := os.Stat(filepath.Join(ctx, df)); err != nil {
				t.Errorf("%s: build: %v", where, err)
			}
		}
		if ef := str(s, "env_file"); ef != "" {
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), ef+".example")); err != nil {
				t.Errorf("%s: env_file %s has no %s.example beside it", where, ef, ef)
			}
		} else {
			t.Errorf("%s: no env_file for the token", where)
		}
		for _, n := range strList(get(s, "networks")) {
			if _, ok := networks[n]; !ok {
				t.Errorf("%s: network %s is not declared", where, n)
			}
		}
		for _, v := range strList(get(s, "volumes")) {
			src := strings.SplitN(v, ":", 2)[0]
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := volumes[src]; !ok {
					t.Errorf("%s: volume %s is not declared", where, src)
				}
			}
		}
		for _, d := range strList(get(s, "depends_on")) {
			if _, ok := services[d]; !ok {
				t.Errorf("%s: depends on unknown service %s", where, d)
			}
		}
		u, ok := useFromArgs(where, strList(get(s, "command")))
		if !ok {
			t.Errorf("%s: runs no herd command", where)
			continue
		}
		u.env = []string{"HERD_TOKEN"} // from env_file
		uses = append(uses, u)
		switch strings.Join(u.path, " ") {
		case "coord start":
			coords++
			if slices.Contains(u.flags, "--bootstrap") {
				bootstraps++
			}
		case "worker join":
			workers++
		}
		if hc := strList(get(s, "healthcheck", "test")); len(hc) > 1 {
			if hu, ok := useFromArgs(where+" healthcheck", hc); ok {
				uses = append(uses, hu)
			}
		}
	}
	// docker-compose (v1, Debian's package) validates the file offline.
	if dc, err := exec.LookPath("docker-compose"); err == nil {
		dir := t.TempDir()
		b, _ := os.ReadFile(path)
		env, _ := os.ReadFile(filepath.Join(filepath.Dir(path), "herd.env.example"))
		os.WriteFile(filepath.Join(dir, "docker-compose.yml"), b, 0o644)
		os.WriteFile(filepath.Join(dir, "herd.env"), env, 0o644)
		if out, err := exec.Command(dc, "-p", "herd", "-f", filepath.Join(dir, "docker-compose.yml"), "config", "-q").CombinedOutput(); err != nil {
			t.Errorf("docker-compose config: %v\n%s", err, out)
		}
	} else {
		t.Log("no docker-compose here: compose schema not checked")
	}
	if coords != 3 || workers != 2 || bootstraps != 1 {
		t.Errorf("compose has %d coordinators (%d bootstrapping) and %d workers, want 3 (1) and 2", coords, bootstraps, workers)
	}
	checkHerdUses(t, uses)
}

// ---- Dockerfiles ----

type dockerInstr struct {
	op, args string
}

func parseDockerfile(t *testing.T, path string) []dockerInstr {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstr
	var cur string
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		cur += trimmed
		op, args, _ := strings.Cut(cur, " ")
		out = append(out, dockerInstr{strings.ToUpper(op), strings.TrimSpace(args)})
		cur = ""
	}
	if cur != "" {
		t.Errorf("%s: ends inside a continued line", path)
	}
	known := []string{"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
	for _, in := range out {
		if !slices.Contains(known, in.op) {
			t.Errorf("%s: unknown instruction %s", path, in.op)
		}
	}
	return out
}

func TestDeployDockerfiles(t *testing.T) {
	for _, name := range []string{"Dockerfile", "Dockerfile.cuda"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(deployDir, "docker", name)
			ins := parseDockerfile(t, path)
			if _, err := os.Stat(path + ".dockerignore"); err != nil {
				t.Errorf("no %s.dockerignore: the build context would carry .build and bin", name)
			}
			var stages []string
			var stageText []string
			for _, in := range ins {
				if in.op == "FROM" {
					f := strings.Fields(in.args)
					if len(f) == 3 && strings.EqualFold(f[1], "AS") {
						stages = append(stages, f[2])
					} else {
						stages = append(stages, "")
					}
					stageText = append(stageText, "")
					continue
				}
				if len(stages) == 0 {
					if in.op != "ARG" {
						t.Errorf("%s before the first FROM", in.op)
					}
					continue
				}
				stageText[len(stageText)-1] += in.op + " " + in.args + "\n"
				if in.op == "COPY" {
					if m := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(in.args); m != nil {
						if !slices.Contains(stages[:len(stages)-1], m[1]) && !strings.Contains(m[1], ":") {
							t.Errorf("COPY --from=%s: no such earlier stage or image", m[1])
						}
					}
				}
			}
			if len(stages) < 2 {
				t.Fatalf("%d stages, want a build and a runtime stage", len(stages))
			}
			build, runtime := stageText[0], stageText[len(stageText)-1]
			if !strings.Contains(build, "make build") {
				t.Error("the build stage does not run make build")
			}
			for _, bin := range []string{"bin/herd", "bin/libherdtorch.so"} {
				if !regexp.MustCompile(`COPY --from=` + stages[0] + `[^\n]*` + regexp.QuoteMeta(bin)).MatchString(runtime) {
					t.Errorf("the runtime stage does not copy %s from %s", bin, stages[0])
				}
			}
			if name == "Dockerfile" {
				for _, pkg := range []string{"libtorch-dev"} {
					if !strings.Contains(build, pkg) {
						t.Errorf("the build stage does not install %s", pkg)
					}
				}
				for _, pkg := range []string{"libtorch1.13", "libopenblas0-openmp", "update-alternatives --set libblas.so.3"} {
					if !strings.Contains(runtime, pkg) {
						t.Errorf("the runtime stage lacks %s", pkg)
					}
				}
			}
			if !strings.Contains(runtime, "CMD ") && !strings.Contains(runtime, "ENTRYPOINT ") {
				t.Error("the runtime stage has no CMD or ENTRYPOINT")
			}
			if !strings.Contains(runtime, "USER ") {
				t.Error("the runtime stage runs as root")
			}
		})
	}
}

// ---- systemd ----

// parseUnit reads a systemd unit: sections of Key=Value lines; keys may
// repeat.
func parseUnit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if unit[section] == nil {
				unit[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.TrimSpace(k) == "" {
				t.Fatalf("%s:%d: not Key=Value in a section: %q", path, n, line)
			}
			unit[section][strings.TrimSpace(k)] = append(unit[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return unit
}

// readEnvFile reads KEY=VALUE lines.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: %q is not KEY=VALUE", path, line)
			continue
		}
		env[k] = strings.Trim(v, `"`)
	}
	return env
}

func TestDeploySystemd(t *testing.T) {
	dir := filepath.Join(deployDir, "systemd")
	var uses []herdUse
	for _, name := range []string{"herd-coord.service", "herd-worker.service"} {
		path := filepath.Join(dir, name)
		u := parseUnit(t, path)
		for _, s := range []string{"Unit", "Service", "Install"} {
			if u[s] == nil {
				t.Errorf("%s: no [%s]", name, s)
			}
		}
		svc := u["Service"]
		if got := svc["Restart"]; len(got) != 1 || got[0] != "on-failure" {
			t.Errorf("%s: Restart=%v, want on-failure", name, got)
		}
		for _, k := range []string{"User", "LimitNOFILE", "TimeoutStopSec"} {
			if len(svc[k]) == 0 {
				t.Errorf("%s: no %s=", name, k)
			}
		}
		if len(u["Install"]["WantedBy"]) == 0 {
			t.Errorf("%s: no WantedBy=", name)
		}
		// Every variable ExecStart uses is defined by an env file shipped
		// as an example, and the token comes from one.
		defined := map[string]bool{}
		for _, ef := range svc["EnvironmentFile"] {
			example := filepath.Join(dir, strings.TrimSuffix(filepath.Base(strings.TrimPrefix(ef, "-")), ".env")+".env.example")
			for k := range readEnvFile(t, example) {
				defined[k] = true
			}
		}
		for _, e := range svc["Environment"] {
			k, _, _ := strings.Cut(e, "=")
			defined[k] = true
		}
		if !defined["HERD_TOKEN"] {
			t.Errorf("%s: no EnvironmentFile gives HERD_TOKEN", name)
		}
		if len(svc["ExecStart"]) != 1 {
			t.Fatalf("%s: ExecStart=%v", name, svc["ExecStart"])
		}
		exec := svc["ExecStart"][0]
		for _, m := range regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`).FindAllStringSubmatch(exec, -1) {
			if !defined[m[1]] {
				t.Errorf("%s: ExecStart uses $%s, which no environment file or Environment= defines", name, m[1])
			}
		}
		argv := strings.Fields(exec)
		if !strings.HasPrefix(argv[0], "/") || filepath.Base(argv[0]) != "herd" {
			t.Errorf("%s: ExecStart runs %s, want an absolute path to herd", name, argv[0])
		}
		// Flags hidden in a variable (HERD_COORD_ARGS) count as used.
		for _, ef := range svc["EnvironmentFile"] {
			example := filepath.Join(dir, strings.TrimSuffix(filepath.Base(ef), ".env")+".env.example")
			b, _ := os.ReadFile(example)
			for _, line := range strings.Split(string(b), "\n") {
				line = strings.TrimPrefix(strings.TrimSpace(line), "#")
				if k, v, ok := strings.Cut(line, "="); ok && strings.Contains(exec, "$"+k) && strings.HasSuffix(k, "_ARGS") {
					argv = append(argv, strings.Fields(v)...)
				}
			}
		}
		hu, _ := useFromArgs(name, argv)
		hu.env = []string{"HERD_TOKEN"}
		uses = append(uses, hu)
	}
	checkHerdUses(t, uses)

	// systemd-analyze verify, when it is installed, on copies whose
	// ExecStart points at the binary under test (verify checks it exists).
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("no systemd-analyze here: units not verified by systemd")
		return
	}
	tmp := t.TempDir()
	var units []string
	for _, name := range []string{"herd-coord.service", "herd-worker.service"} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		p := filepath.Join(tmp, name)
		os.WriteFile(p, bytes.ReplaceAll(b, []byte("/usr/local/bin/herd"), []byte(herdBin)), 0o644)
		units = append(units, p)
	}
	out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, ".service") {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(problems, "\n"))
	}
}
