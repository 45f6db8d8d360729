package radius

import (
	"fmt"
	"log/slog"
)

// Secret is a RADIUS shared secret (RFC 2865 §3). It prints as
// "[redacted]" with every fmt verb, in slog and as text, so a secret put
// in a log line or an error by mistake does not leak.
type Secret struct{ b []byte }

// NewSecret makes a Secret of s.
func NewSecret(s string) Secret { return Secret{b: []byte(s)} }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return len(s.b) == 0 }

const redacted = "[redacted]"

// String implements fmt.Stringer without the secret.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v) without the secret.
func (Secret) GoString() string { return "radius.Secret{" + redacted + "}" }

// Format implements fmt.Formatter so that %x, %d and the others print
// nothing of the secret either.
func (Secret) Format(f fmt.State, _ rune) { f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler without the secret.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// UnmarshalText implements encoding.TextUnmarshaler, for configuration
// files.
func (s *Secret) UnmarshalText(text []byte) error {
	s.b = append([]byte(nil), text...)
	return nil
}
