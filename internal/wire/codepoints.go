package wire

import "strconv"

// This file is the one registry of IKEv2 code points (IANA "Internet Key
// Exchange Version 2 (IKEv2) Parameters"), with the names the RFCs use so
// logs and tests read next to the specification.

// ExchangeType is the header's Exchange Type (RFC 7296 §3.1).
type ExchangeType uint8

const (
	IKESAInit        ExchangeType = 34
	IKEAuth          ExchangeType = 35
	CreateChildSA    ExchangeType = 36
	Informational    ExchangeType = 37
	IKESessionResume ExchangeType = 38 // RFC 5723
	IKEIntermediate  ExchangeType = 43 // RFC 9242
	IKEFollowupKE    ExchangeType = 44 // RFC 9370
)

var exchangeNames = map[ExchangeType]string{
	IKESAInit:        "IKE_SA_INIT",
	IKEAuth:          "IKE_AUTH",
	CreateChildSA:    "CREATE_CHILD_SA",
	Informational:    "INFORMATIONAL",
	IKESessionResume: "IKE_SESSION_RESUME",
	IKEIntermediate:  "IKE_INTERMEDIATE",
	IKEFollowupKE:    "IKE_FOLLOWUP_KE",
}

func (e ExchangeType) String() string { return name(exchangeNames, e, "EXCHANGE") }

// Flags is the header's Flags octet (RFC 7296 §3.1).
type Flags uint8

const (
	FlagInitiator Flags = 0x08 // I: sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // V: never set by IKEv2
	FlagResponse  Flags = 0x20 // R: this message is a response
)

func (f Flags) String() string {
	s := ""
	if f&FlagInitiator != 0 {
		s += "I"
	}
	if f&FlagResponse != 0 {
		s += "R"
	}
	if f&FlagVersion != 0 {
		s += "V"
	}
	if s == "" {
		return "-"
	}
	return s
}

// PayloadType is a Next Payload value (RFC 7296 §3.2).
type PayloadType uint8

const (
	PayloadNone    PayloadType = 0
	PayloadSA      PayloadType = 33
	PayloadKE      PayloadType = 34
	PayloadIDi     PayloadType = 35
	PayloadIDr     PayloadType = 36
	PayloadCERT    PayloadType = 37
	PayloadCERTREQ PayloadType = 38
	PayloadAUTH    PayloadType = 39
	PayloadNonce   PayloadType = 40
	PayloadNotify  PayloadType = 41
	PayloadDelete  PayloadType = 42
	PayloadVendor  PayloadType = 43
	PayloadTSi     PayloadType = 44
	PayloadTSr     PayloadType = 45
	PayloadSK      PayloadType = 46
	PayloadCP      PayloadType = 47
	PayloadEAP     PayloadType = 48
	PayloadGSPM    PayloadType = 49 // RFC 6467
	PayloadSKF     PayloadType = 53 // RFC 7383
	PayloadPS      PayloadType = 54 // RFC 8019
)

var payloadNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi", PayloadIDr: "IDr",
	PayloadCERT: "CERT", PayloadCERTREQ: "CERTREQ", PayloadAUTH: "AUTH", PayloadNonce: "Nonce",
	PayloadNotify: "N", PayloadDelete: "D", PayloadVendor: "V", PayloadTSi: "TSi",
	PayloadTSr: "TSr", PayloadSK: "SK", PayloadCP: "CP", PayloadEAP: "EAP", PayloadGSPM: "GSPM",
	PayloadSKF: "SKF", PayloadPS: "PS",
}

func (p PayloadType) String() string { return name(payloadNames, p, "PAYLOAD") }

// ProtocolID is the Protocol ID of proposals, notifies and deletes (RFC 7296 §3.3.1).
type ProtocolID uint8

const (
	ProtoNone ProtocolID = 0
	ProtoIKE  ProtocolID = 1
	ProtoAH   ProtocolID = 2
	ProtoESP  ProtocolID = 3
)

var protocolNames = map[ProtocolID]string{ProtoNone: "NONE", ProtoIKE: "IKE", ProtoAH: "AH", ProtoESP: "ESP"}

