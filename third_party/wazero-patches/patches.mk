# The wazero fork as upstream plus a patch series (third_party/wazero-patches,
# README.md there). Included from meshd's Makefile.
#   make wazero-check  third_party/wazero is exactly upstream + the patches
#   make wazero-test   the fork's tests for the packages the patches touch
WAZERO_PATCHES := third_party/wazero-patches/rebuild.sh

.PHONY: wazero-check wazero-test

wazero-check:
	GO=$(GO) $(WAZERO_PATCHES) check

wazero-test:
	GO=$(GO) $(WAZERO_PATCHES) test
