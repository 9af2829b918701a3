package proto_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
)

func server(t *testing.T) *nats.Conn {
	t.Helper()
	s, url, err := natsutil.StartEmbedded(natsutil.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := natsutil.Connect(url, natsutil.ConnectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

type echo struct {
	Text string `json:"text"`
}

func TestCall(t *testing.T) {
	nc := server(t)
	var notLeader atomic.Int32
	sub, err := nc.Subscribe("herd.test", func(m *nats.Msg) {
		if perr := proto.CheckToken(m, "secret"); perr != nil {
			_ = proto.Respond(m, nil, perr)
			return
		}
		var req echo
		if perr := proto.Decode(m, &req); perr != nil {
			_ = proto.Respond(m, nil, perr)
			return
		}
		if req.Text == "leader?" && notLeader.Add(1) < 3 {
			_ = proto.Respond(m, nil, &proto.Error{Code: proto.CodeNotLeader, Message: "not leader"})
			return
		}
		if req.Text == "fail" {
			_ = proto.Respond(m, nil, errors.New("disk full"))
			return
		}
		_ = proto.Respond(m, echo{Text: strings.ToUpper(req.Text)}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx := context.Background()

	var res echo
	if err := proto.Call(ctx, nc, "herd.test", "secret", echo{Text: "hi"}, &res); err != nil || res.Text != "HI" {
		t.Fatalf("call: %v %+v", err, res)
	}
	err = proto.Call(ctx, nc, "herd.test", "wrong", echo{Text: "hi"}, &res)
	if !proto.IsCode(err, proto.CodeBadToken) || !strings.Contains(err.Error(), "wrong join token") {
		t.Fatalf("wrong token: %v", err)
	}
	err = proto.Call(ctx, nc, "herd.test", "", echo{Text: "hi"}, &res)
	if !proto.IsCode(err, proto.CodeBadToken) || !strings.Contains(err.Error(), "missing join token") {
		t.Fatalf("no token: %v", err)
	}
	// A not-leader answer is retried.
	if err := proto.Call(ctx, nc, "herd.test", "secret", echo{Text: "leader?"}, &res); err != nil || res.Text != "LEADER?" {
		t.Fatalf("not-leader retry: %v %+v", err, res)
	}
	if err := proto.Call(ctx, nc, "herd.test", "secret", echo{Text: "fail"}, nil); !proto.IsCode(err, proto.CodeInternal) {
		t.Fatalf("internal error: %v", err)
	}
	// No responder: retried until the deadline.
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = proto.Call(tctx, nc, "herd.nobody", "secret", echo{}, nil)
	if !errors.Is(err, proto.ErrNoCoordinator) || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("no responders: %v after %v", err, time.Since(start))
	}
	nc.Close()
	if err := proto.Call(ctx, nc, "herd.test", "secret", echo{}, nil); !errors.Is(err, proto.ErrUnreachable) {
		t.Fatalf("closed connection: %v", err)
	}
}

func TestValidID(t *testing.T) {
	for _, ok := range []string{"w1", "gpu-node_3", "A"} {
		if err := proto.ValidID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", "a.b", "a b", "a*", strings.Repeat("x", 129)} {
		if proto.ValidID(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestCallMsgHeaders: CallMsg sends its headers beside the token and
// returns the reply's, which is how trace context crosses a request and
// its reply.
func TestCallMsgHeaders(t *testing.T) {
	nc := server(t)
	sub, err := nc.Subscribe("herd.test.hdr", func(m *nats.Msg) {
		if perr := proto.CheckToken(m, "secret"); perr != nil {
			_ = proto.Respond(m, nil, perr)
			return
		}
		hdr := nats.Header{"traceparent": []string{"reply-" + m.Header.Get("traceparent")}}
		_ = proto.RespondMsg(m, hdr, echo{Text: "ok"}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res echo
	got, err := proto.CallMsg(ctx, nc, "herd.test.hdr", "secret", nats.Header{"traceparent": []string{"x"}}, echo{}, &res)
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != "ok" || got.Get("traceparent") != "reply-x" {
		t.Fatalf("result %+v, reply traceparent %q; want ok and reply-x", res, got.Get("traceparent"))
	}
}
