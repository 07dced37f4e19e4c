package embedded_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats/embedded"
)

func ExampleNew() {
	srv, err := embedded.New()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	ctx := context.Background()
	nc, kv := bucket(srv.URL())
	if _, err := kv.Put(ctx, "en", []byte("hello")); err != nil {
		log.Fatal(err)
	}
	nc.Close()

	// The data survives a restart, on the same URL.
	if err := srv.Restart(); err != nil {
		log.Fatal(err)
	}
	nc, kv = bucket(srv.URL())
	defer nc.Close()
	e, err := kv.Get(ctx, "en")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", e.Value())
	// Output: hello
}

// bucket connects to url and opens (or creates) the bucket "greetings".
func bucket(url string) (*nats.Conn, jetstream.KeyValue) {
	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "greetings"})
	if err != nil {
		log.Fatal(err)
	}
	return nc, kv
}
