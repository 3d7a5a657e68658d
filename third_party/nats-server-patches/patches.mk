# The nats-server fork as upstream plus a patch series
# (third_party/nats-server-patches, README.md there). Included from
# meshd's Makefile.
#   make nats-check  third_party/nats-server is exactly upstream + the patches
#   make nats-test   the fork's tests of what the patches touch
NATS_PATCHES := third_party/nats-server-patches/rebuild.sh

.PHONY: nats-check nats-test

nats-check:
	GO=$(GO) $(NATS_PATCHES) check

nats-test:
	GO=$(GO) $(NATS_PATCHES) test
