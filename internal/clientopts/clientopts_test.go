package clientopts_test

import (
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/internal/clientopts"
	"github.com/roster-sd/roster/retry"
)

type options struct {
	clientopts.Common
	n int
}

type option func(*options)

func TestBuildSkipsNilAndKeepsOrder(t *testing.T) {
	o, err := clientopts.Build(options{Common: clientopts.Defaults()}, []option{
		func(o *options) { o.n = 1 },
		nil,
		func(o *options) { o.n *= 10 },
	}, func(options) error { return nil })
	if err != nil || o.n != 10 {
		t.Errorf("Build = n %d, %v; want 10", o.n, err)
	}
}

func TestValidateNamesTheOptionAndWrapsBoth(t *testing.T) {
	errInvalid := errors.New("pkg: invalid option")
	c := clientopts.Defaults()
	if err := c.Validate(errInvalid); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c.Retry = retry.Policy{Base: -1}
	err := c.Validate(errInvalid)
	if !errors.Is(err, errInvalid) || !errors.Is(err, retry.ErrInvalidPolicy) {
		t.Fatalf("Validate = %v; want it to wrap both sentinels", err)
	}
}

func TestSetLogger(t *testing.T) {
	var c clientopts.Common
	c.SetLogger(nil, "x")
	if c.Log == nil {
		t.Fatal("nil logger kept")
	}
	c.SetLogger(hclog.New(&hclog.LoggerOptions{Name: "app"}), "roster.cache")
	if got := c.Log.Name(); got != "app.roster.cache" {
		t.Errorf("name = %q; want app.roster.cache", got)
	}
}

func TestBuild(t *testing.T) {
	errInvalid := errors.New("pkg: invalid option")
	validate := func(o options) error {
		if o.n < 0 {
			return errInvalid
		}
		return o.Common.Validate(errInvalid)
	}
	o, err := clientopts.Build(options{Common: clientopts.Defaults(), n: 1}, []option{func(o *options) { o.n++ }}, validate)
	if err != nil || o.n != 2 {
		t.Errorf("Build = %+v, %v; want n 2", o, err)
	}
	if _, err := clientopts.Build(options{Common: clientopts.Defaults()}, []option{func(o *options) { o.n = -1 }}, validate); !errors.Is(err, errInvalid) {
		t.Errorf("Build with an invalid option = %v; want errInvalid", err)
	}
}
