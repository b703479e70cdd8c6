package main

import "golang.org/x/sys/unix"

// setBroadcast sets SO_BROADCAST: the stand-in's replies go to
// 255.255.255.255.
func setBroadcast(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1) }
