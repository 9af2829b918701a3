package proto

import (
	"errors"
	"fmt"
)

// Code names a class of error reply. Codes are stable: clients branch on them.
type Code string

// The error catalogue.
const (
	// CodeBadToken: the Herd-Token header is missing or wrong.
	CodeBadToken Code = "bad_token"
	// CodeNotLeader: the coordinator that answered lost leadership while
	// serving the request; retry.
	CodeNotLeader Code = "not_leader"
	// CodeNotFound: no such job or worker.
	CodeNotFound Code = "not_found"
	// CodeInvalid: the request is malformed or its config has problems.
	CodeInvalid Code = "invalid"
	// CodeConflict: the request does not fit the current state (cancel a
	// finished job, a report for an old group epoch).
	CodeConflict Code = "conflict"
	// CodeInternal: the coordinator failed (raft apply, I/O).
	CodeInternal Code = "internal"
)

// Error is an error reply.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Hint says what to do next, for the CLI to print.
	Hint string `json:"hint,omitempty"`
}

func (e *Error) Error() string {
	if e.Hint != "" {
		return fmt.Sprintf("%s (%s)", e.Message, e.Hint)
	}
	return e.Message
}

// Errorf makes an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// IsCode reports whether err is, or wraps, an *Error with code c.
func IsCode(err error, c Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == c
}

// ErrBadToken is the reply to a request with a missing or wrong token.
func ErrBadToken(missing bool) *Error {
	msg := "wrong join token"
	if missing {
		msg = "missing join token"
	}
	return &Error{Code: CodeBadToken, Message: msg,
		Hint: "pass the cluster's token with --token or the HERD_TOKEN environment variable; it is the --token the coordinators were started with"}
}

// Client-side errors of Call.
var (
	// ErrNoCoordinator: no coordinator answered before the deadline (none
	// reachable, or no leader elected).
	ErrNoCoordinator = errors.New("proto: no coordinator answered")
	// ErrUnreachable: the NATS connection to the coordinator failed.
	ErrUnreachable = errors.New("proto: coordinator unreachable")
)
