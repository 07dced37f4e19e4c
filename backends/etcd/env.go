package etcd

import (
	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/internal/configcheck"
	"github.com/roster-sd/roster/internal/envconfig"
)

// ConfigFromEnv builds a Config from the ROSTER_* environment variables
// (backends.EnvEndpoints, EnvPrefix, EnvTTL, EnvTimeout, EnvCACert,
// EnvCert, EnvKey, EnvUsername, EnvPassword; EnvTimeout sets both
// DialTimeout and RequestTimeout), read through lookup (pass
// os.LookupEnv).
// Unset and empty variables leave their field zero, that is at its
// default. A malformed value gives an error wrapping ErrInvalidConfig that
// names the variable; the password's value never appears in an error.
//
// It reads only the variables; the certificate files are read when New
// builds the Backend.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	common, err := envconfig.ReadCommon(lookup, "comma-separated host:port or URLs", configcheck.EtcdEndpoint, configcheck.EtcdTTL)
	if err != nil {
		return Config{}, configError("%v", err)
	}
	c := Config{
		Endpoints:      common.Endpoints,
		TTL:            common.TTL,
		DialTimeout:    common.Timeout,
		RequestTimeout: common.Timeout,
		CACertFile:     common.CACertFile,
		CertFile:       common.CertFile,
		KeyFile:        common.KeyFile,
		Username:       common.Username,
		Password:       common.Password,
	}
	if c.Prefix = envconfig.NewReader(lookup).String(backends.EnvPrefix); c.Prefix != "" {
		if reason := prefixProblem(c.Prefix); reason != "" {
			return Config{}, configError("%s %q %s", backends.EnvPrefix, c.Prefix, reason)
		}
	}
	return c, nil
}
