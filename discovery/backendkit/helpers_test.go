package backendkit_test

import "github.com/roster-sd/roster/discovery"

func inst(service, id string) discovery.Instance {
	return discovery.Instance{Service: service, ID: id, Address: "10.0.0.7:8080"}
}

func keys(set []discovery.Instance) []string {
	out := make([]string, 0, len(set))
	for _, in := range set {
		out = append(out, in.Key().String())
	}
	return out
}
