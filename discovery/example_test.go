package discovery_test

import (
	"errors"
	"fmt"

	"github.com/roster-sd/roster/discovery"
)

func ExampleInstance_Validate() {
	in := discovery.Instance{Service: "payments", Address: "10.0.0.7:80800"}
	err := in.Validate()
	fmt.Println(err)

	var fe *discovery.FieldError
	if errors.As(err, &fe) {
		fmt.Println("field:", fe.Field)
	}
	fmt.Println(errors.Is(err, discovery.ErrInvalidInstance))
	// Output:
	// discovery: invalid instance: Address has port "80800"; want a number in 1..65535
	// field: Address
	// true
}

func ExampleIDFromAddress() {
	for _, addr := range []string{"10.0.0.7:8080", "[::1]:8080", "db-1.internal:5432"} {
		fmt.Println(discovery.IDFromAddress(addr))
	}
	// Output:
	// 10.0.0.7-8080
	// --1-8080
	// db-1.internal-5432
}

func ExampleNormalizeSet() {
	set := discovery.NormalizeSet([]discovery.Instance{
		{Service: "payments", ID: "p-2", Address: "10.0.0.8:8080"},
		{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"},
		{Service: "payments", ID: "p-2", Address: "10.0.0.9:8080"}, // the last one wins
	})
	for _, in := range set {
		fmt.Println(in.Key(), in.Address)
	}
	// Output:
	// payments/p-1 10.0.0.7:8080
	// payments/p-2 10.0.0.9:8080
}

func ExampleRoutable() {
	set := []discovery.Instance{
		{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080", Condition: discovery.ConditionNotReady, Reason: "warming up"},
		{Service: "payments", ID: "p-2", Address: "10.0.0.8:8080", Weight: 300, Zone: "eu-west-1a"},
		{Service: "payments", ID: "p-3", Address: "10.0.0.9:8080", Condition: discovery.ConditionDraining},
	}
	routed, fallback := discovery.Routable(set)
	for _, in := range routed {
		fmt.Println(in.ID, in.Condition, in.EffectiveWeight(), in.Zone)
	}
	fmt.Println("fallback:", fallback)

	// None serving: the not-ready ones rather than nothing.
	routed, fallback = discovery.Routable([]discovery.Instance{set[0], set[2]})
	fmt.Println(routed[0].ID, routed[0].Condition, "fallback:", fallback)
	// Output:
	// p-2 serving 300 eu-west-1a
	// fallback: false
	// p-1 not_ready fallback: true
}
