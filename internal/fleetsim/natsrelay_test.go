package fleetsim

import (
	"maps"
	"testing"
)

// TestNATSCounter feeds a client's protocol stream, cut at every byte
// boundary, and checks the requests counted: publications by subject
// kind, subscriptions, and nothing for CONNECT, PING, PONG or a payload
// that looks like an operation.
func TestNATSCounter(t *testing.T) {
	t.Parallel()
	stream := "CONNECT {\"verbose\":false}\r\nPING\r\n" +
		"SUB _INBOX.abc.* 1\r\n" +
		"PUB $JS.API.STREAM.INFO.KV_roster _INBOX.abc.1 0\r\n\r\n" +
		"HPUB $KV.roster.svc.id _INBOX.abc.2 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n" +
		"PUB $JS.API.DIRECT.GET.KV_roster.$KV.roster.svc.id _INBOX.abc.3 11\r\nPUB x 1\r\nAB\r\n" +
		"PUB $JS.API.CONSUMER.CREATE.KV_roster.c1.$KV.roster.svc.> _INBOX.abc.4 2\r\n{}\r\n" +
		"PONG\r\nUNSUB 1\r\n"
	want := map[string]int64{"SUB": 1, "JS STREAM.INFO": 1, "KV write": 1, "JS DIRECT.GET": 1, "JS CONSUMER.CREATE": 1, "UNSUB": 1}
	for cut := 0; cut <= len(stream); cut++ {
		fleet := &traffic{}
		pt := &procTraffic{fleet: fleet}
		c := natsCounter{pt: pt}
		c.feed([]byte(stream[:cut]))
		c.feed([]byte(stream[cut:]))
		if got := pt.methods(); !maps.Equal(got, want) {
			t.Fatalf("cut at %d: counted %v; want %v", cut, got, want)
		}
		if got := fleet.ranges.Load(); got != 1 {
			t.Fatalf("cut at %d: %d reads; want 1 (the consumer's creation)", cut, got)
		}
	}
}
