// Package interop runs mifike against strongSwan 5.9.8 (Debian's charon
// with kernel-libipsec) in network namespaces, and lets Debian's tshark
// decrypt the IKE traffic with mifike's key log. It needs root and the
// Debian packages that `make test` installs; without them the tests skip
// and say why.
package interop
