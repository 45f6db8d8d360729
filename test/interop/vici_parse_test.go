package interop

import "testing"

// The parser is checked on a line charon 5.9.8 printed, so it runs
// everywhere, not only where strongSwan is installed.
func TestParseRawListSAs(t *testing.T) {
	line := `list-sa event {rw-psk {uniqueid=1 version=2 state=ESTABLISHED local-host=10.10.0.1 local-port=4500 local-id=gw.ssi.test remote-host=10.10.1.2 remote-port=4500 remote-id=eu.ssi.test initiator-spi=03c48940a40799bd responder-spi=ee2c31a1fa107db3 nat-remote=yes nat-any=yes encr-alg=AES_CBC encr-keysize=128 integ-alg=HMAC_SHA2_256_128 prf-alg=PRF_HMAC_SHA2_256 dh-group=CURVE_25519 established=0 rekey-time=13619 remote-vips=[10.99.0.1] child-sas {net-1 {name=net uniqueid=1 reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP encap=yes spi-in=9c47c204 spi-out=05eaa7d8 encr-alg=AES_GCM_16 encr-keysize=128 bytes-in=0 packets-in=0 bytes-out=0 packets-out=0 rekey-time=3566 life-time=3960 install-time=0 local-ts=[10.20.0.0/24] remote-ts=[10.99.0.1/32]}}}}
list-sas reply {}`
	root, err := parseRaw(line)
	if err != nil {
		t.Fatal(err)
	}
	sa := root.subs["list-sa event"].subs["rw-psk"]
	if sa.vals["initiator-spi"] != "03c48940a40799bd" || sa.lists["remote-vips"][0] != "10.99.0.1" {
		t.Fatalf("%+v", sa.vals)
	}
	c := sa.subs["child-sas"].subs["net-1"]
	if c.vals["spi-in"] != "9c47c204" || c.lists["local-ts"][0] != "10.20.0.0/24" {
		t.Fatalf("%+v", c.vals)
	}
}
