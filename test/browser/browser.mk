# The operator console's browser test (test/browser): headless Chromium
# from Debian's `chromium` package, driven by `playwright-core` from npm
# at the version test/browser/package-lock.json pins, installed with
# `npm ci` into build/browser (never globally, never a browser download:
# playwright-core is the driver only). `make test` runs the test; without
# Chromium it skips and says why (and fails when CI is set).
BROWSER_DIR := build/browser
PLAYWRIGHT  := $(BROWSER_DIR)/node_modules/playwright-core/package.json

.PHONY: browser-tools test-browser

browser-tools: $(PLAYWRIGHT)
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium"; \
	  $(APT_INSTALL) chromium >/dev/null || \
	  echo "could not install chromium: the browser test will skip"; }

# A new pin (package.json, package-lock.json) reinstalls.
$(PLAYWRIGHT): test/browser/package.json test/browser/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  echo "installing npm"; \
	  $(APT_INSTALL) npm >/dev/null; }
	@rm -rf $(BROWSER_DIR) && mkdir -p $(BROWSER_DIR)
	cp test/browser/package.json test/browser/package-lock.json $(BROWSER_DIR)/
	cd $(BROWSER_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# make test needs the browser tools too; the test builds meshd itself.
test: browser-tools

# The browser test alone, with the demo plugins and the test guests.
test-browser: plugins fixtures browser-tools
	$(GO) test -count=1 -v -run TestConsole ./test/browser/
