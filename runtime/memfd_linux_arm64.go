package runtime

// sysMemfdCreate is memfd_create(2)'s number.
const sysMemfdCreate = 279

// oTmpfile is open(2)'s O_TMPFILE (with O_DIRECTORY), which package
// syscall does not name.
const oTmpfile = 0x410000