func (p ProtocolID) String() string { return name(protocolNames, p, "PROTO") }

// TransformType is a Transform Type (RFC 7296 §3.3.2).
type TransformType uint8

const (
	TransformENCR  TransformType = 1
	TransformPRF   TransformType = 2
	TransformINTEG TransformType = 3
	TransformDH    TransformType = 4
	TransformESN   TransformType = 5
)

var transformTypeNames = map[TransformType]string{
	TransformENCR: "ENCR", TransformPRF: "PRF", TransformINTEG: "INTEG", TransformDH: "DH", TransformESN: "ESN",
}

func (t TransformType) String() string { return name(transformTypeNames, t, "TRANSFORM") }

// EncrID is a Transform Type 1 ID (RFC 7296 §3.3.2, RFC 5282, RFC 7634).
type EncrID uint16

const (
	EncrDESIV64          EncrID = 1
	EncrDES              EncrID = 2
	Encr3DES             EncrID = 3
	EncrNULL             EncrID = 11
	EncrAESCBC           EncrID = 12
	EncrAESCTR           EncrID = 13
	EncrAESCCM8          EncrID = 14
	EncrAESCCM12         EncrID = 15
	EncrAESCCM16         EncrID = 16
	EncrAESGCM8          EncrID = 18
	EncrAESGCM12         EncrID = 19
	EncrAESGCM16         EncrID = 20
	EncrNullAuthAESGMAC  EncrID = 21
	EncrChaCha20Poly1305 EncrID = 28
)

var encrNames = map[EncrID]string{
	EncrDESIV64: "ENCR_DES_IV64", EncrDES: "ENCR_DES", Encr3DES: "ENCR_3DES", EncrNULL: "ENCR_NULL",
	EncrAESCBC: "ENCR_AES_CBC", EncrAESCTR: "ENCR_AES_CTR", EncrAESCCM8: "ENCR_AES_CCM_8",
	EncrAESCCM12: "ENCR_AES_CCM_12", EncrAESCCM16: "ENCR_AES_CCM_16", EncrAESGCM8: "ENCR_AES_GCM_8",
	EncrAESGCM12: "ENCR_AES_GCM_12", EncrAESGCM16: "ENCR_AES_GCM_16",
	EncrNullAuthAESGMAC: "ENCR_NULL_AUTH_AES_GMAC", EncrChaCha20Poly1305: "ENCR_CHACHA20_POLY1305",
}

func (e EncrID) String() string { return name(encrNames, e, "ENCR") }

// PRFID is a Transform Type 2 ID.
type PRFID uint16

const (
	PRFHMACMD5     PRFID = 1
	PRFHMACSHA1    PRFID = 2
	PRFAES128XCBC  PRFID = 4
	PRFHMACSHA2256 PRFID = 5
	PRFHMACSHA2384 PRFID = 6
	PRFHMACSHA2512 PRFID = 7
	PRFAES128CMAC  PRFID = 8
)

var prfNames = map[PRFID]string{
	PRFHMACMD5: "PRF_HMAC_MD5", PRFHMACSHA1: "PRF_HMAC_SHA1", PRFAES128XCBC: "PRF_AES128_XCBC",
	PRFHMACSHA2256: "PRF_HMAC_SHA2_256", PRFHMACSHA2384: "PRF_HMAC_SHA2_384",
	PRFHMACSHA2512: "PRF_HMAC_SHA2_512", PRFAES128CMAC: "PRF_AES128_CMAC",
}

func (p PRFID) String() string { return name(prfNames, p, "PRF") }

// IntegID is a Transform Type 3 ID.
type IntegID uint16

const (
	IntegNone           IntegID = 0
	IntegHMACMD596      IntegID = 1
	IntegHMACSHA196     IntegID = 2
	IntegAESXCBC96      IntegID = 5
	IntegAESCMAC96      IntegID = 8
	IntegHMACSHA2256128 IntegID = 12
	IntegHMACSHA2384192 IntegID = 13
	IntegHMACSHA2512256 IntegID = 14
)

