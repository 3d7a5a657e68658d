// Package testkit holds helpers that tests of several packages share:
// certificates, a small tmpfs, a full disk.
package testkit
