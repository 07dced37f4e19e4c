package embedded_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/roster-sd/roster/backends/nats/embedded"
)

func TestInvalidOptions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts []embedded.Option
		want string
	}{
		{"empty user", []embedded.Option{embedded.WithUser("", "pw")}, "WithUser: user and password must not be empty"},
		{"empty password", []embedded.Option{embedded.WithUser("u", "")}, "WithUser: user and password must not be empty"},
		{"empty token", []embedded.Option{embedded.WithToken("")}, "WithToken: empty token"},
		{"user and token", []embedded.Option{embedded.WithUser("u", "pw"), embedded.WithToken("t")}, "WithUser, WithToken, WithNKeyUser and WithOperator exclude each other"},
		{"token and operator", []embedded.Option{embedded.WithToken("t"), embedded.WithOperator()}, "WithUser, WithToken, WithNKeyUser and WithOperator exclude each other"},
		{"not an NKey", []embedded.Option{embedded.WithNKeyUser("roster")}, `WithNKeyUser: "roster" is not an NKey user public key`},
		{"empty store", []embedded.Option{embedded.WithStoreDir("")}, "WithStoreDir: empty directory"},
		{"port 0", []embedded.Option{embedded.WithPort(0)}, "WithPort: port 0 out of range 1..65535"},
		{"port 65536", []embedded.Option{embedded.WithPort(65536)}, "WithPort: port 65536 out of range 1..65535"},
		{"nil writer", []embedded.Option{embedded.WithLogOutput(nil)}, "WithLogOutput: nil writer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := embedded.New(tc.opts...)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if want := "embedded: invalid option: " + tc.want; err.Error() != want {
				t.Errorf("New error = %q; want %q", err, want)
			}
			if _, err := embedded.NewCluster(1, tc.opts...); err == nil || !strings.HasPrefix(err.Error(), "embedded: invalid option: ") {
				t.Errorf("NewCluster error = %v; want the invalid option", err)
			}
		})
	}
	for _, opt := range []embedded.Option{embedded.WithTLS(), embedded.WithPort(4222), embedded.WithStoreDir(t.TempDir()), embedded.WithOperator()} {
		const want = "embedded: WithStoreDir, WithTLS, WithPort and WithOperator do not apply to a cluster"
		if _, err := embedded.NewCluster(1, opt); err == nil || err.Error() != want {
			t.Errorf("NewCluster with a single-server option = %v; want %q", err, want)
		}
	}
	if _, err := embedded.NewCluster(0); err == nil || !strings.HasPrefix(err.Error(), "embedded: ") {
		t.Errorf("NewCluster(0) = %v; want an embedded: error", err)
	}
}

// A seed given where the public key belongs (an easy slip: both are
// base32 strings from nkeys) is refused without being shown.
func TestWithNKeyUserDoesNotShowASeed(t *testing.T) {
	t.Parallel()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := user.Seed()
	if err != nil {
		t.Fatal(err)
	}
	s, err := embedded.New(embedded.WithNKeyUser(string(seed)))
	if err == nil {
		s.Close()
		t.Fatal("New with a seed for a public key succeeded")
	}
	if !strings.Contains(err.Error(), "WithNKeyUser") || strings.Contains(err.Error(), string(seed)) {
		t.Errorf("New error = %q; want it to name WithNKeyUser without showing the seed", err)
	}
}

// WithOperator's credentials file lets a client in, and Close removes it.
func TestWithOperator(t *testing.T) {
	t.Parallel()
	s, err := embedded.New(embedded.WithOperator())
	if err != nil {
		t.Fatal(err)
	}
	creds := s.CredentialsFile()
	nc, err := nats.Connect(s.URL(), nats.UserCredentials(creds))
	if err != nil {
		s.Close()
		t.Fatalf("connect with the credentials file: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect(s.URL()); err == nil {
		nc.Close()
		t.Error("connect without credentials succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(creds); !os.IsNotExist(err) {
		t.Errorf("credentials file after Close: %v; want it removed", err)
	}
}

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestWithPort(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	s, err := embedded.New(embedded.WithPort(port))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if want := "nats://127.0.0.1:" + strconv.Itoa(port); s.URL() != want {
		t.Errorf("URL = %s; want %s", s.URL(), want)
	}
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	nc.Close()

	// A port in use is an error at once, not a wait for ReadyTimeout.
	_, err = embedded.New(embedded.WithPort(port))
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.HasPrefix(err.Error(), "embedded: serve on port "+strconv.Itoa(port)+": ") {
		t.Errorf("New on a port in use = %v; want an embedded: error wrapping EADDRINUSE", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestWithLogOutput(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	s, err := embedded.New(embedded.WithLogOutput(&out))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	logs := out.String()
	if !strings.Contains(logs, "[INF] Server is ready\n") {
		t.Errorf("logs hold no %q line:\n%s", "[INF] Server is ready", logs)
	}
	if strings.Contains(logs, "[DBG]") || strings.Contains(logs, "[TRC]") {
		t.Errorf("logs hold debug or trace lines:\n%s", logs)
	}
}

func TestRestartAfterClose(t *testing.T) {
	t.Parallel()
	s, err := embedded.New()
	if err != nil {
		t.Fatal(err)
	}
	dir := s.StoreDir()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	if err := s.Restart(); !errors.Is(err, embedded.ErrNotRunning) {
		t.Errorf("Restart after Close = %v; want ErrNotRunning", err)
	}
	if s.Running() || s.NATS() != nil {
		t.Error("Running after Close")
	}
	if _, err := net.Dial("tcp", s.Addr()); err == nil {
		t.Error("the port accepts connections after Close")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("store directory %s after Close: %v; want it removed", dir, err)
	}
}