var integNames = map[IntegID]string{
	IntegNone: "NONE", IntegHMACMD596: "AUTH_HMAC_MD5_96", IntegHMACSHA196: "AUTH_HMAC_SHA1_96",
	IntegAESXCBC96: "AUTH_AES_XCBC_96", IntegAESCMAC96: "AUTH_AES_CMAC_96",
	IntegHMACSHA2256128: "AUTH_HMAC_SHA2_256_128", IntegHMACSHA2384192: "AUTH_HMAC_SHA2_384_192",
	IntegHMACSHA2512256: "AUTH_HMAC_SHA2_512_256",
}

func (i IntegID) String() string { return name(integNames, i, "INTEG") }

// DHGroup is a Transform Type 4 ID (RFC 7296, RFC 3526, RFC 5903, RFC 8031).
type DHGroup uint16

const (
	DHNone       DHGroup = 0
	DHMODP768    DHGroup = 1
	DHMODP1024   DHGroup = 2
	DHMODP1536   DHGroup = 5
	DHMODP2048   DHGroup = 14
	DHMODP3072   DHGroup = 15
	DHMODP4096   DHGroup = 16
	DHMODP6144   DHGroup = 17
	DHMODP8192   DHGroup = 18
	DHECP256     DHGroup = 19
	DHECP384     DHGroup = 20
	DHECP521     DHGroup = 21
	DHCurve25519 DHGroup = 31
	DHCurve448   DHGroup = 32
)

var dhNames = map[DHGroup]string{
	DHNone: "NONE", DHMODP768: "MODP_768", DHMODP1024: "MODP_1024", DHMODP1536: "MODP_1536",
	DHMODP2048: "MODP_2048", DHMODP3072: "MODP_3072", DHMODP4096: "MODP_4096",
	DHMODP6144: "MODP_6144", DHMODP8192: "MODP_8192", DHECP256: "ECP_256", DHECP384: "ECP_384",
	DHECP521: "ECP_521", DHCurve25519: "CURVE25519", DHCurve448: "CURVE448",
}

func (g DHGroup) String() string { return name(dhNames, g, "DH") }

// ESNID is a Transform Type 5 ID.
type ESNID uint16

const (
	ESNNo  ESNID = 0
	ESNYes ESNID = 1
)

func (e ESNID) String() string {
	switch e {
	case ESNNo:
		return "NO_ESN"
	case ESNYes:
		return "ESN"
	}
	return "ESN(" + strconv.Itoa(int(e)) + ")"
}

// AttrKeyLength is the only transform attribute RFC 7296 defines (§3.3.5):
// TV format, value in bits.
const AttrKeyLength uint16 = 14

// IDType is the ID Type of IDi/IDr (RFC 7296 §3.5).
type IDType uint8

const (
	IDIPv4Addr   IDType = 1
	IDFQDN       IDType = 2
	IDRFC822Addr IDType = 3
	IDIPv6Addr   IDType = 5
	IDDERASN1DN  IDType = 9
	IDDERASN1GN  IDType = 10
	IDKeyID      IDType = 11
	IDFCName     IDType = 12 // RFC 4595
	IDNull       IDType = 13 // RFC 7619
)

var idNames = map[IDType]string{
	IDIPv4Addr: "ID_IPV4_ADDR", IDFQDN: "ID_FQDN", IDRFC822Addr: "ID_RFC822_ADDR",
	IDIPv6Addr: "ID_IPV6_ADDR", IDDERASN1DN: "ID_DER_ASN1_DN", IDDERASN1GN: "ID_DER_ASN1_GN",
	IDKeyID: "ID_KEY_ID", IDFCName: "ID_FC_NAME", IDNull: "ID_NULL",
}

func (t IDType) String() string { return name(idNames, t, "ID") }

// CertEncoding is the Cert Encoding of CERT and CERTREQ (RFC 7296 §3.6).
type CertEncoding uint8

const (
	CertPKCS7         CertEncoding = 1
	CertPGP           CertEncoding = 2
	CertDNSSignedKey  CertEncoding = 3
	CertX509Signature CertEncoding = 4
	CertKerberos      CertEncoding = 6
	CertCRL           CertEncoding = 7
	CertARL           CertEncoding = 8
	CertSPKI          CertEncoding = 9
	CertX509Attribute CertEncoding = 10
	CertRawRSAKey     CertEncoding = 11
	CertHashURLX509   CertEncoding = 12
	CertHashURLBundle CertEncoding = 13
	CertOCSPContent   CertEncoding = 14 // RFC 4806
	CertRawPublicKey  CertEncoding = 15 // RFC 7670
)

