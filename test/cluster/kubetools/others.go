package main

// etcd, kwok and helm, each as its own main package does it (go.etcd.io/etcd/server/v3,
// sigs.k8s.io/kwok/cmd/kwok, helm.sh/helm/v4/cmd/helm), plus kwok-stages.
//
// Kubernetes packages register flags on pflag.CommandLine when they are initialised (verflag's
// --version, for one), and cobra adds that set to every root command. kwok and helm are not built with
// those packages upstream, so they get a fresh, empty set: `kwok --version` would otherwise fail.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/etcdmain"
	helmcmd "helm.sh/helm/v4/pkg/cmd"
	helmkube "helm.sh/helm/v4/pkg/kube"
	kwoknodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	kwoknodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	kwokpodfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	kwokconfig "sigs.k8s.io/kwok/pkg/config"
	kwokcmd "sigs.k8s.io/kwok/pkg/kwok/cmd"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"
)

func freshCommandLine() {
	pflag.CommandLine = pflag.NewFlagSet(os.Args[0], pflag.ExitOnError)
}

// kwokStages prints the Stage objects kwokctl gives a kwok controller when its configuration names
// none: nodes become Ready and renew their Lease, pods become Running and Ready, get an IP from their
// node's podCIDR, complete, and go away when deleted. The harness puts them in kwok's --config file.
func kwokStages() int {
	docs := []string{
		kwoknodefast.DefaultNodeInit,
		kwoknodeheartbeat.DefaultNodeHeartbeatWithLease,
		kwokpodfast.DefaultPodReady,
		kwokpodfast.DefaultPodComplete,
		kwokpodfast.DefaultPodDelete,
	}
	for _, d := range docs {
		fmt.Printf("---\n%s\n", strings.TrimSpace(d))
	}
	return 0
}

func etcd() int {
	etcdmain.Main(os.Args)
	return 0
}

func kwok() int {
	freshCommandLine()
	flagset := pflag.NewFlagSet("global", pflag.ContinueOnError)
	flagset.ParseErrorsAllowlist.UnknownFlags = true
	flagset.Usage = func() {}
	ctx := signals.SetupSignalContext()
	ctx, logger := kwoklog.InitFlags(ctx, flagset)
	ctx, err := kwokconfig.InitFlags(ctx, flagset)
	if err != nil {
		_, _ = os.Stderr.Write([]byte(flagset.FlagUsages()))
		logger.Error("Init config flags", "err", err)
		return 1
	}
	command := kwokcmd.NewCommand(ctx)
	command.PersistentFlags().AddFlagSet(flagset)
	if err := command.ExecuteContext(ctx); err != nil {
		logger.Error("Execute exit", "err", err)
		return 1
	}
	return 0
}

func helm() int {
	freshCommandLine()
	helmkube.ManagedFieldsManager = "helm"
	cmd, err := helmcmd.NewRootCmd(os.Stdout, os.Args[1:], helmcmd.SetupLogging)
	if err != nil {
		slog.Warn("command failed", slog.Any("error", err))
		return 1
	}
	if err := cmd.Execute(); err != nil {
		if cerr, ok := errors.AsType[helmcmd.CommandError](err); ok {
			return cerr.ExitCode
		}
		return 1
	}
	return 0
}
