package retry_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roster-sd/roster/retry"
)

func ExamplePolicy_Backoff() {
	p := retry.Default()
	p.Jitter = 0 // deterministic output; keep jitter in production
	b := p.Backoff()
	for range 7 {
		d, _ := b.Next()
		fmt.Print(d, " ")
	}
	fmt.Println()
	// Output:
	// 1s 2s 4s 8s 16s 30s 30s
}

func ExamplePolicy_Do() {
	p := retry.Policy{Base: time.Millisecond, Max: 10 * time.Millisecond}
	attempts := 0
	err := p.Do(context.Background(),
		func(ctx context.Context) error {
			attempts++
			if attempts < 3 {
				return errors.New("connection refused")
			}
			return nil
		},
		retry.OnFailure(func(f retry.Failure) {
			fmt.Printf("attempt %d failed: %v; retrying in %v\n", f.Attempt, f.Err, f.Delay)
		}))
	fmt.Println("err:", err, "after", attempts, "attempts")

	err = p.Do(context.Background(), func(ctx context.Context) error {
		return retry.Permanent(errors.New("invalid instance"))
	})
	fmt.Println("err:", err)
	// Output:
	// attempt 1 failed: connection refused; retrying in 1ms
	// attempt 2 failed: connection refused; retrying in 2ms
	// err: <nil> after 3 attempts
	// err: invalid instance
}
