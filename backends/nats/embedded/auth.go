package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// WithNKeyUser makes the server require NKey authentication, accepting
// the user whose public key (a "U..." key, see nkeys) is publicKey. It
// excludes WithUser, WithToken and WithOperator.
func WithNKeyUser(publicKey string) Option {
	return func(o *options) {
		if _, err := nkeys.Decode(nkeys.PrefixByteSeed, []byte(publicKey)); err == nil {
			// Not quoted: a seed is a secret.
			o.errs = append(o.errs, errors.New("WithNKeyUser: given a seed; want the user's public key (kp.PublicKey())"))
			return
		}
		if !nkeys.IsValidPublicUserKey(publicKey) {
			o.errs = append(o.errs, fmt.Errorf("WithNKeyUser: %q is not an NKey user public key", publicKey))
			return
		}
		o.nkeyUser = publicKey
	}
}

// WithOperator makes the server use decentralized authentication (JWTs),
// as production NATS deployments managed with nsc do: it trusts a fresh
// operator, whose account may use JetStream, and accepts that account's
// users. Server.CredentialsFile is a credentials file (a user JWT and its
// NKey seed) for one of them. It excludes WithUser, WithToken and
// WithNKeyUser, and does not apply to a Cluster.
func WithOperator() Option {
	return func(o *options) { o.operator = true }
}

// operator is the trust chain of a server made WithOperator.
type operator struct {
	claims   *jwt.OperatorClaims
	accounts map[string]string // account public key -> its JWT
	system   string            // the system account's public key
	credsDir string            // holds the credentials file; removed by Close
	creds    string            // the credentials file
}

// newOperator makes an operator, a system account, an application account
// allowed to use JetStream without limits, and a user of that account
// whose credentials file it writes.
func newOperator() (_ *operator, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("embedded: operator: %w", err)
		}
	}()
	opKey, err := nkeys.CreateOperator()
	if err != nil {
		return nil, err
	}
	opPub, err := opKey.PublicKey()
	if err != nil {
		return nil, err
	}
	op := &operator{claims: jwt.NewOperatorClaims(opPub), accounts: make(map[string]string)}
	op.claims.Name = "roster-embedded"
	account := func(name string, jetStream bool) (nkeys.KeyPair, string, error) {
		key, err := nkeys.CreateAccount()
		if err != nil {
			return nil, "", err
		}
		pub, err := key.PublicKey()
		if err != nil {
			return nil, "", err
		}
		claims := jwt.NewAccountClaims(pub)
		claims.Name = name
		if jetStream {
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := claims.Encode(opKey)
		if err != nil {
			return nil, "", err
		}
		op.accounts[pub] = token
		return key, pub, nil
	}
	if _, op.system, err = account("SYS", false); err != nil {
		return nil, err
	}
	appKey, _, err := account("APP", true)
	if err != nil {
		return nil, err
	}
	userKey, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	userPub, err := userKey.PublicKey()
	if err != nil {
		return nil, err
	}
	user := jwt.NewUserClaims(userPub)
	user.Name = "roster"
	userJWT, err := user.Encode(appKey)
	if err != nil {
		return nil, err
	}
	seed, err := userKey.Seed()
	if err != nil {
		return nil, err
	}
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		return nil, err
	}
	if op.credsDir, err = os.MkdirTemp("", "roster-nats-creds-"); err != nil {
		return nil, err
	}
	op.creds = filepath.Join(op.credsDir, "roster.creds")
	if err := os.WriteFile(op.creds, creds, 0o600); err != nil {
		os.RemoveAll(op.credsDir)
		return nil, err
	}
	return op, nil
}

// apply configures so to trust the operator.
func (op *operator) apply(so *server.Options) error {
	resolver := &server.MemAccResolver{}
	for pub, token := range op.accounts {
		if err := resolver.Store(pub, token); err != nil {
			return fmt.Errorf("embedded: operator: %w", err)
		}
	}
	so.TrustedOperators = []*jwt.OperatorClaims{op.claims}
	so.AccountResolver = resolver
	so.SystemAccount = op.system
	return nil
}

// CredentialsFile returns the credentials file of a user of a server made
// WithOperator, or "" for another server. It stays until Close.
func (s *Server) CredentialsFile() string {
	if s.operator == nil {
		return ""
	}
	return s.operator.creds
}

// checkAuth reports options that exclude each other.
func (o *options) checkAuth() error {
	n := 0
	for _, set := range []bool{o.user != "", o.token != "", o.nkeyUser != "", o.operator} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("WithUser, WithToken, WithNKeyUser and WithOperator exclude each other")
	}
	return nil
}

// removeCredentials removes the credentials file of a server made
// WithOperator.
func (s *Server) removeCredentials() {
	if s.operator != nil {
		os.RemoveAll(s.operator.credsDir)
	}
}
