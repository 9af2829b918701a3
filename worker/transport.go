package worker

import (
	"strings"

	"github.com/herdml/herd/collective"
)

// epochTransport is the transport of one group epoch's all-reduces. Where
// the connection needs neither TLS nor nkeys/creds it is a dedicated raw
// NATS connection (collective.DialRawNATS) to the server the collective
// connection is on: it reads payloads straight into pooled buffers and
// writes them without copies, which is most of the all-reduce's CPU
// (docs/collective.md). It has no reconnect logic, and needs none: a
// dropped connection fails the epoch, and the next epoch dials again, to
// whichever server nats.go has failed over to. Otherwise, or when the dial
// fails, the job's nats.go transport serves.
func (j *job) epochTransport() (collective.Transport, func()) {
	c := j.w.cfg.Connect
	url := j.w.cc.ConnectedUrl()
	if c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" || c.NkeySeedFile != "" || c.CredsFile != "" ||
		!strings.HasPrefix(url, "nats://") {
		return j.tr, func() {}
	}
	raw, err := collective.DialRawNATS(url, collective.RawNATSOptions{Name: "herd-worker-" + j.w.cfg.ID + "-allreduce",
		User: c.User, Password: c.Password, Token: c.Token, NoEcho: true})
	if err != nil {
		j.w.log.Warn("raw NATS collective connection failed; using nats.go", "url", url, "err", err)
		return j.tr, func() {}
	}
	return raw, func() { _ = raw.Close() }
}
