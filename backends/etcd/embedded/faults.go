package embedded

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNotSingle is returned by Wipe, Backup and RestoreBackup on a member of
// a Cluster: a member rebuilt alone would not rejoin its peers.
var ErrNotSingle = errors.New("embedded: only a single-member server can be wiped or restored")

// ErrForeignBackup is returned by RestoreBackup given a backup taken from
// another server, or one already released.
var ErrForeignBackup = errors.New("embedded: backup not taken from this server")

// Wipe rebuilds the server from an empty data directory, as an operator
// does who replaces a lost disk: etcd is stopped, its data directory
// emptied, and etcd started again on the same client and peer addresses
// with the same name and cluster token. Its member and cluster IDs, which
// etcd derives from those, are therefore the same as before, while every
// key, lease and revision is gone: the store starts again at revision 1.
// With WithAuth, the user and the root role are set up again, as they were
// at start. Wipe returns once etcd is ready; it returns ErrNotSingle for a
// member of a Cluster and ErrClosed after Close.
func (s *Server) Wipe() error {
	if s.peerGate != nil {
		return ErrNotSingle
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.isClosed() {
		return ErrClosed
	}
	s.stop(false)
	if err := emptyDir(s.dataDir); err != nil {
		return err
	}
	if err := s.start(); err != nil {
		return err
	}
	return s.setupAuthIfAsked()
}

// Backup is a copy of a server's data at the moment Server.Backup took it,
// as a backup of a member's data directory or a snapshot of its machine
// holds: the keys, the leases and the revision of that moment. Pass it to
// Server.RestoreBackup, as many times as needed. It lives on disk until the
// server is closed, or until Release.
type Backup struct {
	owner *Server
	dir   string
}

// Release removes the backup's copy of the data. It is safe to call more
// than once.
func (b *Backup) Release() error {
	s := b.owner
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if b.dir == "" {
		return nil
	}
	dir := b.dir
	b.dir = ""
	for i, d := range s.ownedDirs {
		if d == dir {
			s.ownedDirs = append(s.ownedDirs[:i:i], s.ownedDirs[i+1:]...)
			break
		}
	}
	return removeAll([]string{dir})
}

// Backup copies the server's data as it is now, without stopping etcd: a
// consistent snapshot of its key-value store and a copy of its write-ahead
// log, which etcd replays over the store when it starts from them. It
// returns ErrNotSingle for a member of a Cluster, ErrClosed after Close,
// and an error while the server is stopped.
func (s *Server) Backup() (*Backup, error) {
	if s.peerGate != nil {
		return nil, ErrNotSingle
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	e := s.Etcd()
	if e == nil {
		return nil, errors.New("embedded: backup: server stopped")
	}
	dir, err := os.MkdirTemp("", "etcdtest-backup-")
	if err != nil {
		return nil, fmt.Errorf("embedded: backup: %w", err)
	}
	if err := s.copyLive(e.Server.Backend().Snapshot(), dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.ownedDirs = append(s.ownedDirs, dir)
	return &Backup{owner: s, dir: dir}, nil
}

// snapshotter is the part of etcd's backend snapshot that copyLive uses.
type snapshotter interface {
	WriteTo(w io.Writer) (int64, error)
	Close() error
}

// copyLive writes the store's snapshot snap as member/snap/db under dir,
// then copies the rest of the data directory (the write-ahead log, raft's
// snapshots) next to it. The log is copied after the store, so it holds
// every entry the store has applied, and etcd skips those on start.
func (s *Server) copyLive(snap snapshotter, dir string) error {
	defer snap.Close()
	dbRel := filepath.Join("member", "snap", "db")
	dbPath := filepath.Join(dir, dbRel)
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		return fmt.Errorf("embedded: backup: %w", err)
	}
	f, err := os.OpenFile(dbPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("embedded: backup: %w", err)
	}
	if _, err := snap.WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("embedded: backup: snapshot the store: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("embedded: backup: %w", err)
	}
	return copyTree(s.dataDir, dir, func(rel string) bool { return rel == dbRel })
}

// RestoreBackup puts the server back to the moment b was taken, as an
// operator does who restores a member from a backup: etcd is stopped, its
// data directory replaced by the backup's copy, and etcd started again on
// the same addresses. Keys and leases written since the backup are gone;
// leases the backup holds are restored with a fresh TTL, as after any
// restart. It returns once etcd is ready; it returns ErrNotSingle for a
// member of a Cluster, ErrForeignBackup for a backup of another server or
// one released, and ErrClosed after Close.
func (s *Server) RestoreBackup(b *Backup) error {
	if s.peerGate != nil {
		return ErrNotSingle
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if b == nil || b.owner != s || b.dir == "" {
		return ErrForeignBackup
	}
	if s.isClosed() {
		return ErrClosed
	}
	s.stop(false)
	if err := emptyDir(s.dataDir); err != nil {
		return err
	}
	if err := copyTree(b.dir, s.dataDir, nil); err != nil {
		return err
	}
	return s.start()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// setupAuthIfAsked enables authentication as New does with WithAuth.
func (s *Server) setupAuthIfAsked() error {
	if s.opts.user == "" {
		return nil
	}
	return setupAuth(s.baseClientConfig(s.Endpoints()), s.opts.user, s.opts.password)
}

// emptyDir removes everything inside dir, keeping dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("embedded: empty data directory: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("embedded: empty data directory: %w", err)
		}
	}
	return nil
}

// copyTree copies the directories and regular files under src into dst,
// skipping the paths (relative to src) for which skip returns true.
func copyTree(src, dst string, skip func(rel string) bool) error {
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if skip != nil && skip(rel) {
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFile(path, target)
	})
	if err != nil {
		return fmt.Errorf("embedded: copy %s: %w", src, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
