// Command kubetools is one multi-call binary holding the whole test control plane: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubectl, kwok and helm, as the pinned versions in go.mod.
//
// One binary instead of seven: the programs share most of their packages (client-go, apimachinery,
// grpc, protobuf), and linking seven 100 MB binaries costs more than linking one. build.sh puts a
// symlink per program next to it, and the program is chosen by the name it is started as
// (bin/kubectl get pods) or by its first argument (bin/kubetools kubectl get pods), like busybox.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// programs maps a program name to its entry point. Each entry point reads os.Args itself, as the
// program's own main would, and returns the process exit code.
var programs = map[string]func() int{
	"etcd":                    etcd,
	"kube-apiserver":          kubeAPIServer,
	"kube-controller-manager": kubeControllerManager,
	"kube-scheduler":          kubeScheduler,
	"kubectl":                 kubectl,
	"kwok":                    kwok,
	"kwok-stages":             kwokStages,
	"helm":                    helm,
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := programs[name]; !ok {
		if len(os.Args) < 2 {
			usage()
		}
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	run, ok := programs[name]
	if !ok {
		usage()
	}
	os.Exit(run())
}

func usage() {
	names := make([]string, 0, len(programs))
	for n := range programs {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: kubetools PROGRAM [ARGS...]  (or start it through a symlink named PROGRAM)\nprograms: %s\n", strings.Join(names, ", "))
	os.Exit(2)
}
