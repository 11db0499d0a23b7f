// Command pause is the pod sandbox's process, as registry.k8s.io/pause is (which cannot be pulled here):
// it holds the pod's namespaces, does nothing, reaps the children it inherits as PID 1 of a shared PID
// namespace, and exits 0 on SIGINT or SIGTERM. Built static (CGO_ENABLED=0) into an image of one file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		os.Stdout.WriteString("pause (mailfleet test cluster)\n")
		return
	}
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
