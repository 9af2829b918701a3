package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/herdml/herd/coordinator"
	"github.com/herdml/herd/internal/natsutil"
	"github.com/herdml/herd/internal/proto"
	"github.com/herdml/herd/worker"
)

// localWorkers are the in-process workers of an in-process coordinator
// (herd train, herd score, herd bench score). They run until stop, which
// ends and closes them; call it before closing the coordinator.
type localWorkers struct {
	ws     []*worker.Worker
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startLocalWorkers creates and runs one worker per config.
func startLocalWorkers(cfgs []worker.Config, log *slog.Logger) (*localWorkers, error) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &localWorkers{cancel: cancel}
	for _, wc := range cfgs {
		w, err := worker.New(wc)
		if err != nil {
			l.stop()
			return nil, err
		}
		l.ws = append(l.ws, w)
		l.wg.Go(func() {
			// After stop, a worker still registering returns the
			// cancellation: not worth an error line.
			if err := w.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("worker", "id", wc.ID, "err", err)
			}
		})
	}
	return l, nil
}

func (l *localWorkers) stop() {
	l.cancel()
	l.wg.Wait()
	for _, w := range l.ws {
		w.Close()
	}
}

// submitLocal submits req to the in-process coordinator srv.
func submitLocal(ctx context.Context, srv *coordinator.Server, req proto.SubmitRequest) (proto.SubmitResult, error) {
	var res proto.SubmitResult
	nc, err := dialCoord(srv.ClientURL(), natsutil.ConnectOptions{})
	if err != nil {
		return res, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = proto.Call(ctx, nc, proto.SubjectSubmit, localToken, req, &res)
	return res, err
}
