package tests

import (
	"encoding/json"
	"testing"
)

// TestBenchAllReduce runs `herd bench allreduce` with member processes and
// checks the report's definitions: busbw = algbw × 2(N−1)/N.
func TestBenchAllReduce(t *testing.T) {
	r := herd(t, nil, "bench", "allreduce", "--workers", "3", "--size", "65536", "--iters", "3", "--warmup", "1", "--timeout", "30s")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	var res struct {
		Workers int     `json:"workers"`
		Mode    string  `json:"mode"`
		TimeUS  float64 `json:"time_us"`
		AlgBW   float64 `json:"algbw_mb_s"`
		BusBW   float64 `json:"busbw_mb_s"`
		Ranks   []struct {
			Error string `json:"error"`
		} `json:"ranks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.Workers != 3 || res.Mode != "process" || len(res.Ranks) != 3 || res.TimeUS <= 0 {
		t.Fatalf("report %+v", res)
	}
	for i, rk := range res.Ranks {
		if rk.Error != "" {
			t.Fatalf("rank %d: %s", i, rk.Error)
		}
	}
	if want := res.AlgBW * 2 * 2 / 3; res.BusBW < want*0.999 || res.BusBW > want*1.001 {
		t.Fatalf("busbw %v, want algbw × 2(N−1)/N = %v", res.BusBW, want)
	}
}
