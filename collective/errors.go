package collective

import "errors"

// Sentinel errors. Errors returned by Join and AllReduce wrap one of these
// (or a context error) with details; test with errors.Is.
var (
	// ErrStaleEpoch: the member's epoch is older than one another member
	// or the coordinator announced. Close the member and join the current
	// epoch.
	ErrStaleEpoch = errors.New("collective: stale epoch")
	// ErrTimeout: a call did not complete within Config.Timeout, usually
	// because a member stopped answering.
	ErrTimeout = errors.New("collective: timeout")
	// ErrAborted: another member of the epoch failed a call and told the
	// group; the epoch cannot continue.
	ErrAborted = errors.New("collective: aborted by peer")
	// ErrBroken: an earlier call on this member failed; the member cannot
	// be used again. Close it and join the next epoch.
	ErrBroken = errors.New("collective: member broken by earlier error")
	// ErrClosed: the member was closed.
	ErrClosed = errors.New("collective: member closed")
	// ErrMismatch: members disagree on group size, configuration or
	// buffer length.
	ErrMismatch = errors.New("collective: mismatch between members")
	// ErrDuplicateRank: two members joined with the same rank.
	ErrDuplicateRank = errors.New("collective: duplicate rank")
	// ErrBusy: AllReduce was called while another call on the same member
	// was in progress.
	ErrBusy = errors.New("collective: concurrent call on member")
	// ErrInvalid: bad arguments (rank, size, group name, config).
	ErrInvalid = errors.New("collective: invalid argument")
	// ErrMaxPayload: a message exceeded the transport's max payload.
	ErrMaxPayload = errors.New("collective: message exceeds max payload")
	// ErrTransportClosed: the transport was closed.
	ErrTransportClosed = errors.New("collective: transport closed")
)
