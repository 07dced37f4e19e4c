// Package faultlink is the link of roster's fault harnesses (the etcd and
// NATS backends' discoverytest.FaultHarness): a faultproxy.Proxy between
// the backends and the registry, which Cut cuts and Heal mends. It is for
// roster's own tests.
package faultlink

import (
	"github.com/roster-sd/roster/discovery/discoverytest"
	"github.com/roster-sd/roster/internal/faultproxy"
)

// Link implements FaultHarness.Cut and Heal over Proxy: embed it in a
// harness whose MakeBackend dials Proxy.Endpoint().
type Link struct {
	Proxy *faultproxy.Proxy
}

// Cut rejects every connection (discoverytest.CutReject) or silences the
// link both ways (discoverytest.CutBlackhole), until Heal.
func (l Link) Cut(mode discoverytest.CutMode) {
	if mode == discoverytest.CutBlackhole {
		l.Proxy.Blackhole()
		return
	}
	l.Proxy.Reject()
}

// Heal ends Cut, whichever mode it was.
func (l Link) Heal() {
	l.Proxy.Unblackhole()
	l.Proxy.Accept()
}
