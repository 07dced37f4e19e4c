// Command tour is the top-level README's tour as one program: every Go
// snippet in the README is quoted from this folder's main.go, between a
// "// README:<name>" line and the next "// README:end" line, and
// main_test.go checks both that the README's text matches this file and
// that each function does what the README says, against a real etcd.
//
//	go run ./examples/tour                            # an embedded etcd, nothing to install
//	go run ./examples/tour -endpoints 127.0.0.1:2379  # yours (roster dev, say)
package main
