// Package testkit holds helpers that tests of several packages share:
// certificates, a small tmpfs, a full disk, a poll with a deadline
// (Eventually, Until) and a bounded load loop (Hammer).
package testkit
