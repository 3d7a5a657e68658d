package guest

import "unsafe"

// cutStrings copies in up to where tail (a slice of in, usually the body)
// begins into one string, and returns a function that turns any other slice
// of in before tail into a substring of it: one allocation for every string
// field of a decoded request or event.
func cutStrings(in, tail []byte) func(b []byte) string {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(in)))
	end := len(in)
	if len(tail) > 0 {
		end = int(uintptr(unsafe.Pointer(unsafe.SliceData(tail))) - base)
	}
	s := string(in[:end])
	return func(b []byte) string {
		if len(b) == 0 {
			return ""
		}
		off := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) - base)
		return s[off : off+len(b)]
	}
}
