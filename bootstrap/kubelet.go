package bootstrap

import (
	"bytes"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"

	"github.com/ecom-platform/ecom-agent/config"
)

// KubeletConfiguration builds the kubelet's config file contents as a
// typed value.
func KubeletConfiguration(cfg *config.Config) *kubeletv1beta1.KubeletConfiguration {
	return &kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{
			APIVersion: kubeletv1beta1.SchemeGroupVersion.String(),
			Kind:       "KubeletConfiguration",
		},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
			Webhook: kubeletv1beta1.KubeletWebhookAuthentication{
				Enabled:  ptr.To(true),
				CacheTTL: metav1.Duration{Duration: 2 * time.Minute},
			},
			X509: kubeletv1beta1.KubeletX509Authentication{ClientCAFile: pkiPath("ca.crt")},
		},
		Authorization: kubeletv1beta1.KubeletAuthorization{
			Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook,
			Webhook: kubeletv1beta1.KubeletWebhookAuthorization{
				CacheAuthorizedTTL:   metav1.Duration{Duration: 5 * time.Minute},
				CacheUnauthorizedTTL: metav1.Duration{Duration: 30 * time.Second},
			},
		},
		ContainerRuntimeEndpoint: cfg.Kubelet.ContainerRuntimeEndpoint,
		CgroupDriver:             "systemd",
		ClusterDNS:               []string{cfg.ClusterDNSIP().String()},
		ClusterDomain:            cfg.Network.ClusterDomain,
		ReadOnlyPort:             0,
		RotateCertificates:       true,
		ServerTLSBootstrap:       true,
		TLSCipherSuites:          TLSCipherSuites,
		TLSMinVersion:            "VersionTLS12",
		StaticPodPath:            "", // the control plane runs as systemd units, not static pods
		ProtectKernelDefaults:    false,
		// Many bare-metal hosts, and this project's test hosts, still run
		// cgroup v1; the kubelet refuses it unless told otherwise.
		FailCgroupV1:       ptr.To(false),
		ResolverConfig:     ptr.To(cfg.Kubelet.ResolvConf),
		HealthzBindAddress: "127.0.0.1",
		HealthzPort:        ptr.To[int32](10248),
		RegisterWithTaints: registerWithTaints(cfg.Node.ParsedTaints()),
	}
}

// registerWithTaints are node.taints as the kubelet registers them.
func registerWithTaints(ts []config.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range ts {
		out = append(out, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	return out
}

func kubeletScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	// AddToScheme only fails on programming errors (conflicting types).
	if err := kubeletv1beta1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// KubeletConfigYAML serializes the kubelet configuration with the
// Kubernetes scheme, as the kubelet itself reads it.
func KubeletConfigYAML(kc *kubeletv1beta1.KubeletConfiguration) ([]byte, error) {
	return componentConfigYAML(kubeletScheme(), kc, "kubelet config")
}

// componentConfigYAML serializes a component's config file (kubelet,
// kube-proxy) with its scheme, under the generated-file header.
func componentConfigYAML(s *runtime.Scheme, obj runtime.Object, what string) ([]byte, error) {
	ser := json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Yaml: true})
	var buf bytes.Buffer
	buf.WriteString(generatedHeader("#"))
	if err := ser.Encode(obj, &buf); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return buf.Bytes(), nil
}

// ParseKubeletConfig decodes a kubelet config strictly: unknown or
// duplicate fields are errors.
func ParseKubeletConfig(data []byte) (*kubeletv1beta1.KubeletConfiguration, error) {
	s := kubeletScheme()
	ser := json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Yaml: true, Strict: true})
	obj, _, err := ser.Decode(data, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("kubelet config: %w", err)
	}
	kc, ok := obj.(*kubeletv1beta1.KubeletConfiguration)
	if !ok {
		return nil, fmt.Errorf("kubelet config: got %T", obj)
	}
	return kc, nil
}
