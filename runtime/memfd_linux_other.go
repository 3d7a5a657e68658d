//go:build linux && !amd64 && !arm64

package runtime

// sysMemfdCreate: no memfd here; snapshot images are copied.
const sysMemfdCreate = -1

// oTmpfile: no unnamed image files here; images are memfds or copies.
const oTmpfile = 0
