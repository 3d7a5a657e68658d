//go:build !linux

package main

// hugeStartHeap is Linux-only (transparent huge pages).
func hugeStartHeap() {}
