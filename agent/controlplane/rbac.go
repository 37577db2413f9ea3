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
//     auto-approves system:nodes' self-node-client requests);
//   - kube-proxy's identity (system:kube-proxy) may also read what the
//     network-policy engine every agent runs under it needs: pods,
//     namespaces and NetworkPolicies (ClusterRole
//     ecom-agent:network-policy, as kube-router's own ClusterRole; it
//     already reads Nodes as system:node-proxier).
//
// Nodes themselves are authorized by the Node authorizer and the
// NodeRestriction admission plugin, both on in the API server's flags.
// It runs with super-admin.conf (system:masters), which needs no binding.
func bootstrapRBAC(ctx context.Context, cs kubernetes.Interface) error {
	role := rbacac.ClusterRole(NetworkPolicyRole).
		WithLabels(map[string]string{seed.ManagedByLabel: seed.ManagedByValue}).
		WithRules(
			rbacac.PolicyRule().WithAPIGroups("").WithResources("pods", "namespaces").WithVerbs("get", "list", "watch"),
			rbacac.PolicyRule().WithAPIGroups("networking.k8s.io").WithResources("networkpolicies").WithVerbs("get", "list", "watch"),
		)
	if _, err := cs.RbacV1().ClusterRoles().Apply(ctx, role, metav1.ApplyOptions{FieldManager: seed.FieldManager, Force: true}); err != nil {
		return fmt.Errorf("cluster role %s: %w", NetworkPolicyRole, err)
	}
	bindings := []*rbacac.ClusterRoleBindingApplyConfiguration{
		groupBinding("ecom-agent:agents", "cluster-admin", pki.AgentGroup),
		groupBinding("kubeadm:cluster-admins", "cluster-admin", "kubeadm:cluster-admins"),
		groupBinding("ecom-agent:node-autoapprove-certificate-rotation",
			"system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"),
		subjectBinding(NetworkPolicyRole, NetworkPolicyRole, rbacv1.UserKind, "system:kube-proxy"),
	}
	for _, b := range bindings {
		_, err := cs.RbacV1().ClusterRoleBindings().Apply(ctx, b, metav1.ApplyOptions{FieldManager: seed.FieldManager, Force: true})
		if err != nil {
			return fmt.Errorf("cluster role binding %s: %w", *b.Name, err)
		}
	}
	return nil
}

// NetworkPolicyRole is the ClusterRole of the network-policy engine,
// bound to kube-proxy's identity.
const NetworkPolicyRole = "ecom-agent:network-policy"

func groupBinding(name, role, group string) *rbacac.ClusterRoleBindingApplyConfiguration {
	return subjectBinding(name, role, rbacv1.GroupKind, group)
}

func subjectBinding(name, role, kind, subject string) *rbacac.ClusterRoleBindingApplyConfiguration {
	return rbacac.ClusterRoleBinding(name).
		WithLabels(map[string]string{seed.ManagedByLabel: seed.ManagedByValue}).
		WithRoleRef(rbacac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(role)).
		WithSubjects(rbacac.Subject().WithAPIGroup(rbacv1.GroupName).WithKind(kind).WithName(subject))
}
