package cluster

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// RFC 7791 §8: an SA's keys at rest are sealed, bound to where they are
// written and for which owner; any change makes them unreadable.
func TestSealBindsContext(t *testing.T) {
	key := make([]byte, KeySize)
	rand.Read(key)
	s, err := NewSealer(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := Context{Key: "/mifike/c/sas/1-2", SPIi: 1, SPIr: 2, Epoch: 7}
	secret := []byte("SK_d and friends")
	sealed, err := s.Seal(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("the plaintext is visible in the sealed value")
	}
	if pt, err := s.Open(ctx, sealed); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("Open: %q, %v", pt, err)
	}
	for name, other := range map[string]Context{
		"another key":   {Key: "/mifike/c/sas/1-3", SPIi: 1, SPIr: 2, Epoch: 7},
		"another SPI":   {Key: ctx.Key, SPIi: 1, SPIr: 3, Epoch: 7},
		"an old epoch":  {Key: ctx.Key, SPIi: 1, SPIr: 2, Epoch: 6},
		"a later epoch": {Key: ctx.Key, SPIi: 1, SPIr: 2, Epoch: 8},
	} {
		if _, err := s.Open(other, sealed); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 1
		if _, err := s.Open(ctx, bad); !errors.Is(err, ErrOpen) {
			t.Fatalf("octet %d flipped: %v", i, err)
		}
	}
	if _, err := s.Open(ctx, sealed[:10]); !errors.Is(err, ErrOpen) {
		t.Fatalf("truncated: %v", err)
	}
	other := make([]byte, KeySize)
	rand.Read(other)
	s2, _ := NewSealer(other, nil)
	if _, err := s2.Open(ctx, sealed); !errors.Is(err, ErrOpen) {
		t.Fatalf("another key-encryption key: %v", err)
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "kek")
	os.WriteFile(good, []byte("  "+string(bytes.Repeat([]byte("ab"), KeySize))+"\n"), 0o600)
	if k, err := LoadKey(good); err != nil || len(k) != KeySize || k[0] != 0xab {
		t.Fatalf("LoadKey: %x, %v", k, err)
	}
	open := filepath.Join(dir, "open")
	os.WriteFile(open, bytes.Repeat([]byte("ab"), KeySize), 0o644)
	if _, err := LoadKey(open); err == nil {
		t.Fatal("a key file readable by others was taken")
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abcd"), 0o600)
	if _, err := LoadKey(short); err == nil {
		t.Fatal("a short key was taken")
	}
}