var certNames = map[CertEncoding]string{
	CertPKCS7: "PKCS7_WRAPPED_X509", CertPGP: "PGP_CERT", CertDNSSignedKey: "DNS_SIGNED_KEY",
	CertX509Signature: "X509_CERT_SIG", CertKerberos: "KERBEROS_TOKEN", CertCRL: "CRL",
	CertARL: "ARL", CertSPKI: "SPKI_CERT", CertX509Attribute: "X509_CERT_ATTR",
	CertRawRSAKey: "RAW_RSA_KEY", CertHashURLX509: "HASH_URL_X509_CERT",
	CertHashURLBundle: "HASH_URL_X509_BUNDLE", CertOCSPContent: "OCSP_CONTENT",
	CertRawPublicKey: "RAW_PUBLIC_KEY",
}

func (c CertEncoding) String() string { return name(certNames, c, "CERT") }

// AuthMethod is the AUTH payload's Auth Method (RFC 7296 §3.8, RFC 4754, RFC 7427).
type AuthMethod uint8

const (
	AuthRSASig           AuthMethod = 1
	AuthSharedKeyMIC     AuthMethod = 2
	AuthDSSSig           AuthMethod = 3
	AuthECDSAP256SHA256  AuthMethod = 9
	AuthECDSAP384SHA384  AuthMethod = 10
	AuthECDSAP521SHA512  AuthMethod = 11
	AuthGSPM             AuthMethod = 12 // RFC 6467
	AuthNULL             AuthMethod = 13 // RFC 7619
	AuthDigitalSignature AuthMethod = 14 // RFC 7427
)

var authNames = map[AuthMethod]string{
	AuthRSASig: "RSA_DIGITAL_SIGNATURE", AuthSharedKeyMIC: "SHARED_KEY_MIC", AuthDSSSig: "DSS_DIGITAL_SIGNATURE",
	AuthECDSAP256SHA256: "ECDSA_SHA256_P256", AuthECDSAP384SHA384: "ECDSA_SHA384_P384",
	AuthECDSAP521SHA512: "ECDSA_SHA512_P521", AuthGSPM: "GSPM", AuthNULL: "NULL_AUTH",
	AuthDigitalSignature: "DIGITAL_SIGNATURE",
}

func (a AuthMethod) String() string { return name(authNames, a, "AUTH") }

// HashAlgorithm is an RFC 7427 hash algorithm identifier, carried in
// SIGNATURE_HASH_ALGORITHMS.
type HashAlgorithm uint16

const (
	HashSHA1     HashAlgorithm = 1
	HashSHA2256  HashAlgorithm = 2
	HashSHA2384  HashAlgorithm = 3
	HashSHA2512  HashAlgorithm = 4
	HashIdentity HashAlgorithm = 5 // RFC 8420
)

var hashNames = map[HashAlgorithm]string{
	HashSHA1: "SHA1", HashSHA2256: "SHA2_256", HashSHA2384: "SHA2_384", HashSHA2512: "SHA2_512",
	HashIdentity: "IDENTITY",
}

func (h HashAlgorithm) String() string { return name(hashNames, h, "HASH") }

// TSType is a Traffic Selector type (RFC 7296 §3.13.1).
type TSType uint8

const (
	TSIPv4AddrRange TSType = 7
	TSIPv6AddrRange TSType = 8
)

var tsNames = map[TSType]string{TSIPv4AddrRange: "TS_IPV4_ADDR_RANGE", TSIPv6AddrRange: "TS_IPV6_ADDR_RANGE"}

func (t TSType) String() string { return name(tsNames, t, "TS") }

// CFGType is the CP payload's CFG Type (RFC 7296 §3.15).
type CFGType uint8

