// Command coredns is the test cluster's DNS (the kube-dns Service in kube-system, run as a pod on the real
// node), CoreDNS with only the plugins a cluster's Corefile needs, in the order CoreDNS's own plugin.cfg
// puts them. Its own module: CoreDNS's dependencies must not move the control plane's (../go.mod).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The subset of plugin.cfg, in its order (the order of the chain, whatever the Corefile's order).
var directives = []string{"reload", "ready", "health", "errors", "log", "cache", "kubernetes", "loop", "forward"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
