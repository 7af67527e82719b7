// pause is the sandbox ("infra") container of every pod on the node tier's real node: it holds the pod's
// namespaces open and, as PID 1 of a shared PID namespace, reaps orphaned zombies. Built static
// (CGO_ENABLED=0) so the image needs nothing but this one file. Exits 0 on SIGTERM/SIGINT, like the
// upstream pause, so stopping a sandbox is immediate.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for { // reap every exited child; -1 means any
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
