package runtime

// sysMemfdCreate is memfd_create(2)'s number, which package syscall does
// not name on amd64.
const sysMemfdCreate = 319
