//go:build (amd64 || arm64) && !race && !asan && !msan

package features

import "unsafe"

// load8 reads 8 bytes of s (1-8 bytes long) as a little-endian word, s[0]
// in the low byte; the bytes past its end are garbage, masked off by the
// caller. The read never leaves the page (at least 4 KiB on these
// platforms) that holds s, so it cannot fault: near a page's end it reads
// the 8 bytes that end with s and shifts. The race, asan and msan builds
// use load8Safe, because their pointer checks refuse a read that crosses
// into another allocation.
func load8(s string) uint64 {
	p := unsafe.Pointer(unsafe.StringData(s))
	if uintptr(p)&4095 > 4096-8 && len(s) < 8 {
		return *(*uint64)(unsafe.Add(p, len(s)-8)) >> (64 - 8*uint(len(s)))
	}
	return *(*uint64)(p)
}
