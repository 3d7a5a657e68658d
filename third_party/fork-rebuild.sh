#!/usr/bin/env bash
# A fork under third_party is an upstream Go module plus a patch series
# (see the patch directory's README.md). This script, run through the
# rebuild.sh link in a patch directory, rebuilds the fork from the module
# cache and the patches, and helps refresh the series on a bump. The
# patch directory's fork.env names the fork (see "fork.env" below).
#
#   rebuild.sh check         rebuild upstream+patches in a temp dir and
#                            compare with the fork (diff -r); non-zero,
#                            naming the files, if they differ
#   rebuild.sh tree DIR      DIR (new) becomes a git repository: a commit of
#                            upstream, then one commit per patch. Stops at
#                            the first patch that does not apply, leaving
#                            its rejects (*.rej) to fix by hand
#   rebuild.sh export DIR    rewrites the patch files from DIR's commits
#                            after the upstream one (message = header)
#   rebuild.sh install DIR   makes the fork DIR's tree (plus
#                            MESHD-PATCH.md); run check afterwards
#   rebuild.sh test          go test of the patched packages, in a copy of
#                            the fork with what it leaves out for tests
#                            (test files, test data) taken from the module
#                            cache
#
# The upstream version is go.mod's requirement on the module, or
# FORK_VERSION if set.
set -euo pipefail
tmp=

PATCHES=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$PATCHES/../.." && pwd)
GO=${GO:-go}
# fork.env sets:
#   MODULE        the upstream module path
#   FORK          the fork's directory, from the repository's root
#   LEFT_OUT      directories of upstream left out of the fork (array)
#   NO_TESTS      1: upstream's *_test.go files are left out too (a patch
#                 may add its own)
#   TEST_PKGS     the packages `test` runs (array)
#   TEST_RUN      their -run pattern (empty: every test)
#   TEST_SKIP     their -skip pattern: upstream tests a patch changes the
#                 expectation of (its own test replaces them)
#   EMBEDDED      files of left-out directories the tests need (array)
LEFT_OUT=() NO_TESTS=0 TEST_RUN="" TEST_SKIP="" EMBEDDED=()
# shellcheck source=/dev/null
. "$PATCHES/fork.env"
FORK=$ROOT/$FORK

