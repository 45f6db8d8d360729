package main

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

func TestDecodeCommand(t *testing.T) {
	m := &wire.Message{Header: wire.Header{SPIi: 0x1122334455667788, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagInitiator},
		Payloads: []wire.Payload{&wire.Nonce{Data: make([]byte, 32)}, wire.NewNotify(wire.NotifyCloneIKESASupported, nil)}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	hexArg := strings.ToUpper(hex.EncodeToString(append([]byte{0, 0, 0, 0}, b...)))
	if code := run([]string{"decode", hexArg}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"1122334455667788_i", "IKE_SA_INIT request 0 [ Nonce N(CLONE_IKE_SA_SUPPORTED) ]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"decode", "--json", hexArg}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"exchange":"IKE_SA_INIT"`) {
		t.Fatalf("json: %d %s", code, out.String())
	}
	if code := run([]string{"decode", "00"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "shorter than the 28-octet IKE header") {
		t.Fatalf("bad input: exit %d, stderr %q", code, errb.String())
	}
	if code := run([]string{"nope"}, &out, &errb); code != 2 {
		t.Fatalf("unknown command exit %d", code)
	}
}

// Issue 19: a bare "mifike" is a usage error (exit 2, usage on stderr);
// "mifike version" and "--version" say which build this is.
func TestBareCommandAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), "Usage:") {
		t.Fatalf("bare mifike: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	for _, args := range [][]string{{"version"}, {"--version"}, {"-V"}} {
		out.Reset()
		if code := run(args, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "mifike ") || !strings.Contains(out.String(), "go1.") {
			t.Fatalf("%v: exit %d, %q", args, code, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"version", "--json"}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"version":`) {
		t.Fatalf("version --json: exit %d, %q", code, out.String())
	}
	if code := run([]string{"version", "--bogus"}, &out, &errb); code != 2 {
		t.Fatalf("version --bogus: exit %d", code)
	}
}
