package torch

import "syscall"

func gettid() int { return syscall.Gettid() }
