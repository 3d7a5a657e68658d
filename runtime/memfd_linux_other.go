//go:build linux && !amd64 && !arm64

package runtime

// sysMemfdCreate: no memfd here; snapshot images are copied.
const sysMemfdCreate = -1