const (
	CFGRequest CFGType = 1
	CFGReply   CFGType = 2
	CFGSet     CFGType = 3
	CFGAck     CFGType = 4
)

var cfgNames = map[CFGType]string{CFGRequest: "CFG_REQUEST", CFGReply: "CFG_REPLY", CFGSet: "CFG_SET", CFGAck: "CFG_ACK"}

func (c CFGType) String() string { return name(cfgNames, c, "CFG") }

// CPAttrType is a Configuration Attribute type (RFC 7296 §3.15.1).
type CPAttrType uint16

const (
	CPInternalIP4Address  CPAttrType = 1
	CPInternalIP4Netmask  CPAttrType = 2
	CPInternalIP4DNS      CPAttrType = 3
	CPInternalIP4NBNS     CPAttrType = 4
	CPInternalIP4DHCP     CPAttrType = 6
	CPApplicationVersion  CPAttrType = 7
	CPInternalIP6Address  CPAttrType = 8
	CPInternalIP6DNS      CPAttrType = 10
	CPInternalIP6DHCP     CPAttrType = 12
	CPInternalIP4Subnet   CPAttrType = 13
	CPSupportedAttributes CPAttrType = 14
	CPInternalIP6Subnet   CPAttrType = 15
)

var cpAttrNames = map[CPAttrType]string{
	CPInternalIP4Address: "INTERNAL_IP4_ADDRESS", CPInternalIP4Netmask: "INTERNAL_IP4_NETMASK",
	CPInternalIP4DNS: "INTERNAL_IP4_DNS", CPInternalIP4NBNS: "INTERNAL_IP4_NBNS",
	CPInternalIP4DHCP: "INTERNAL_IP4_DHCP", CPApplicationVersion: "APPLICATION_VERSION",
	CPInternalIP6Address: "INTERNAL_IP6_ADDRESS", CPInternalIP6DNS: "INTERNAL_IP6_DNS",
	CPInternalIP6DHCP: "INTERNAL_IP6_DHCP", CPInternalIP4Subnet: "INTERNAL_IP4_SUBNET",
	CPSupportedAttributes: "SUPPORTED_ATTRIBUTES", CPInternalIP6Subnet: "INTERNAL_IP6_SUBNET",
}

func (c CPAttrType) String() string { return name(cpAttrNames, c, "CP_ATTR") }

// EAPCode is the Code of an EAP message (RFC 3748 §4).
type EAPCode uint8

const (
	EAPRequest  EAPCode = 1
	EAPResponse EAPCode = 2
	EAPSuccess  EAPCode = 3
	EAPFailure  EAPCode = 4
)

var eapNames = map[EAPCode]string{EAPRequest: "Request", EAPResponse: "Response", EAPSuccess: "Success", EAPFailure: "Failure"}

func (c EAPCode) String() string { return name(eapNames, c, "EAP") }

// NotifyType is a Notify Message Type (RFC 7296 §3.10.1). Values below
// 16384 are errors, the rest status types.
type NotifyType uint16

// IsError reports whether n is an error type (RFC 7296 §3.10.1).
func (n NotifyType) IsError() bool { return n < 16384 }

// Error types.
const (
	NotifyUnsupportedCriticalPayload NotifyType = 1
	NotifyInvalidIKESPI              NotifyType = 4
	NotifyInvalidMajorVersion        NotifyType = 5
	NotifyInvalidSyntax              NotifyType = 7
	NotifyInvalidMessageID           NotifyType = 9
	NotifyInvalidSPI                 NotifyType = 11
	NotifyNoProposalChosen           NotifyType = 14
	NotifyInvalidKEPayload           NotifyType = 17
	NotifyAuthenticationFailed       NotifyType = 24
	NotifySinglePairRequired         NotifyType = 34
	NotifyNoAdditionalSAs            NotifyType = 35
	NotifyInternalAddressFailure     NotifyType = 36
	NotifyFailedCPRequired           NotifyType = 37
	NotifyTSUnacceptable             NotifyType = 38
	NotifyInvalidSelectors           NotifyType = 39
	NotifyUnacceptableAddresses      NotifyType = 40 // RFC 4555
	NotifyUnexpectedNATDetected      NotifyType = 41 // RFC 4555
	NotifyUseAssignedHoA             NotifyType = 42 // RFC 5026
	NotifyTemporaryFailure           NotifyType = 43
	NotifyChildSANotFound            NotifyType = 44
	NotifyInvalidGroupID             NotifyType = 45 // RFC 9838 (G-IKEv2)
	NotifyAuthorizationFailed        NotifyType = 46 // G-IKEv2
	NotifyStateNotFound              NotifyType = 47 // RFC 9370
)

