package proto

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// CallRetry is how long Call waits between attempts when no coordinator
// answers.
const CallRetry = 100 * time.Millisecond

// attemptTimeout bounds one request attempt inside Call. It is short: during
// a failover a request can be lost without a no-responders answer (sent to
// a server that has not yet learnt the new leader's interest), and the
// retry finds the leader. Handlers are idempotent (submissions carry a
// request id) so that a request answered too late and sent again is safe.
const attemptTimeout = time.Second

// Call sends req (JSON) to subject with the token header and decodes the
// result into res (nil to ignore it). While no coordinator answers (no
// responders: an election is under way) or the answering one lost
// leadership, it retries every CallRetry until ctx ends, then returns an
// error wrapping ErrNoCoordinator. An error reply is returned as an *Error.
func Call(ctx context.Context, nc *nats.Conn, subject, token string, req, res any) error {
	_, err := CallMsg(ctx, nc, subject, token, nil, req, res)
	return err
}

// CallMsg is Call that also sends the headers hdr (the trace context; the
// token header is added) and returns the reply's headers.
func CallMsg(ctx context.Context, nc *nats.Conn, subject, token string, hdr nats.Header, req, res any) (nats.Header, error) {
	if sr, ok := req.(SubmitRequest); ok && sr.RequestID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		sr.RequestID = hex.EncodeToString(b[:])
		req = sr
	}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("proto: encode %s request: %w", subject, err)
	}
	h := nats.Header{TokenHeader: []string{token}}
	for k, v := range hdr {
		h[k] = v
	}
	var last error
	for {
		ac, cancel := context.WithTimeout(ctx, attemptTimeout)
		msg := &nats.Msg{Subject: subject, Header: h, Data: data}
		reply, err := nc.RequestMsgWithContext(ac, msg)
		cancel()
		switch {
		case err == nil:
			rerr := decodeReply(reply.Data, res)
			if !IsCode(rerr, CodeNotLeader) {
				return reply.Header, rerr
			}
			last = rerr
		case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout),
			errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			last = err
		case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
			return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, subject, err)
		default:
			if ctx.Err() == nil {
				last = err
				break
			}
			return nil, fmt.Errorf("%w: %s: %v (last: %v)", ErrNoCoordinator, subject, ctx.Err(), last)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s: %v (last: %v)", ErrNoCoordinator, subject, ctx.Err(), last)
		case <-time.After(CallRetry):
		}
	}
}

func decodeReply(data []byte, res any) error {
	var r Reply
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("proto: bad reply: %w", err)
	}
	if r.Error != nil {
		return r.Error
	}
	if res == nil || len(r.Result) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Result, res); err != nil {
		return fmt.Errorf("proto: bad result: %w", err)
	}
	return nil
}

// CheckToken returns nil when the message carries token (compared in
// constant time), else the bad-token error.
func CheckToken(m *nats.Msg, token string) *Error {
	got := ""
	if m.Header != nil {
		got = m.Header.Get(TokenHeader)
	}
	if got == "" {
		return ErrBadToken(true)
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
		return ErrBadToken(false)
	}
	return nil
}

// Decode decodes a request's JSON payload into v.
func Decode(m *nats.Msg, v any) *Error {
	if err := json.Unmarshal(m.Data, v); err != nil {
		return Errorf(CodeInvalid, "malformed %s request: %v", m.Subject, err)
	}
	return nil
}

// Respond answers m with result, or with err when it is not nil (an
// *Error is sent as is, other errors as CodeInternal). It does nothing for
// a message without a reply subject.
func Respond(m *nats.Msg, result any, err error) error {
	return RespondMsg(m, nil, result, err)
}

// RespondMsg is Respond with the reply headers hdr (the trace context of
// what the reply hands out, such as an assignment).
func RespondMsg(m *nats.Msg, hdr nats.Header, result any, err error) error {
	if m.Reply == "" {
		return nil
	}
	var r Reply
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Code: CodeInternal, Message: err.Error()}
		}
		r.Error = pe
	} else if result != nil {
		raw, merr := json.Marshal(result)
		if merr != nil {
			r.Error = &Error{Code: CodeInternal, Message: merr.Error()}
		} else {
			r.Result = raw
		}
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return m.RespondMsg(&nats.Msg{Header: hdr, Data: data})
}
