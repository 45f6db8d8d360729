package ikecrypto

import "github.com/mifike/mifike/internal/wire"

// Test vectors, copied mechanically from the RFC texts in shared/rfc (or the
// named stored source) so they can be checked against them line by line.
// Long values are split into 32-octet pieces.

// rfc4231Cases are RFC 4231 §4.2-§4.8, Test Cases 1-7 (key, data,
// HMAC-SHA-256, -384, -512). Test Case 5 prints only the first 128 bits.
var rfc4231Cases = []struct {
	n                      int
	key, data              string
	sha256, sha384, sha512 string
}{
	{
		n:      1,
		key:    "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
		data:   "4869205468657265",
		sha256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
		sha384: "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c" +
			"faea9ea9076ede7f4af152e8b2fa9cb6",
		sha512: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde" +
			"daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
	},
	{
		n:      2,
		key:    "4a656665",
		data:   "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		sha256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
		sha384: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e" +
			"8e2240ca5e69e2c78b3239ecfab21649",
		sha512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554" +
			"9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
	},
	{
		n:   3,
		key: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		data: "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd" +
			"dddddddddddddddddddddddddddddddddddd",
		sha256: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
		sha384: "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b" +
			"2a5ab39dc13814b94e3ab6e101a34f27",
		sha512: "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39" +
			"bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
	},
	{
		n:   4,
		key: "0102030405060708090a0b0c0d0e0f10111213141516171819",
		data: "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd" +
			"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
		sha256: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
		sha384: "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e" +
			"6801dd23c4a7d679ccf8a386c674cffb",
		sha512: "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db" +
			"a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
	},
	{
		n:      5,
		key:    "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c",
		data:   "546573742057697468205472756e636174696f6e",
		sha256: "a3b6167473100ee06e0c796c2955552b",
		sha384: "3abf34c3503b2a23a46efc619baef897",
		sha512: "415fad6271580a531d4179bc891d87a6",
	},
	{
		n: 6,
		key: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
			"aaaaaa",
		data: "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a" +
			"65204b6579202d2048617368204b6579204669727374",
		sha256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
		sha384: "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6" +
			"0c2ef6ab4030fe8296248df163f44952",
		sha512: "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352" +
			"6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
	},
	{
		n: 7,
		key: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
			"aaaaaa",
		data: "5468697320697320612074657374207573696e672061206c6172676572207468" +
			"616e20626c6f636b2d73697a65206b657920616e642061206c61726765722074" +
			"68616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565" +
			"647320746f20626520686173686564206265666f7265206265696e6720757365" +
			"642062792074686520484d414320616c676f726974686d2e",
		sha256: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
		sha384: "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5" +
			"a678cc31e799176d3860e6110c46523e",
		sha512: "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944" +
			"b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
	},
}