// Status types.
const (
	NotifyInitialContact                  NotifyType = 16384
	NotifySetWindowSize                   NotifyType = 16385
	NotifyAdditionalTSPossible            NotifyType = 16386
	NotifyIPCompSupported                 NotifyType = 16387
	NotifyNATDetectionSourceIP            NotifyType = 16388
	NotifyNATDetectionDestinationIP       NotifyType = 16389
	NotifyCookie                          NotifyType = 16390
	NotifyUseTransportMode                NotifyType = 16391
	NotifyHTTPCertLookupSupported         NotifyType = 16392
	NotifyRekeySA                         NotifyType = 16393
	NotifyESPTFCPaddingNotSupported       NotifyType = 16394
	NotifyNonFirstFragmentsAlso           NotifyType = 16395
	NotifyMOBIKESupported                 NotifyType = 16396 // RFC 4555
	NotifyAdditionalIP4Address            NotifyType = 16397 // RFC 4555
	NotifyAdditionalIP6Address            NotifyType = 16398 // RFC 4555
	NotifyNoAdditionalAddresses           NotifyType = 16399 // RFC 4555
	NotifyUpdateSAAddresses               NotifyType = 16400 // RFC 4555
	NotifyCookie2                         NotifyType = 16401 // RFC 4555
	NotifyNoNATsAllowed                   NotifyType = 16402 // RFC 4555
	NotifyAuthLifetime                    NotifyType = 16403 // RFC 4478
	NotifyMultipleAuthSupported           NotifyType = 16404 // RFC 4739
	NotifyAnotherAuthFollows              NotifyType = 16405 // RFC 4739
	NotifyRedirectSupported               NotifyType = 16406 // RFC 5685
	NotifyRedirect                        NotifyType = 16407 // RFC 5685
	NotifyRedirectedFrom                  NotifyType = 16408 // RFC 5685
	NotifyTicketLTOpaque                  NotifyType = 16409 // RFC 5723
	NotifyTicketRequest                   NotifyType = 16410 // RFC 5723
	NotifyTicketAck                       NotifyType = 16411 // RFC 5723
	NotifyTicketNack                      NotifyType = 16412 // RFC 5723
	NotifyTicketOpaque                    NotifyType = 16413 // RFC 5723
	NotifyLinkID                          NotifyType = 16414 // RFC 5739
	NotifyUseWESPMode                     NotifyType = 16415 // RFC 5840
	NotifyROHCSupported                   NotifyType = 16416 // RFC 5857
	NotifyEAPOnlyAuthentication           NotifyType = 16417 // RFC 5998
	NotifyChildlessIKEv2Supported         NotifyType = 16418 // RFC 6023
	NotifyQuickCrashDetection             NotifyType = 16419 // RFC 6290
	NotifyIKEv2MessageIDSyncSupported     NotifyType = 16420 // RFC 6311
	NotifyIPsecReplayCounterSyncSupported NotifyType = 16421 // RFC 6311
	NotifyIKEv2MessageIDSync              NotifyType = 16422 // RFC 6311
	NotifyIPsecReplayCounterSync          NotifyType = 16423 // RFC 6311
	NotifySecurePasswordMethods           NotifyType = 16424 // RFC 6467
	NotifyPSKPersist                      NotifyType = 16425 // RFC 6631
	NotifyPSKConfirm                      NotifyType = 16426 // RFC 6631
	NotifyERXSupported                    NotifyType = 16427 // RFC 6867
	NotifyIFOMCapability                  NotifyType = 16428
	NotifySenderRequestID                 NotifyType = 16429
	NotifyIKEv2FragmentationSupported     NotifyType = 16430 // RFC 7383
	NotifySignatureHashAlgorithms         NotifyType = 16431 // RFC 7427
	NotifyCloneIKESASupported             NotifyType = 16432 // RFC 7791
	NotifyCloneIKESA                      NotifyType = 16433 // RFC 7791
	NotifyPuzzle                          NotifyType = 16434 // RFC 8019
	NotifyUsePPK                          NotifyType = 16435 // RFC 8784
	NotifyPPKIdentity                     NotifyType = 16436 // RFC 8784
	NotifyNoPPKAuth                       NotifyType = 16437 // RFC 8784
	NotifyIntermediateExchangeSupported   NotifyType = 16438 // RFC 9242
	NotifyIP4Allowed                      NotifyType = 16439 // RFC 8983
	NotifyIP6Allowed                      NotifyType = 16440 // RFC 8983
	NotifyAdditionalKeyExchange           NotifyType = 16441 // RFC 9370
	NotifyUseAggfrag                      NotifyType = 16442 // RFC 9347
)

