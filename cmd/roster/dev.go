package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd/embedded"
	natsembedded "github.com/roster-sd/roster/backends/nats/embedded"
)

// Default client ports of roster dev.
const (
	devEtcdPort = 2379
	devNATSPort = 4222
)

func (a *app) devCmd() *cobra.Command {
	var (
		port    int
		dataDir string
		ui      string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a single-member etcd (or NATS) in-process for development",
		Long: `dev runs a real registry inside this process, on 127.0.0.1, so that a
developer has one with nothing installed: a single-member etcd, or with
--backend nats (or ROSTER_BACKEND=nats) a nats-server with JetStream. It
prints the settings to export and serves until Ctrl+C or SIGTERM, then stops
the server cleanly.

The data lives in a temporary directory removed on exit, unless --data-dir
names a directory to keep it in (and find it again next time). The server is
tuned for development, not production: etcd does not fsync its writes.

With --ui, dev also serves the web view of roster ui on 127.0.0.1:8500 (or
--ui=HOST:PORT), showing the instances registered in the development
registry (etcd's default prefix, NATS's default bucket).

The other connection flags (--endpoints and the rest) do not apply to dev.`,
		Example: `  roster dev
  roster dev --ui
  roster dev --port 12379 --data-dir ~/.roster-dev --ui=127.0.0.1:9000
  roster dev --backend nats --ui`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			backend, err := backendName(cmd.Flags())
			if err != nil {
				return err
			}
			if port < 0 || port > 65535 {
				return inputErrorf("invalid --port %d: want 1..65535, or 0 for any free port", port)
			}
			name, defPort := "etcd", devEtcdPort
			if backend == backends.NATS {
				name, defPort = "NATS", devNATSPort
			}
			if !cmd.Flags().Changed("port") {
				port = defPort
			}
			if port != 0 {
				// Say plainly when the port is taken; the server's own
				// error is buried in its startup failure.
				ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
				if err != nil {
					return fmt.Errorf("cannot serve on 127.0.0.1:%d (is another %s running? choose another --port): %w", port, name, err)
				}
				_ = ln.Close()
			}
			var uiLn net.Listener
			if ui != "" {
				ln, err := a.listenUI(ui)
				if err != nil {
					return err
				}
				uiLn = ln
				defer uiLn.Close()
			}
			verbose, _ := cmd.Flags().GetBool("verbose")
			var srv devServer
			if backend == backends.NATS {
				srv, err = a.startDevNATS(port, dataDir, verbose)
			} else {
				srv, err = a.startDevEtcd(port, dataDir, verbose)
			}
			if err != nil {
				return fmt.Errorf("start %s: %w", name, err)
			}
			fmt.Fprintf(a.stdout, "%s is serving on %s\n", name, srv.endpoint)
			if dataDir != "" {
				fmt.Fprintf(a.stdout, "data in %s (kept)\n", srv.dataDir)
			} else {
				fmt.Fprintf(a.stdout, "data in %s (removed on exit)\n", srv.dataDir)
			}
			if backend == backends.NATS {
				fmt.Fprintf(a.stdout, "export %s=%s\n", backends.EnvBackend, backends.NATS)
			}
			fmt.Fprintf(a.stdout, "export %s=%s\n", backends.EnvEndpoints, srv.endpoint)
			var uiDone <-chan error
			if uiLn != nil {
				if uiDone, err = a.devUI(cmd.Context(), uiLn, backend, srv.endpoint, a.logger(cmd.Flags())); err != nil {
					_ = srv.stop()
					return err
				}
			}
			fmt.Fprintln(a.stdout, "press Ctrl+C to stop")

			<-cmd.Context().Done()
			if uiDone != nil {
				if err := <-uiDone; err != nil {
					a.warnf("%v", err)
				}
			}
			fmt.Fprintf(a.stdout, "stopping %s\n", name)
			if err := srv.stop(); err != nil {
				return fmt.Errorf("stop %s: %w", name, err)
			}
			fmt.Fprintf(a.stdout, "%s stopped\n", name)
			return nil
		},
	}
	cmd.Flags().IntVar(&port, "port", devEtcdPort, "client port on 127.0.0.1; 0 picks a free one")
	cmd.Flags().Lookup("port").DefValue = strconv.Itoa(devEtcdPort) + " for etcd, " + strconv.Itoa(devNATSPort) + " for NATS"
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "keep the registry's data in this directory (default: a temporary one)")
	cmd.Flags().StringVar(&ui, "ui", "", "also serve the web view (roster ui) on this host:port; --ui alone: "+defaultUIListen)
	cmd.Flags().Lookup("ui").NoOptDefVal = defaultUIListen
	return cmd
}

// devServer is the registry roster dev runs.
type devServer struct {
	endpoint string
	dataDir  string
	stop     func() error // stops the server and releases everything
}

func (a *app) startDevEtcd(port int, dataDir string, verbose bool) (devServer, error) {
	var opts []embedded.Option
	if port != 0 {
		opts = append(opts, embedded.WithClientPort(port))
	}
	// Without --data-dir, a temporary folder named after roster dev (the
	// embedded package would name it after etcdtest), removed on exit.
	temp := ""
	if dataDir == "" {
		dir, err := os.MkdirTemp("", "roster-dev-etcd-")
		if err != nil {
			return devServer{}, fmt.Errorf("create a data directory: %w", err)
		}
		temp, dataDir = dir, dir
	}
	removeTemp := func() error {
		if temp == "" {
			return nil
		}
		return os.RemoveAll(temp)
	}
	opts = append(opts, embedded.WithDataDir(dataDir))
	if verbose {
		opts = append(opts, embedded.WithLogOutput(a.stderr))
	}
	srv, err := embedded.New(opts...)
	if err != nil {
		_ = removeTemp()
		return devServer{}, err
	}
	return devServer{
		endpoint: srv.Endpoints()[0],
		dataDir:  srv.DataDir(),
		stop: func() error {
			err := srv.Stop()
			return errors.Join(err, srv.Close(), removeTemp())
		},
	}, nil
}

func (a *app) startDevNATS(port int, dataDir string, verbose bool) (devServer, error) {
	var opts []natsembedded.Option
	if port != 0 {
		opts = append(opts, natsembedded.WithPort(port))
	}
	if dataDir != "" {
		opts = append(opts, natsembedded.WithStoreDir(dataDir))
	}
	if verbose {
		opts = append(opts, natsembedded.WithLogOutput(a.stderr))
	}
	srv, err := natsembedded.New(opts...)
	if err != nil {
		return devServer{}, err
	}
	return devServer{endpoint: srv.URL(), dataDir: srv.StoreDir(), stop: srv.Close}, nil
}