// rfc4868AuthCases are RFC 4868 §2.7.2 (key, data, full PRF output,
// truncated authenticator). The RFC's PRF-1..6 cases (§2.7.1) repeat
// RFC 4231's and are covered by rfc4231Cases.
var rfc4868AuthCases = []struct {
	name           string
	key, data      string
	prf, truncated string
}{
	{
		name:      "AUTH256-1",
		key:       "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
		data:      "4869205468657265",
		prf:       "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7",
		truncated: "198a607eb44bfbc69903a0f1cf2bbdc5",
	},
	{
		name:      "AUTH256-2",
		key:       "4a6566654a6566654a6566654a6566654a6566654a6566654a6566654a656665",
		data:      "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		prf:       "167f928588c5cc2eef8e3093caa0e87c9ff566a14794aa61648d81621a2a40c6",
		truncated: "167f928588c5cc2eef8e3093caa0e87c",
	},
	{
		name: "AUTH256-3",
		key:  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		data: "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd" +
			"dddddddddddddddddddddddddddddddddddd",
		prf:       "cdcb1220d1ecccea91e53aba3092f962e549fe6ce9ed7fdc43191fbde45c30b0",
		truncated: "cdcb1220d1ecccea91e53aba3092f962",
	},
	{
		name: "AUTH256-4",
		key:  "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
		data: "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd" +
			"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
		prf:       "372efcf9b40b35c2115b1346903d2ef42fced46f0846e7257bb156d3d7b30d3f",
		truncated: "372efcf9b40b35c2115b1346903d2ef4",
	},
	{
		// The RFC labels this value "HMAC-SHA-384-128"; it is 192 bits like the others.
		name: "AUTH384-1",
		key: "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b" +
			"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
		data: "4869205468657265",
		prf: "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee9737a959796489bddbc" +
			"4c5df61d5b3297b4fb68dab9f1b582c2",
		truncated: "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
	},
	{
		name: "AUTH384-2",
		key: "4a6566654a6566654a6566654a6566654a6566654a6566654a6566654a656665" +
			"4a6566654a6566654a6566654a656665",
		data: "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		prf: "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184da86a368e9b8e16f5" +
			"349524ca4e82400cbde0686d403371c9",
		truncated: "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d",
	},
	{
		name: "AUTH384-3",
		key: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		data: "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd" +
			"dddddddddddddddddddddddddddddddddddd",
		prf: "809f439be00274321d4a538652164b53554a508184a0c3160353e3428597003d" +
			"35914a18770f9443987054944b7c4b4a",
		truncated: "809f439be00274321d4a538652164b53554a508184a0c316",
	},
	{
		name: "AUTH384-4",
		key: "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20" +
			"0a0b0c0d0e0f10111213141516171819",
		data: "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd" +
			"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
		prf: "5b540085c6e6358096532b2493609ed1cb298f774f87bb5c2ebf182c83cc7428" +
			"707fb92eab2536a5812258228bc96687",
		truncated: "5b540085c6e6358096532b2493609ed1cb298f774f87bb5c",
	},
	{
		name: "AUTH512-1",
		key: "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b" +
			"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
		data: "4869205468657265",
		prf: "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8" +
			"ac2878ebd5803f6f0b61dbce5e251ff8789a4722c1be65aea45fd464e89f8f5b",
		truncated: "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
	},
	{
		name: "AUTH512-2",
		key: "4a6566654a6566654a6566654a6566654a6566654a6566654a6566654a656665" +
			"4a6566654a6566654a6566654a6566654a6566654a6566654a6566654a656665",
		data: "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		prf: "cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454" +
			"6aa334ae9fb9afc2184932d8695e397bfa0ffb93466cfcceaae38c833b7dba38",
		truncated: "cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454",
	},
	{
		name: "AUTH512-3",
		key: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		data: "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd" +
			"dddddddddddddddddddddddddddddddddddd",
		prf: "2ee7acd783624ca9398710f3ee05ae41b9f9b0510c87e49e586cc9bf961733d8" +
			"623c7b55cebefccf02d5581acc1c9d5fb1ff68a1de45509fbe4da9a433922655",
		truncated: "2ee7acd783624ca9398710f3ee05ae41b9f9b0510c87e49e586cc9bf961733d8",
	},
	{
		// The RFC prints five key lines (80 octets, the first being
		// 0a0b...19) but labels the key 64 bytes; the printed outputs
		// are those of the last four lines alone, used here.
		name: "AUTH512-4",
		key: "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20" +
			"2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40",
		data: "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd" +
			"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
		prf: "5e6688e5a3daec826ca32eaea224eff5e700628947470e13ad01302561bab108" +
			"b8c48cbc6b807dcfbd850521a685babc7eae4a2a2e660dc0e86b931d65503fd2",
		truncated: "5e6688e5a3daec826ca32eaea224eff5e700628947470e13ad01302561bab108",
	},
}

// cavpIKEv2SHA1 is the NIST CAVP SP 800-135 IKEv2 KDF case COUNT 0 for
// SHA-1 (g^ir 256 bits, Ni and Nr 64 bits, DKM 1056 bits), from
// shared/vectors/cavp-ikev2-kdf-sha1.txt.
var cavpIKEv2SHA1 = struct {
	ni, nr, gir, girNew, spii, spir     string
	skeyseed, dkm, dkmChild, dkmChildDH string
	skeyseedRekey                       string
}{
	ni:       "32b50d5f4a3763f3",
	nr:       "9206a04b26564cb1",
	gir:      "4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52",
	girNew:   "863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330",
	spii:     "34c9e7c188868785",
	spir:     "3ff77d760d2b2199",
	skeyseed: "a9a7b222b59f8f48645f28a1db5b5f5d7479cba7",
	dkm: "a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002" +
		"a2a63080e514a062768b76606f9fa5e992204fc5a670bde3f10d6b027113936a" +
		"5c55b648a194ae587b0088d52204b702c979fa280870d2ed41efa9c549fd1119" +
		"8af1670b143d384bd275c5f594cf266b05ebadca855e4249520a441a81157435" +
		"a7a56cc4",
	dkmChild: "8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85ef4c581" +
		"1a8e7b5d1cdabd9560b2d5e092d1f24e2d4b85eccdf0ad0dc9abd94b51ee7181" +
		"4ca6dbc8bb51b6309f5b9545c7eb35cf5580b1e521a8fe20754a2d883ba0c2cf" +
		"285f524aea6545b33106bc03e614296d319d41d4b50b3f510b1c0a22f3e66499" +
		"4d234cb4",
	dkmChildDH: "bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4fa61d373016" +
		"28190e38c66232eab4b3ab14c400a5197dd3730ed4820a8a10394d51e1c04000" +
		"52f63ebd36b0e7ef53aaed31eba4a5080d7d4b5666023a8bbb5ffb7857240f9a" +
		"05884d1b7d2f933708450b7b3288f1fc863ab49fa901227cffc06e27899c7054" +
		"d56fd74c",
	skeyseedRekey: "63e81194946ebd05df7df5ebf5d8750056bf1f1d",
}

