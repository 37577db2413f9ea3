package joinserver

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/kubeclient"
)

// NodesInAPI is the NodeLookup of a control-plane node: it asks the API
// server, with the kubeconfig at path, whether the Node exists.
func NodesInAPI(root *hostfs.Root, path string) NodeLookup {
	return func(ctx context.Context, name string) (bool, error) {
		rc, err := kubeclient.RESTConfig(root, path)
		if err != nil {
			return false, err
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return false, err
		}
		_, err = cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return false, nil
		case err != nil:
			return false, err
		}
		return true, nil
	}
}
