//go:build !race

package main

// raceEnabled reports whether the tests run with the race detector, so that
// TestMain builds the roster binary with it too.
const raceEnabled = false