// rfc5903Cases are RFC 5903 §8.1-§8.3: private keys i and r, the KEi and
// KEr payloads (generic header, group, reserved, x | y) and the shared
// secret girx.
var rfc5903Cases = []struct {
	section string
	group   wire.DHGroup
	i, kei  string
	r, ker  string
	girx    string
}{
	{
		section: "8.1",
		group:   wire.DHECP256,
		i:       "c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433",
		kei: "0000004800130000dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef" +
			"945d0c37725811805271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58" +
			"389e0577b8990bb3",
		r: "c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53",
		ker: "0000004800130000d12dfb5289c8d4f81208b70270398c342296970a0bccb74c" +
			"736fc7554494bf6356fbf3ca366cc23e8157854c13c58d6aac23f046ada30f83" +
			"53e74f33039872ab",
		girx: "d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de",
	},
	{
		section: "8.2",
		group:   wire.DHECP384,
		i: "099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655" +
			"e35b538041e649ee3faef896783ab194",
		kei: "0000006800140000667842d7d180ac2cde6f74f37551f55755c7645c20ef73e3" +
			"1634fe72b4c55ee6de3ac808acb4bdb4c88732aee95f41aa9482ed1fc0eeb9ca" +
			"fc4984625ccfc23f65032149e0e144ada024181535a0f38eeb9fcff3c2c947da" +
			"e69b4c634573a81c",
		r: "41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942" +
			"e0308312916b8ed2960e4bd55a7448fc",
		ker: "0000006800140000e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d" +
			"83cfa41732bc509d0d1ac43a0336def96fda41d0774a3571dcfbec7aacf31964" +
			"72169e838430367f66eebe3c6e70c416dd5f0c68759dd1fff83fa40142209dff" +
			"5eaad96db9e6386c",
		girx: "11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4" +
			"d603135569b9e9d09cf5d4a270f59746",
	},
	{
		section: "8.3",
		group:   wire.DHECP521,
		i: "0037ade9319a89f4dabdb3ef411aaccca5123c61acab57b5393dce47608172a0" +
			"95aa85a30fe1c2952c6771d937ba9777f5957b2639bab072462f68c27a57382d" +
			"4a52",
		kei: "0000008c001500000015417e84dbf28c0ad3c278713349dc7df153c897a1891b" +
			"d98bab4357c9ecbee1e3bf42e00b8e380aeae57c2d107564941885942af5a7f4" +
			"601723c4195d176ced3e017cae20b6641d2eeb695786d8c946146239d099e18e" +
			"1d5a514c739d7cb4a10ad8a788015ac405d7799dc75e7b7d5b6cf2261a6a7f15" +
			"07438bf01beb6ca3926f9582",
		r: "0145ba99a847af43793fdd0e872e7cdfa16be30fdc780f97bccc3f078380201e" +
			"9c677d600b343757a3bdbf2a3163e4c2f869cca7458aa4a4effc311f5cb15168" +
			"5eb9",
		ker: "0000008c0015000000d0b3975ac4b799f5bea16d5e13e9af971d5e9b984c9f39" +
			"728b5e5739735a219b97c356436adc6e95bb0352f6be64a6c2912d4ef2d0433c" +
			"ed2b6171640012d9460f015c68226383956e3bd066e797b623c27ce0eac2f551" +
			"a10c2c724d9852077b87220b6536c5c408a1d2aebb8e86d678ae49cb57091f47" +
			"32296579ab44fcd17f0fc56a",
		girx: "01144c7d79ae6956bc8edb8e7c787c4521cb086fa64407f97894e5e6b2d79b04" +
			"d1427e73ca4baa240a34786859810c06b3c715a3a8cc3151f2bee417996d19f3" +
			"ddea",
	},
}

// rfc7748X25519 is RFC 7748 §6.1's Curve25519 test vector.
var rfc7748X25519 = struct{ alicePriv, alicePub, bobPriv, bobPub, shared string }{
	alicePriv: "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
	alicePub:  "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
	bobPriv:   "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
	bobPub:    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
	shared:    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
}