version() {
	if [ -n "${FORK_VERSION:-}" ]; then echo "$FORK_VERSION"; return; fi
	local v
	v=$(awk -v m="$MODULE" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$ROOT/go.mod")
	[ -n "$v" ] || { echo "rebuild.sh: no $MODULE requirement in go.mod" >&2; exit 2; }
	echo "$v"
}

# upstream_dir: the module cache's copy of upstream (downloaded if missing).
upstream_dir() {
	local v=$1 dir
	dir=$(cd "$ROOT" && GOFLAGS=-mod=mod "$GO" mod download -json "$MODULE@$v" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	[ -d "$dir" ] || { echo "rebuild.sh: could not download $MODULE@$v" >&2; exit 2; }
	echo "$dir"
}

# copy_upstream DEST: upstream, writable, without the left-out directories.
copy_upstream() {
	local src
	src=$(upstream_dir "$(version)")
	mkdir -p "$1"
	cp -R "$src/." "$1/"
	chmod -R u+w "$1"
	for d in "${LEFT_OUT[@]}"; do rm -rf "${1:?}/$d"; done
	if [ "$NO_TESTS" = 1 ]; then
		find "$1" -name '*_test.go' -delete
		find "$1" -depth -type d -name testdata -exec rm -rf {} +
	fi
}

patches() { find "$PATCHES" -maxdepth 1 -name '[0-9][0-9][0-9][0-9]-*.patch' | LC_ALL=C sort; }

# apply PATCH DIR: patch -p1, or git apply where patch is missing.
apply() {
	if command -v patch >/dev/null 2>&1; then
		patch -d "$2" -p1 -s -N -F0 --no-backup-if-mismatch -i "$1"
	else
		git -C "$2" apply --reject -p1 "$1"
	fi
}

cmd_check() {
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	copy_upstream "$tmp/w"
	local p
	while read -r p; do
		apply "$p" "$tmp/w" || { echo "rebuild.sh: $(basename "$p") does not apply to upstream $(version) plus the patches before it" >&2; exit 1; }
	done < <(patches)
	cp "$FORK/MESHD-PATCH.md" "$tmp/w/"
	if ! diff -rq "$tmp/w" "$FORK" >"$tmp/diff"; then
		echo "${FORK#"$ROOT"/} differs from upstream $(version) plus ${PATCHES#"$ROOT"/}:" >&2
		sed -e "s#$tmp/w#<upstream+patches>#g" -e "s#$ROOT/##g" "$tmp/diff" >&2
		echo "(fix the tree, or the patches: see ${PATCHES#"$ROOT"/}/README.md)" >&2
		exit 1
	fi
	echo "${FORK#"$ROOT"/} is upstream $MODULE $(version) plus $(patches | wc -l) patches"
}

cmd_tree() {
	local dir=${1:?usage: rebuild.sh tree DIR}
	[ ! -e "$dir" ] || { echo "rebuild.sh: $dir exists" >&2; exit 2; }
	copy_upstream "$dir"
	git -C "$dir" init -q
	git -C "$dir" add -A -f
	git -C "$dir" -c user.name=rebuild -c user.email=rebuild@localhost commit -q -m "upstream $MODULE $(version)"
	local p
	while read -r p; do
		if ! apply "$p" "$dir"; then
			echo "rebuild.sh: $(basename "$p") did not apply cleanly: fix the files (see the .rej files), delete the .rej and .orig files, then" >&2
			echo "  git -C $dir add -A -f && git -C $dir commit -F <(sed '/^diff /,\$d' $p)" >&2
			echo "and apply the remaining patches one by one (patch -d $dir -p1 -i PATCH, then commit the same way)." >&2
			exit 1
		fi
		git -C "$dir" add -A -f
		git -C "$dir" -c user.name=rebuild -c user.email=rebuild@localhost commit -q -F <(sed '/^diff /,$d' "$p")
	done < <(patches)
	echo "$dir: upstream $(version) plus $(patches | wc -l) patches, one commit each"
}

cmd_export() {
	local dir=${1:?usage: rebuild.sh export DIR} base n=0 c subject slug
	base=$(git -C "$dir" rev-list --max-parents=0 HEAD)
	rm -f "$PATCHES"/[0-9][0-9][0-9][0-9]-*.patch
	for c in $(git -C "$dir" rev-list --reverse "$base..HEAD"); do
		n=$((n + 1))
		subject=$(git -C "$dir" log -1 --format=%s "$c")
		slug=$(printf '%s' "$subject" | tr 'A-Z' 'a-z' | sed -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//' | cut -d- -f1-6)
		{
			git -C "$dir" log -1 --format=%B "$c" | sed -e '/^diff /d'
			git -C "$dir" -c core.quotepath=off diff --no-color --no-ext-diff --no-renames \
				--src-prefix=a/ --dst-prefix=b/ "$c^" "$c"
		} >"$PATCHES/$(printf '%04d' "$n")-$slug.patch"
	done
	echo "wrote $n patches to $PATCHES"
}

cmd_install() {
	local dir=${1:?usage: rebuild.sh install DIR}
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	cp "$FORK/MESHD-PATCH.md" "$tmp/"
	rm -rf "$FORK"
	mkdir -p "$FORK"
	(cd "$dir" && git ls-files -z | xargs -0 cp --parents -t "$FORK")
	cp "$tmp/MESHD-PATCH.md" "$FORK/"
	echo "${FORK#"$ROOT"/} is now $dir's tree; run the fork's check and test targets"
}

cmd_test() {
	local src f
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	src=$(upstream_dir "$(version)")
	cp -R "$FORK/." "$tmp/"
	for f in "${EMBEDDED[@]}"; do
		mkdir -p "$tmp/$(dirname "$f")"
		cp -R "$src/$f" "$tmp/$f"
	done
	if [ "$NO_TESTS" = 1 ]; then # upstream's tests and their data, not over the patches' own
		(cd "$src" && find . \( -name '*_test.go' -o -path '*/testdata/*' \) -type f) | while read -r f; do
			[ -e "$tmp/$f" ] || { mkdir -p "$tmp/$(dirname "$f")" && cp "$src/$f" "$tmp/$f"; }
		done
	fi
	chmod -R u+w "$tmp"
	(cd "$tmp" && GOFLAGS= GOWORK=off "$GO" test -count=1 ${TEST_RUN:+-run "$TEST_RUN"} ${TEST_SKIP:+-skip "$TEST_SKIP"} ${FORK_TEST_FLAGS:-} "${TEST_PKGS[@]}")
}

case "${1:-check}" in
check) cmd_check ;;
tree) cmd_tree "${2:-}" ;;
export) cmd_export "${2:-}" ;;
install) cmd_install "${2:-}" ;;
test) cmd_test ;;
*) sed -n '2,/^set -e/p' "$0" | sed '$d'; exit 2 ;;
esac
