package main

// local-provisioner: the real node's dynamic provisioner, on sigs.k8s.io/sig-storage-lib-external-provisioner
// (the library the NFS subdir provisioner and the CSI external-provisioner are built on). Each claim gets a
// `local` PersistentVolume: a new directory under --base-dir, owned by root with mode 0755 and an empty
// root-only lost+found, which is how a freshly formatted ext4 volume from a cloud disk looks to a pod.
// The kubelet then applies the pod's fsGroup to it (local volumes support ownership management, hostPath
// volumes do not), so a relay pod meets its queue volume as it would in a real cluster. The PV is pinned to
// the node the scheduler chose (WaitForFirstConsumer), and Delete removes the directory.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

type localProvisionerImpl struct {
	baseDir string
}

func (p *localProvisionerImpl) Provision(_ context.Context, opts controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	if opts.SelectedNodeName == "" {
		return nil, controller.ProvisioningFinished, errors.New("the StorageClass must use volumeBindingMode WaitForFirstConsumer: a local volume needs the node the pod runs on")
	}
	dir := filepath.Join(p.baseDir, opts.PVName)
	if err := os.MkdirAll(p.baseDir, 0o755); err != nil {
		return nil, controller.ProvisioningInBackground, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, controller.ProvisioningInBackground, err
	}
	if err := os.Mkdir(filepath.Join(dir, "lost+found"), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, controller.ProvisioningInBackground, err
	}
	// A fresh volume: root-owned, whatever umask or earlier run left.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, controller.ProvisioningInBackground, err
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	mode := corev1.PersistentVolumeFilesystem
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: opts.PVName},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   opts.PVC.Spec.AccessModes,
			VolumeMode:                    &mode,
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: opts.PVC.Spec.Resources.Requests[corev1.ResourceStorage]},
			MountOptions:                  opts.StorageClass.MountOptions,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: dir},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{opts.SelectedNodeName},
				}}}},
			}},
		},
	}
	return pv, controller.ProvisioningFinished, nil
}

func (p *localProvisionerImpl) Delete(_ context.Context, pv *corev1.PersistentVolume) error {
	if pv.Spec.Local == nil {
		return fmt.Errorf("%s is not a local volume", pv.Name)
	}
	dir := filepath.Clean(pv.Spec.Local.Path)
	if !strings.HasPrefix(dir, filepath.Clean(p.baseDir)+string(filepath.Separator)) {
		return fmt.Errorf("%s: %s is outside %s; not removing it", pv.Name, dir, p.baseDir)
	}
	return os.RemoveAll(dir)
}

func localProvisioner() int {
	fs := flag.NewFlagSet("local-provisioner", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the provisioner's identity")
	baseDir := fs.String("base-dir", "", "directory that holds one directory per volume")
	name := fs.String("provisioner-name", "mailfleet.dev/local", "the StorageClass provisioner this serves")
	klog.InitFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if *kubeconfig == "" || *baseDir == "" {
		fmt.Fprintln(os.Stderr, "local-provisioner: --kubeconfig and --base-dir are required")
		return 2
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.ErrorS(err, "kubeconfig")
		return 1
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.ErrorS(err, "client")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	pc := controller.NewProvisionController(ctx, client, *name, &localProvisionerImpl{baseDir: *baseDir},
		controller.LeaderElection(false))
	klog.InfoS("local-provisioner serving", "provisioner", *name, "baseDir", *baseDir)
	pc.Run(ctx)
	return 0
}
