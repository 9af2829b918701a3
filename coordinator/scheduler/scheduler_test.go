package scheduler

import (
	"reflect"
	"testing"
	"time"

	"github.com/herdml/herd/internal/proto"
)

func alive(ids ...string) []Worker {
	var ws []Worker
	for _, id := range ids {
		ws = append(ws, Worker{ID: id, Alive: true})
	}
	return ws
}

func TestSchedule(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		v    View
		want []Decision
	}{
		{"queued waits for N workers",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusQueued, Workers: 3, MinWorkers: 1}}, Workers: alive("a", "b")},
			nil},
		{"queued starts with N of the free workers, by id",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusQueued, Workers: 2, MinWorkers: 1}}, Workers: alive("c", "a", "b")},
			[]Decision{{Job: "j", Action: Form, Epoch: 1, Members: []string{"a", "b"}, Reason: "start"}}},
		{"all available, capped by max_workers",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusQueued, Workers: 0, MinWorkers: 2, MaxWorkers: 3}}, Workers: alive("a", "b", "c", "d")},
			[]Decision{{Job: "j", Action: Form, Epoch: 1, Members: []string{"a", "b", "c"}, Reason: "start"}}},
		{"all available needs min_workers",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusQueued, Workers: 0, MinWorkers: 2}}, Workers: alive("a")},
			nil},
		{"excluded and dead workers are not used",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusQueued, Workers: 1, MinWorkers: 1}},
				Workers: []Worker{{ID: "a", Alive: true, Excluded: true}, {ID: "b"}, {ID: "c", Alive: true}}},
			[]Decision{{Job: "j", Action: Form, Epoch: 1, Members: []string{"c"}, Reason: "start"}}},
		{"members of a running job are not free",
			View{Jobs: []Job{
				{ID: "j1", Status: proto.StatusRunning, Workers: 1, Epoch: 1, Members: []string{"a"}},
				{ID: "j2", Status: proto.StatusQueued, Workers: 1}}, Workers: alive("a", "b")},
			[]Decision{{Job: "j2", Action: Form, Epoch: 1, Members: []string{"b"}, Reason: "start"}}},
		{"healthy running job: nothing to do",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusRunning, Workers: 2, Epoch: 4, Members: []string{"b", "a"}, MaxRestarts: 3}}, Workers: alive("a", "b")},
			nil},
		{"lost member: re-form with the survivors in rank order, replaced from the free",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusRunning, Workers: 3, MinWorkers: 1, Epoch: 2, Members: []string{"c", "a", "b"}, MaxRestarts: 3}},
				Workers: []Worker{{ID: "a"}, {ID: "b", Alive: true}, {ID: "c", Alive: true}, {ID: "d", Alive: true}}},
			[]Decision{{Job: "j", Action: Form, Epoch: 3, Members: []string{"c", "b", "d"}, Restart: true, Lost: []string{"a"}, Reason: "lost a"}}},
		{"failed epoch: re-form with the same live members",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusRunning, Workers: 2, MinWorkers: 1, Epoch: 2, Members: []string{"a", "b"}, MaxRestarts: 3}},
				Workers: []Worker{{ID: "a", Alive: true, FailedJob: "j", FailedEpoch: 2}, {ID: "b", Alive: true}}},
			[]Decision{{Job: "j", Action: Form, Epoch: 3, Members: []string{"a", "b"}, Restart: true, Reason: "epoch failed on a"}}},
		{"a failure of an older epoch is ignored",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusRunning, Workers: 2, Epoch: 3, Members: []string{"a", "b"}, MaxRestarts: 3}},
				Workers: []Worker{{ID: "a", Alive: true, FailedJob: "j", FailedEpoch: 2}, {ID: "b", Alive: true}}},
			nil},
		{"restarted member counts as lost",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusRunning, Workers: 2, MinWorkers: 1, Epoch: 1, Members: []string{"a", "b"}, MaxRestarts: 3}},
				Workers: []Worker{{ID: "a", Alive: true}, {ID: "b", Alive: true, Restarted: true}}},
			[]Decision{{Job: "j", Action: Form, Epoch: 2, Members: []string{"a", "b"}, Restart: true, Lost: []string{"b"}, Reason: "lost b"}}},
		{"below min_workers: wait",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusRunning, Workers: 2, MinWorkers: 2, Epoch: 1, Members: []string{"a", "b"}, MaxRestarts: 3}},
				Workers: []Worker{{ID: "a", Alive: true}, {ID: "b"}}},
			[]Decision{{Job: "j", Action: Wait, Lost: []string{"b"}, Reason: "lost b; 1 worker(s) left, min_workers is 2"}}},
		{"all lost: wait",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusRunning, Workers: 1, MinWorkers: 1, Epoch: 1, Members: []string{"a"}, MaxRestarts: 3}},
				Workers: []Worker{{ID: "a"}}},
			[]Decision{{Job: "j", Action: Wait, Lost: []string{"a"}, Reason: "lost a; 0 worker(s) left, min_workers is 1"}}},
		{"restart budget spent: fail",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusRunning, Workers: 2, Epoch: 5, Members: []string{"a", "b"}, Restarts: 2, MaxRestarts: 2}},
				Workers: []Worker{{ID: "a", Alive: true}}},
			[]Decision{{Job: "j", Action: Fail, Lost: []string{"b"}, Reason: "restart budget spent (cluster.max_restarts = 2): lost b"}}},
		{"grow when a worker returns",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusRunning, Workers: 2, MinWorkers: 1, Epoch: 3, Members: []string{"a"}, MaxRestarts: 3}},
				Workers: alive("a", "b")},
			[]Decision{{Job: "j", Action: Form, Epoch: 4, Members: []string{"a", "b"}, Reason: "grow: b joined"}}},
		{"waiting resumes with min_workers",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusWaiting, Workers: 3, MinWorkers: 1, Epoch: 3, WaitingSince: now}},
				Workers: alive("z"), Now: now.Add(time.Minute), WaitTimeout: time.Hour},
			[]Decision{{Job: "j", Action: Form, Epoch: 4, Members: []string{"z"}, Reason: "workers returned"}}},
		{"waiting too long: fail",
			View{Jobs: []Job{{ID: "j", Status: proto.StatusWaiting, Workers: 1, MinWorkers: 1, Epoch: 3, WaitingSince: now}},
				Now: now.Add(2 * time.Hour), WaitTimeout: time.Hour},
			[]Decision{{Job: "j", Action: Fail, Reason: "waited 1h0m0s for at least 1 worker(s) (the coordinator's wait timeout)"}}},
		{"first job first",
			View{Jobs: []Job{{ID: "j1", Status: proto.StatusQueued, Workers: 2}, {ID: "j2", Status: proto.StatusQueued, Workers: 1}},
				Workers: alive("a", "b")},
			[]Decision{{Job: "j1", Action: Form, Epoch: 1, Members: []string{"a", "b"}, Reason: "start"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Schedule(tt.v)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestScheduleNeverDoubleBooks checks, over many random views, that no
// worker is put in two groups and only usable workers are.
func TestScheduleNeverDoubleBooks(t *testing.T) {
	for seed := range 500 {
		r := seed
		next := func(n int) int { r = (r*1103515245 + 12345) & 0x7fffffff; return r % n }
		var ws []Worker
		ids := []string{"a", "b", "c", "d", "e", "f"}
		for _, id := range ids {
			ws = append(ws, Worker{ID: id, Alive: next(4) != 0, Excluded: next(6) == 0})
		}
		var jobs []Job
		used := map[string]bool{}
		for k := range 3 {
			j := Job{ID: string(rune('p' + k)), Workers: next(4), MinWorkers: 1, MaxRestarts: 5}
			switch next(3) {
			case 0:
				j.Status = proto.StatusQueued
			case 1:
				j.Status = proto.StatusWaiting
			default:
				j.Status, j.Epoch = proto.StatusRunning, 1
				for _, id := range ids {
					if !used[id] && next(3) == 0 {
						used[id] = true
						j.Members = append(j.Members, id)
					}
				}
				if len(j.Members) == 0 {
					j.Status = proto.StatusQueued
					j.Epoch = 0
				}
			}
			jobs = append(jobs, j)
		}
		ds := Schedule(View{Jobs: jobs, Workers: ws})
		owner := map[string]string{}
		for _, j := range jobs {
			if j.Status == proto.StatusRunning {
				for _, m := range j.Members {
					owner[m] = j.ID
				}
			}
		}
		for _, d := range ds {
			if d.Action != Form {
				continue
			}
			for _, m := range d.Members {
				owner[m] = d.Job
			}
		}
		seen := map[string]string{}
		for _, d := range ds {
			for _, m := range d.Members {
				if prev, ok := seen[m]; ok {
					t.Fatalf("seed %d: %s in %s and %s", seed, m, prev, d.Job)
				}
				seen[m] = d.Job
				var w Worker
				for _, x := range ws {
					if x.ID == m {
						w = x
					}
				}
				if !w.usable() {
					t.Fatalf("seed %d: unusable %s in %s", seed, m, d.Job)
				}
				if o := owner[m]; o != d.Job {
					t.Fatalf("seed %d: %s taken from %s by %s", seed, m, o, d.Job)
				}
			}
		}
	}
}