// rfc8031Example is RFC 8031 Appendix A: the random octets each side
// draws (before clamping), its public key and the shared secret.
var rfc8031Example = struct{ randomI, randomR, pubI, pubR, shared string }{
	randomI: "751fb4308655b476b6789b7325f9ea8cddd16a58533ff6d9e60009464a5f9d94",
	randomR: "0a54645253290d60ddadd0e030bacd9e5501efdc220755a1e978f1b839a05688",
	pubI:    "48d5ddd4061257ba166fa3f9bbdb74f1a4e81c089384fa77f790709f0dfbc766",
	pubR:    "0be7c1f5aad87d7e448662673298a443478b859745179eaf564c79c0ef6eee25",
	shared:  "c74950607a12327f3204d94b6825bfb068b7f8319a9e3708ed3d43ce8130c950",
}

// rfc7634AppB is RFC 7634 Appendix B: an INFORMATIONAL request carrying
// SET_WINDOW_SIZE = 10 under ChaCha20-Poly1305. The key and salt are
// Appendix A's KEYMAT (App. B: "The key is 0x80..0x9f", "The Salt is 0xa0
// 0xa1 0xa2 0xa3"); the IV is Appendix A's 0x10..0x17.
var rfc7634AppB = struct {
	keymat, iv, notify, plaintext, ciphertext, aad, tag, message string
	spii, spir                                                   uint64
	messageID                                                    uint32
}{
	keymat: "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f" +
		"a0a1a2a3",
	iv:         "1011121314151617",
	notify:     "0000000c000040010000000a",
	plaintext:  "0000000c000040010000000a00",
	ciphertext: "610394701f8d017f7c12924889",
	aad:        "c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d72e202500000000090000004529000029",
	tag:        "6b71bfe25236efd7cdc67066906315b2",
	message: "c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d72e202500000000090000004529000029" +
		"1011121314151617610394701f8d017f7c129248896b71bfe25236efd7cdc670" +
		"66906315b2",
	spii:      0xc0c1c2c3c4c5c6c7,
	spir:      0xd0d1d2d3d4d5d6d7,
	messageID: 9,
}

// gcmSpecCases are the McGrew-Viega GCM test cases as strongSwan stores
// them for IPsec: keying material = AES key | 4-octet salt and an 8-octet
// IV, which is exactly the RFC 4106 §4 / RFC 5282 §4 layout. (RFC 4106 §9
// and RFC 5282 §9 carry no vectors of their own and point to that spec.)
// Source: strongswan/strongswan
// src/libstrongswan/plugins/test_vectors/test_vectors/aes_gcm.c
// @ 026355af423abb1ff763b5b1276f8f4eda97a42d, vectors aes_gcm2..aes_gcm7
// (aes_gcm1 has an 8-octet ICV, which crypto/cipher does not offer).
var gcmSpecCases = []struct {
	name         string
	id           wire.EncrID
	keyBits      int
	keymat, iv   string
	plain, aad   string
	cipherAndTag string
}{
	{"aes_gcm2 (Test Case 3, 12-octet ICV)", wire.EncrAESGCM12, 128, gcmKey128, gcmIV, gcmPlain, "",
		gcmCT128 + "4d5c2af327cd64a62cf35abd"},
	{"aes_gcm3 (Test Case 3)", wire.EncrAESGCM16, 128, gcmKey128, gcmIV, gcmPlain, "",
		gcmCT128 + "4d5c2af327cd64a62cf35abd2ba6fab4"},
	{"aes_gcm4 (Test Case 4)", wire.EncrAESGCM16, 128, gcmKey128, gcmIV, gcmPlain[:120], gcmAAD,
		gcmCT128[:120] + "5bc94fbc3221a5db94fae95ae7121a47"},
	{"aes_gcm5 (Test Case 9)", wire.EncrAESGCM16, 192,
		"feffe9928665731c6d6a8f9467308308feffe9928665731c" + "cafebabe", gcmIV, gcmPlain, "",
		"3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c" +
			"7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710acade256" +
			"9924a7c8587336bfb118024db8674a14"},
	{"aes_gcm6 (Test Case 15)", wire.EncrAESGCM16, 256, gcmKey256, gcmIV, gcmPlain, "",
		gcmCT256 + "b094dac5d93471bdec1a502270e3cc6c"},
	{"aes_gcm7 (Test Case 16)", wire.EncrAESGCM16, 256, gcmKey256, gcmIV, gcmPlain[:120], gcmAAD,
		gcmCT256[:120] + "76fc6ece0f4e1768cddf8853bb2d551b"},
}

const (
	gcmKey128 = "feffe9928665731c6d6a8f9467308308" + "cafebabe"
	gcmKey256 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308" + "cafebabe"
	gcmIV     = "facedbaddecaf888"
	gcmAAD    = "feedfacedeadbeeffeedfacedeadbeefabaddad2"
	gcmPlain  = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72" +
		"1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
	gcmCT128 = "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e" +
		"21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985"
	gcmCT256 = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" +
		"8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad"
)
