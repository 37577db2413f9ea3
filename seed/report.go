package seed

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
)

// LoadReport reads the last report from the ConfigMap
// kube-system/ecom-agent-seed (key report.json); nil when there is none.
func LoadReport(ctx context.Context, cs kubernetes.Interface) (*Report, error) {
	cm, err := cs.CoreV1().ConfigMaps(ReportNamespace).Get(ctx, ReportName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the seed report: %w", err)
	}
	data, ok := cm.Data[ReportKey]
	if !ok {
		return nil, nil
	}
	var r Report
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return nil, fmt.Errorf("read the seed report: configmap %s/%s key %s: %w", ReportNamespace, ReportName, ReportKey, err)
	}
	return &r, nil
}

// SaveReport writes r to the ConfigMap kube-system/ecom-agent-seed with
// server-side apply.
func SaveReport(ctx context.Context, cs kubernetes.Interface, r Report) error {
	js, err := json.Marshal(r)
	if err != nil {
		return err
	}
	cm := corev1ac.ConfigMap(ReportName, ReportNamespace).
		WithLabels(map[string]string{ManagedByLabel: ManagedByValue}).
		WithData(map[string]string{ReportKey: string(js)})
	if _, err := cs.CoreV1().ConfigMaps(ReportNamespace).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("save the seed report: %w", err)
	}
	return nil
}