var notifyNames = map[NotifyType]string{
	NotifyUnsupportedCriticalPayload: "UNSUPPORTED_CRITICAL_PAYLOAD",
	NotifyInvalidIKESPI:              "INVALID_IKE_SPI",
	NotifyInvalidMajorVersion:        "INVALID_MAJOR_VERSION",
	NotifyInvalidSyntax:              "INVALID_SYNTAX",
	NotifyInvalidMessageID:           "INVALID_MESSAGE_ID",
	NotifyInvalidSPI:                 "INVALID_SPI",
	NotifyNoProposalChosen:           "NO_PROPOSAL_CHOSEN",
	NotifyInvalidKEPayload:           "INVALID_KE_PAYLOAD",
	NotifyAuthenticationFailed:       "AUTHENTICATION_FAILED",
	NotifySinglePairRequired:         "SINGLE_PAIR_REQUIRED",
	NotifyNoAdditionalSAs:            "NO_ADDITIONAL_SAS",
	NotifyInternalAddressFailure:     "INTERNAL_ADDRESS_FAILURE",
	NotifyFailedCPRequired:           "FAILED_CP_REQUIRED",
	NotifyTSUnacceptable:             "TS_UNACCEPTABLE",
	NotifyInvalidSelectors:           "INVALID_SELECTORS",
	NotifyUnacceptableAddresses:      "UNACCEPTABLE_ADDRESSES",
	NotifyUnexpectedNATDetected:      "UNEXPECTED_NAT_DETECTED",
	NotifyUseAssignedHoA:             "USE_ASSIGNED_HoA",
	NotifyTemporaryFailure:           "TEMPORARY_FAILURE",
	NotifyChildSANotFound:            "CHILD_SA_NOT_FOUND",
	NotifyInvalidGroupID:             "INVALID_GROUP_ID",
	NotifyAuthorizationFailed:        "AUTHORIZATION_FAILED",
	NotifyStateNotFound:              "STATE_NOT_FOUND",

	NotifyInitialContact:                  "INITIAL_CONTACT",
	NotifySetWindowSize:                   "SET_WINDOW_SIZE",
	NotifyAdditionalTSPossible:            "ADDITIONAL_TS_POSSIBLE",
	NotifyIPCompSupported:                 "IPCOMP_SUPPORTED",
	NotifyNATDetectionSourceIP:            "NAT_DETECTION_SOURCE_IP",
	NotifyNATDetectionDestinationIP:       "NAT_DETECTION_DESTINATION_IP",
	NotifyCookie:                          "COOKIE",
	NotifyUseTransportMode:                "USE_TRANSPORT_MODE",
	NotifyHTTPCertLookupSupported:         "HTTP_CERT_LOOKUP_SUPPORTED",
	NotifyRekeySA:                         "REKEY_SA",
	NotifyESPTFCPaddingNotSupported:       "ESP_TFC_PADDING_NOT_SUPPORTED",
	NotifyNonFirstFragmentsAlso:           "NON_FIRST_FRAGMENTS_ALSO",
	NotifyMOBIKESupported:                 "MOBIKE_SUPPORTED",
	NotifyAdditionalIP4Address:            "ADDITIONAL_IP4_ADDRESS",
	NotifyAdditionalIP6Address:            "ADDITIONAL_IP6_ADDRESS",
	NotifyNoAdditionalAddresses:           "NO_ADDITIONAL_ADDRESSES",
	NotifyUpdateSAAddresses:               "UPDATE_SA_ADDRESSES",
	NotifyCookie2:                         "COOKIE2",
	NotifyNoNATsAllowed:                   "NO_NATS_ALLOWED",
	NotifyAuthLifetime:                    "AUTH_LIFETIME",
	NotifyMultipleAuthSupported:           "MULTIPLE_AUTH_SUPPORTED",
	NotifyAnotherAuthFollows:              "ANOTHER_AUTH_FOLLOWS",
	NotifyRedirectSupported:               "REDIRECT_SUPPORTED",
	NotifyRedirect:                        "REDIRECT",
	NotifyRedirectedFrom:                  "REDIRECTED_FROM",
	NotifyTicketLTOpaque:                  "TICKET_LT_OPAQUE",
	NotifyTicketRequest:                   "TICKET_REQUEST",
	NotifyTicketAck:                       "TICKET_ACK",
	NotifyTicketNack:                      "TICKET_NACK",
	NotifyTicketOpaque:                    "TICKET_OPAQUE",
	NotifyLinkID:                          "LINK_ID",
	NotifyUseWESPMode:                     "USE_WESP_MODE",
	NotifyROHCSupported:                   "ROHC_SUPPORTED",
	NotifyEAPOnlyAuthentication:           "EAP_ONLY_AUTHENTICATION",
	NotifyChildlessIKEv2Supported:         "CHILDLESS_IKEV2_SUPPORTED",
	NotifyQuickCrashDetection:             "QUICK_CRASH_DETECTION",
	NotifyIKEv2MessageIDSyncSupported:     "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
	NotifyIPsecReplayCounterSyncSupported: "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
	NotifyIKEv2MessageIDSync:              "IKEV2_MESSAGE_ID_SYNC",
	NotifyIPsecReplayCounterSync:          "IPSEC_REPLAY_COUNTER_SYNC",
	NotifySecurePasswordMethods:           "SECURE_PASSWORD_METHODS",
	NotifyPSKPersist:                      "PSK_PERSIST",
	NotifyPSKConfirm:                      "PSK_CONFIRM",
	NotifyERXSupported:                    "ERX_SUPPORTED",
	NotifyIFOMCapability:                  "IFOM_CAPABILITY",
	NotifySenderRequestID:                 "SENDER_REQUEST_ID",
	NotifyIKEv2FragmentationSupported:     "IKEV2_FRAGMENTATION_SUPPORTED",
	NotifySignatureHashAlgorithms:         "SIGNATURE_HASH_ALGORITHMS",
	NotifyCloneIKESASupported:             "CLONE_IKE_SA_SUPPORTED",
	NotifyCloneIKESA:                      "CLONE_IKE_SA",
	NotifyPuzzle:                          "PUZZLE",
	NotifyUsePPK:                          "USE_PPK",
	NotifyPPKIdentity:                     "PPK_IDENTITY",
	NotifyNoPPKAuth:                       "NO_PPK_AUTH",
	NotifyIntermediateExchangeSupported:   "INTERMEDIATE_EXCHANGE_SUPPORTED",
	NotifyIP4Allowed:                      "IP4_ALLOWED",
	NotifyIP6Allowed:                      "IP6_ALLOWED",
	NotifyAdditionalKeyExchange:           "ADDITIONAL_KEY_EXCHANGE",
	NotifyUseAggfrag:                      "USE_AGGFRAG",
}

func (n NotifyType) String() string { return name(notifyNames, n, "NOTIFY") }

// KnownNotify reports whether n is in the registry.
func KnownNotify(n NotifyType) bool { _, ok := notifyNames[n]; return ok }

func name[K ~uint8 | ~uint16](names map[K]string, k K, prefix string) string {
	if s, ok := names[k]; ok {
		return s
	}
	return prefix + "(" + strconv.Itoa(int(k)) + ")"
}
