// Package testkit holds helpers that tests of several packages share:
// certificates, a small tmpfs, a full disk, a poll with a deadline
// (Eventually, Until), a bounded load loop (Hammer) and a POST that
// sends a shed request again (PostJSON).
package testkit
