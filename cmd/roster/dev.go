package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/backends/etcd/embedded"
)

func (a *app) devCmd() *cobra.Command {
	var (
		port    int
		dataDir string
		ui      string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a single-member etcd in-process for development",
		Long: `dev runs a real single-member etcd inside this process, on 127.0.0.1, so that
a developer has a registry with nothing installed. It prints the endpoint
to use and serves until Ctrl+C or SIGTERM, then stops etcd cleanly.

The data lives in a temporary directory removed on exit, unless --data-dir
names a directory to keep it in (and find it again next time). The server is
tuned for development, not production: it does not fsync its writes.

With --ui, dev also serves the web view of roster ui on 127.0.0.1:8500 (or
--ui=HOST:PORT), showing the instances registered under the default prefix.

The connection flags (--endpoints and the rest) do not apply to dev.`,
		Example: `  roster dev
  roster dev --ui
  roster dev --port 12379 --data-dir ~/.roster-dev --ui=127.0.0.1:9000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if port < 0 || port > 65535 {
				return inputErrorf("invalid --port %d: want 1..65535, or 0 for any free port", port)
			}
			var opts []embedded.Option
			if port != 0 {
				// Say plainly when the port is taken; etcd's own error is
				// buried in its startup failure.
				ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
				if err != nil {
					return fmt.Errorf("cannot serve on 127.0.0.1:%d (is another etcd running? choose another --port): %w", port, err)
				}
				_ = ln.Close()
				opts = append(opts, embedded.WithClientPort(port))
			}
			if dataDir != "" {
				opts = append(opts, embedded.WithDataDir(dataDir))
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
			if v, _ := cmd.Flags().GetBool("verbose"); v {
				opts = append(opts, embedded.WithLogOutput(a.stderr))
			}
			srv, err := embedded.New(opts...)
			if err != nil {
				return fmt.Errorf("start etcd: %w", err)
			}
			ep := srv.Endpoints()[0]
			fmt.Fprintf(a.stdout, "etcd is serving on %s\n", ep)
			if dataDir != "" {
				fmt.Fprintf(a.stdout, "data in %s (kept)\n", srv.DataDir())
			} else {
				fmt.Fprintf(a.stdout, "data in %s (removed on exit)\n", srv.DataDir())
			}
			fmt.Fprintf(a.stdout, "export ROSTER_ENDPOINTS=%s\n", ep)
			var uiDone <-chan error
			if uiLn != nil {
				if uiDone, err = a.devUI(cmd.Context(), uiLn, ep, a.logger(cmd.Flags())); err != nil {
					_ = srv.Close()
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
			fmt.Fprintln(a.stdout, "stopping etcd")
			if err := srv.Stop(); err != nil {
				_ = srv.Close()
				return fmt.Errorf("stop etcd: %w", err)
			}
			if err := srv.Close(); err != nil {
				return fmt.Errorf("stop etcd: %w", err)
			}
			fmt.Fprintln(a.stdout, "etcd stopped")
			return nil
		},
	}
	cmd.Flags().IntVar(&port, "port", 2379, "client port on 127.0.0.1; 0 picks a free one")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "keep etcd's data in this directory (default: a temporary one)")
	cmd.Flags().StringVar(&ui, "ui", "", "also serve the web view (roster ui) on this host:port; --ui alone: "+defaultUIListen)
	cmd.Flags().Lookup("ui").NoOptDefVal = defaultUIListen
	return cmd
}
