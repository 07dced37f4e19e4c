package etcdtest_test

import (
	"context"
	"fmt"
	"log"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

func ExampleNew() {
	srv, err := etcdtest.New()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	cli, err := clientv3.New(srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	ctx := context.Background()
	if _, err := cli.Put(ctx, "/greeting", "hello"); err != nil {
		log.Fatal(err)
	}

	// The data survives a restart on the same endpoint.
	if err := srv.Restart(); err != nil {
		log.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", resp.Kvs[0].Value)
	// Output: hello
}
