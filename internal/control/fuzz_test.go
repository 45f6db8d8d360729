package control

import (
	"encoding/json"
	"log/slog"
	"testing"
)

// FuzzServeLine feeds arbitrary request lines to the decoder and
// dispatcher: no line may panic the server, and every answer is a valid
// response with a code when it fails.
func FuzzServeLine(f *testing.F) {
	for _, seed := range []string{
		`{"cmd":"list-sas"}`, `{"cmd":"list-conns"}`, `{"cmd":"initiate","conn":"home","child":"net"}`,
		`{"cmd":"initiate","conn":"missing"}`, `{"cmd":"terminate","ike_sa":404}`,
		`{"cmd":"terminate","ike_sa":3,"child_spi":3248665540}`, `{"cmd":"terminate-conn","conn":"home"}`,
		`{"cmd":"rekey","ike_sa":13}`, `{"cmd":"reload"}`, `{"cmd":"events"}`, `{"cmd":"x","ike_sa":-1}`,
		`{"cmd":"list-sas"} 1`, `null`, `[]`, `{`, "\x00", `{"cmd":"terminate","ike_sa":1e400}`,
	} {
		f.Add([]byte(seed))
	}
	b := newFakeBackend()
	b.sas, b.conns = fixtureSAs(), fixtureConns()
	s := &server{b: b, log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, line []byte) {
		resp, _ := s.handle(line)
		if !resp.OK && resp.Code == "" {
			t.Fatalf("%q: failure without a code: %+v", line, resp)
		}
		if _, err := json.Marshal(resp); err != nil {
			t.Fatalf("%q: response does not encode: %v", line, err)
		}
	})
}
