// Command kubenode is the real node's share of the test cluster in one multi-call binary, like kubetools:
// kubelet and kube-proxy (k8s.io/kubernetes at the version pinned in go.mod, each as its cmd/<name>/main.go
// does it) and local-provisioner, the dynamic provisioner of the real node's StorageClass (provisioner.go).
// A separate binary from kubetools so that the kubelet's packages (cadvisor and friends, which register
// global flags when initialised) stay out of the control plane, kubectl and helm.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	kubeproxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var programs = map[string]func() int{
	"kubelet":           func() int { return cli.Run(kubelet.NewKubeletCommand(context.Background())) },
	"kube-proxy":        func() int { return cli.Run(kubeproxy.NewProxyCommand()) },
	"local-provisioner": localProvisioner,
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
	fmt.Fprintf(os.Stderr, "usage: kubenode PROGRAM [ARGS...]  (or start it through a symlink named PROGRAM)\nprograms: %s\n", strings.Join(names, ", "))
	os.Exit(2)
}
