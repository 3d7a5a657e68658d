package runtime

// sysMemfdCreate is memfd_create(2)'s number.
const sysMemfdCreate = 279
