package natstest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

func connect(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// getsV reports whether kv holds k=v. Each try has a second of its own:
// a request sent just as the server stops is lost, and would otherwise
// hold the caller's whole context.
func getsV(ctx context.Context, kv jetstream.KeyValue) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	e, err := kv.Get(ctx, "k")
	return err == nil && string(e.Value()) == "v"
}

func TestStopRestartKeepsPortAndData(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	url := srv.URL()
	js := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	if srv.Running() {
		t.Fatal("Running() after Stop = true")
	}
	natstest.Restart(t, srv)
	if got := srv.URL(); got != url {
		t.Fatalf("URL after Restart = %s; want %s", got, url)
	}
	// The client reconnects on its own to the same URL and finds the key.
	testwait.Until(t, 10*time.Second, "Get(k) = v after Restart", func() bool {
		return getsV(ctx, kv)
	})
}

func TestAuth(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		opt   natstest.Option
		right nats.Option
		wrong nats.Option
	}{
		{"user", natstest.WithUser("roster", "secret"), nats.UserInfo("roster", "secret"), nats.UserInfo("roster", "nope")},
		{"token", natstest.WithToken("tok"), nats.Token("tok"), nats.Token("nope")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := natstest.Start(t, tc.opt)
			if _, err := nats.Connect(srv.URL(), tc.wrong); !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("Connect with wrong credentials = %v; want ErrAuthorization", err)
			}
			nc, err := nats.Connect(srv.URL(), tc.right)
			if err != nil {
				t.Fatalf("Connect with the right credentials: %v", err)
			}
			nc.Close()
		})
	}
}

func TestProxyRejectCutsClients(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	p := natstest.StartProxy(t, srv.Addr())
	nc, err := nats.Connect("nats://"+p.Endpoint(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p.Reject()
	testwait.Until(t, 5*time.Second, "client disconnected after Reject", func() bool { return !nc.IsConnected() })
	p.Accept()
	testwait.Until(t, 5*time.Second, "client reconnected after Accept", nc.IsConnected)
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, natstest.WithTLS())
	if _, err := nats.Connect(srv.URL()); err == nil {
		t.Fatal("Connect without the server's authority succeeded")
	}
	nc, err := nats.Connect(srv.URL(), nats.Secure(srv.ClientTLSConfig()))
	if err != nil {
		t.Fatalf("Connect with ClientTLSConfig: %v", err)
	}
	nc.Close()
}
