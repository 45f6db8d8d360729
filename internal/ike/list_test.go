package ike_test

import (
	"encoding/json"
	"testing"

	"github.com/mifike/mifike/internal/ike"
)

// An IKE SA's state travels as its name (the control API's JSON, the
// CLI, metrics labels) and reads back as the same typed state.
func TestSAStateText(t *testing.T) {
	for s, name := range map[ike.SAState]string{ike.StateConnecting: "CONNECTING", ike.StateEstablished: "ESTABLISHED",
		ike.StateRekeyed: "REKEYED", ike.StateDeleting: "DELETING", ike.StateDestroying: "DESTROYING"} {
		if s.String() != name {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), name)
		}
		b, err := json.Marshal(s)
		if err != nil || string(b) != `"`+name+`"` {
			t.Errorf("JSON of %s: %s, %v", name, b, err)
		}
		var back ike.SAState
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Errorf("%s read back as %v, %v", b, back, err)
		}
	}
	var s ike.SAState
	if err := json.Unmarshal([]byte(`"UP"`), &s); err == nil {
		t.Error("an unknown state name was accepted")
	}
	if _, err := json.Marshal(ike.SAState(99)); err == nil {
		t.Error("an unknown state was written")
	}
}
