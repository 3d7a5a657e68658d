// Package abi defines version 1 of the meshd guest ABI: the names of the
// host module and its functions, the exports a guest must provide, the
// status codes that cross the boundary, and the binary encodings of the
// values passed through it.
//
// Both halves of the ABI import this package — the host (runtime and host
// packages) and the Go guest SDK (package guest) — so they cannot drift.
// It uses only the standard library and builds for the host and for wasip1.
//
// The ABI is written for authors in any language in docs/ABI.md. v1 is
// frozen: later versions add functions and append fields, never change old
// ones. Decoders therefore ignore bytes after the last field they know.
package abi
