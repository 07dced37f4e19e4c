package nats

import (
	"strings"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/internal/configcheck"
	"github.com/roster-sd/roster/internal/envconfig"
)

// ConfigFromEnv builds a Config from the ROSTER_* environment variables,
// read through lookup (pass os.LookupEnv): the variables every networked
// backend shares (backends.EnvEndpoints, EnvTTL, EnvTimeout, EnvCACert,
// EnvCert, EnvKey, EnvUsername, EnvPassword) and the NATS backend's own
// (backends.EnvBucket, EnvToken, EnvCredentials, EnvNKeySeed). EnvTimeout
// sets both DialTimeout and RequestTimeout. Unset and empty variables
// leave their field zero, that is at its default. A malformed value gives
// an error wrapping ErrInvalidConfig that names the variable; the
// password's and the token's values never appear in an error.
//
// It reads only the variables; the files are read when New builds the
// Backend.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	common, err := envconfig.ReadCommon(lookup, "comma-separated nats:// or tls:// URLs", configcheck.NATSEndpoint, configcheck.NATSTTL)
	if err != nil {
		return Config{}, configError("%v", err)
	}
	r := envconfig.NewReader(lookup)
	c := Config{
		Endpoints:       common.Endpoints,
		TTL:             common.TTL,
		DialTimeout:     common.Timeout,
		RequestTimeout:  common.Timeout,
		CACertFile:      common.CACertFile,
		CertFile:        common.CertFile,
		KeyFile:         common.KeyFile,
		Username:        common.Username,
		Password:        common.Password,
		Bucket:          r.String(backends.EnvBucket),
		Token:           r.String(backends.EnvToken),
		CredentialsFile: r.String(backends.EnvCredentials),
		NKeySeedFile:    r.String(backends.EnvNKeySeed),
	}
	if c.Bucket != "" && !validBucket(c.Bucket) {
		return Config{}, configError("%s is %q; want letters, digits, '-' and '_' only", backends.EnvBucket, c.Bucket)
	}
	var set []string
	for _, v := range []struct{ name, value string }{
		{backends.EnvUsername, c.Username},
		{backends.EnvToken, c.Token},
		{backends.EnvCredentials, c.CredentialsFile},
		{backends.EnvNKeySeed, c.NKeySeedFile},
	} {
		if v.value != "" {
			set = append(set, v.name)
		}
	}
	if len(set) > 1 {
		return Config{}, configError("%s are all set; they exclude each other: give one way to authenticate",
			strings.Join(set, " and "))
	}
	return c, nil
}
