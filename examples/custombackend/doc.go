// Command custombackend plugs a backend written from scratch (package
// mapbackend beside this file, a registry in a Go map) into an fx
// application through fxmodule.UseBackend, and watches the application
// register itself on start and leave on stop.
//
//	go run ./examples/custombackend
//
// See README.md beside this file.
package main
