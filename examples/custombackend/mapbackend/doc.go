// Package mapbackend is a complete roster backend written from scratch in
// about 250 lines, comments included: a registry held in a Go map, shared by any
// number of handles in one process. It is the shape to copy when writing a
// backend for another registry: validate with Instance.Normalize, keep a
// backendkit.Feed per watched service in a backendkit.FeedGroup and a
// backendkit.StatusBoard for registration states, and prove the result with
// discoverytest.Run (see mapbackend_test.go). operator.go adds the
// optional discovery.OperatorView, which gives the backend roster's ls,
// deregister and ui, proved by discoverytest.RunOperatorView.
//
// A Registry stands for the registry server; each Backend made by
// NewBackend is one process's handle on it. When two handles register the
// same service and ID, the later writer owns it and the earlier one waits
// in discovery.StateConflict until the later one lets go.
package mapbackend
