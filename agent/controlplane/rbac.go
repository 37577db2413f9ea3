package controlplane

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/seed"
)

// bootstrapRBAC creates the bindings the cluster needs from the agent
// rather than assuming them, with server-side apply so it is idempotent:
//   - the agents' group (pki.AgentGroup) is cluster-admin: the seeder
//     applies whatever manifests an admin drops in manifests.d, RBAC
//     included, which needs every right it grants;
//   - admin.conf's group (kubeadm:cluster-admins, as kubeadm names it) is
//     cluster-admin, so admin.conf is not system:masters and can be
//     revoked;
//   - kubelets renew their own client certificates (the CSR approver
//     auto-approves system:nodes' self-node-client requests).
//
// Nodes themselves are authorized by the Node authorizer and the
// NodeRestriction admission plugin, both on in the API server's flags.
// It runs with super-admin.conf (system:masters), which needs no binding.
func bootstrapRBAC(ctx context.Context, cs kubernetes.Interface) error {
	bindings := []*rbacac.ClusterRoleBindingApplyConfiguration{
		groupBinding("ecom-agent:agents", "cluster-admin", pki.AgentGroup),
		groupBinding("kubeadm:cluster-admins", "cluster-admin", "kubeadm:cluster-admins"),
		groupBinding("ecom-agent:node-autoapprove-certificate-rotation",
			"system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"),
	}
	for _, b := range bindings {
		_, err := cs.RbacV1().ClusterRoleBindings().Apply(ctx, b, metav1.ApplyOptions{FieldManager: seed.FieldManager, Force: true})
		if err != nil {
			return fmt.Errorf("cluster role binding %s: %w", *b.Name, err)
		}
	}
	return nil
}

func groupBinding(name, role, group string) *rbacac.ClusterRoleBindingApplyConfiguration {
	return rbacac.ClusterRoleBinding(name).
		WithLabels(map[string]string{seed.ManagedByLabel: seed.ManagedByValue}).
		WithRoleRef(rbacac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(role)).
		WithSubjects(rbacac.Subject().WithAPIGroup(rbacv1.GroupName).WithKind(rbacv1.GroupKind).WithName(group))
}
