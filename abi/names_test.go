package abi_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/meshd/meshd/abi"
)

func TestValidServiceNameMatchesPattern(t *testing.T) {
	re := regexp.MustCompile(abi.ServiceNamePattern)
	for _, name := range []string{"order", "a", "a-b_c9", "9x", "", "-a", "_a", "A", "a.b", "a b", "é",
		strings.Repeat("a", 63), strings.Repeat("a", 64)} {
		if got, want := abi.ValidServiceName(name), re.MatchString(name); got != want {
			t.Errorf("ValidServiceName(%q) = %v, the pattern says %v", name, got, want)
		}
	}
}
