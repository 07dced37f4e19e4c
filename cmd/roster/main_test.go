package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// waitTimeout bounds every wait for a subprocess's output or exit. It is
// generous for a loaded 2-core machine; the waits normally end in well
// under a second.
const waitTimeout = 15 * time.Second

// rosterBin is the roster binary built by TestMain.
var rosterBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "roster-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdir temp:", err)
		os.Exit(1)
	}
	rosterBin = filepath.Join(dir, "roster")
	if err := buildRoster(rosterBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(cleanupM{m, dir})
}

// cleanupM removes the binary's directory once the tests have run, before
// goleak exits.
type cleanupM struct {
	m   *testing.M
	dir string
}

func (c cleanupM) Run() int {
	code := c.m.Run()
	_ = os.RemoveAll(c.dir)
	return code
}

// buildRoster builds this package into out with the go command that runs
// the tests, with -race when the tests run with it (which also reuses the
// packages the test build has compiled).
func buildRoster(out string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command, to build roster: %w", err)
	}
	argv := []string{"build", "-o", out}
	if raceEnabled {
		argv = append(argv, "-race")
	}
	cmd := exec.Command(goCmd, append(argv, ".")...)
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(argv, " "), err, b)
	}
	return nil
}

// subprocessEnv is the environment of a roster subprocess: this process's
// without any ROSTER_ variable, plus extra.
func subprocessEnv(extra []string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "ROSTER_") })
	return append(env, extra...)
}

// proc is a running roster subprocess whose output is read line by line.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd

	mu      sync.Mutex
	stdout  []string // lines so far
	stderr  []string
	next    int           // index of the next stdout line waitLine looks at
	changed chan struct{} // capacity 1: a line arrived or a stream ended
	open    int           // streams not at EOF yet

	exited chan struct{} // closed once Wait has returned
	code   int
}

// startRoster starts roster with args and env (added to a clean
// environment) and stops it, if still running, when the test ends.
func startRoster(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{
		t:       t,
		name:    "roster " + strings.Join(args, " "),
		cmd:     exec.Command(rosterBin, args...),
		changed: make(chan struct{}, 1),
		exited:  make(chan struct{}),
		open:    2,
	}
	p.cmd.Env = subprocessEnv(env)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go p.read(&readers, stdout, &p.stdout)
	go p.read(&readers, stderr, &p.stderr)
	go func() {
		readers.Wait() // Wait must follow the last read of the pipes
		err := p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if err != nil && p.code == 0 {
			p.code = -1
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s (exit %d)\nstdout:\n%s\nstderr:\n%s", p.name, p.code,
				p.text(&p.stdout), p.text(&p.stderr))
		}
	})
	return p
}

func (p *proc) read(wg *sync.WaitGroup, r io.Reader, into *[]string) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.mu.Lock()
		*into = append(*into, sc.Text())
		p.mu.Unlock()
		p.poke()
	}
	_, _ = io.Copy(io.Discard, r) // a line too long for the scanner
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
	p.poke()
}

func (p *proc) poke() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func (p *proc) text(lines *[]string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(*lines, "\n")
}

// waitLine waits for a stdout line, after those already matched by earlier
// calls, that contains want, and returns it. It fails the test if none
// comes within waitTimeout or the output ends.
func (p *proc) waitLine(want string) string {
	p.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for p.next < len(p.stdout) {
			line := p.stdout[p.next]
			p.next++
			if strings.Contains(line, want) {
				p.mu.Unlock()
				return line
			}
		}
		ended := p.open == 0
		p.mu.Unlock()
		if ended {
			p.t.Fatalf("%s: output ended without a line containing %q", p.name, want)
		}
		select {
		case <-p.changed:
		case <-deadline.C:
			p.t.Fatalf("%s: no line containing %q within %v", p.name, want, waitTimeout)
		}
	}
}

// lines returns a copy of the stdout lines so far.
func (p *proc) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.stdout)
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
}

// wait waits for the process to exit and returns its exit status.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(waitTimeout):
		p.t.Fatalf("%s did not exit within %v", p.name, waitTimeout)
		return 0
	}
}

// interrupt sends SIGINT and waits for a clean exit.
func (p *proc) interrupt() {
	p.t.Helper()
	p.signal(syscall.SIGINT)
	if code := p.wait(); code != 0 {
		p.t.Fatalf("%s exited with %d after SIGINT; want 0", p.name, code)
	}
}

// result is the outcome of a roster command run to completion.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// runRoster runs roster to completion with args and env (added to a clean
// environment).
func runRoster(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, rosterBin, args...)
	cmd.Env = subprocessEnv(env)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("roster %s did not exit within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), waitTimeout, r.stdout, r.stderr)
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("roster %s: %v", strings.Join(args, " "), err)
	}
	r.code = cmd.ProcessState.ExitCode()
	return r
}

// endpointEnv points roster at srv.
func endpointEnv(srv *etcdtest.Server) []string {
	return []string{"ROSTER_ENDPOINTS=" + strings.Join(srv.Endpoints(), ",")}
}
