package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrForeignBackup is returned by RestoreBackup given a backup taken from
// another server (or nil).
var ErrForeignBackup = errors.New("embedded: backup not taken from this server")

// The registry faults that a restart with the same data does not cover: a
// server that comes back emptied, and one rolled back to an earlier copy
// of its data. Both keep the server's port, options and credentials, so a
// client reconnects to the same URL and finds a different store.

// Wipe stops the server (if running), deletes everything JetStream
// stored (every stream, so every key-value bucket), and starts it again on
// the same port with the same options: a server rebuilt from an empty
// data directory. It returns once the server accepts connections.
func (s *Server) Wipe() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("embedded: wipe: %w", ErrNotRunning)
	}
	s.stopLocked()
	if err := emptyDir(s.storeDir); err != nil {
		return fmt.Errorf("embedded: wipe: %w", err)
	}
	return s.start()
}

// Backup is a copy of a Server's JetStream store taken at one moment
// (Server.Backup), which Server.RestoreBackup puts back. Its Release
// deletes the copy.
type Backup struct {
	owner *Server
	dir   string
}

// Backup copies the JetStream store while the server runs, as a snapshot
// of the machine would: it holds every write the server acknowledged
// before Backup was called (a stream of one replica writes each message
// to its file before acknowledging it), and the server goes on
// undisturbed. The caller must Release it.
func (s *Server) Backup() (*Backup, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("embedded: backup: %w", ErrNotRunning)
	}
	dir, err := os.MkdirTemp("", "roster-nats-backup-")
	if err != nil {
		return nil, fmt.Errorf("embedded: backup: %w", err)
	}
	// The server may remove a file (a block it compacted) while the
	// copy walks the store: start the copy again then.
	for attempt := 1; ; attempt++ {
		err = os.CopyFS(dir, os.DirFS(s.storeDir))
		if err == nil {
			return &Backup{owner: s, dir: dir}, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 3 {
			break
		}
		if err = emptyDir(dir); err != nil {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("embedded: backup: %w", err)
}

// Release deletes the copy. It is safe to call more than once.
func (b *Backup) Release() error {
	if err := os.RemoveAll(b.dir); err != nil {
		return fmt.Errorf("embedded: release backup: %w", err)
	}
	return nil
}

// RestoreBackup stops the server (if running), replaces its
// JetStream store with the copy b, and starts it again on the same port
// with the same options: a server restored from a backup, which has lost
// every write made after b was taken. b stays usable for another restore.
// It returns once the server accepts connections.
func (s *Server) RestoreBackup(b *Backup) error {
	if b == nil || b.owner != s {
		return ErrForeignBackup
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("embedded: restore backup: %w", ErrNotRunning)
	}
	s.stopLocked()
	if err := emptyDir(s.storeDir); err != nil {
		return fmt.Errorf("embedded: restore backup: %w", err)
	}
	if err := os.CopyFS(s.storeDir, os.DirFS(b.dir)); err != nil {
		return fmt.Errorf("embedded: restore backup: %w", err)
	}
	return s.start()
}

// emptyDir removes everything inside dir, keeping dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
