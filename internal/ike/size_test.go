package ike

import (
	"testing"
	"unsafe"
)

// A gateway holds an ikeSA and a childSA per road warrior, for weeks, by
// the ten thousand (issue 18: 5 kB per SA). Go allocates them in size
// classes (runtime/sizeclasses.go: 32, 48, ...; 320, 352, ...; 1024, 1152, 1280),
// so a field that pushes a struct over its class's edge costs the whole
// next step, 128 octets for the IKE SA, on every SA. Put what only some
// SAs use (MOBIKE, rekeying, redirects, clones) behind a pointer or in
// the handshake, which is freed after IKE_AUTH, rather than grow these.
func TestPerSAStructsStayInTheirSizeClass(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"ikeSA", unsafe.Sizeof(ikeSA{}), 1152},
		{"childSA", unsafe.Sizeof(childSA{}), 352},
		{"timer", unsafe.Sizeof(timer{}), 32}, // several per SA
	} {
		if c.size > c.max {
			t.Errorf("%s is %d octets, over the %d-octet size class it is allocated in: see the comment", c.name, c.size, c.max)
		}
	}
}
